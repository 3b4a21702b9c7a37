//! A minimal identity provider on loopback: an OIDC discovery document and
//! a JWK set that a test can change, count fetches of, and make fail in the
//! ways a real IdP fails (an error status, a dropped connection, no answer,
//! a body that is not JSON).

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::read_head;
use crate::lock;

/// How the IdP answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpMode {
    /// The discovery document and the JWK set.
    Up,
    /// `503 Service Unavailable` to everything.
    Unavailable,
    /// Reads the request, then closes the connection without an answer.
    Reset,
    /// Reads the request and answers nothing until the mode changes (a
    /// fetch runs into its timeout).
    Hang,
    /// `200 OK` with a body that is not JSON.
    Garbage,
}

/// The IdP: serves until the test process ends.
pub struct FakeIdp {
    addr: SocketAddr,
    state: Arc<Mutex<IdpState>>,
    jwks_hits: Arc<AtomicUsize>,
    discovery_hits: Arc<AtomicUsize>,
}

struct IdpState {
    issuer: String,
    jwks: Value,
    mode: IdpMode,
}

impl FakeIdp {
    /// An IdP for `issuer` serving `jwks` at `/jwks`.
    pub fn start(issuer: &str, jwks: Value) -> FakeIdp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the IdP");
        let addr = listener.local_addr().expect("the IdP's address");
        let state = Arc::new(Mutex::new(IdpState {
            issuer: issuer.to_string(),
            jwks,
            mode: IdpMode::Up,
        }));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let discovery_hits = Arc::new(AtomicUsize::new(0));
        let (st, jh, dh) = (state.clone(), jwks_hits.clone(), discovery_hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (st, jh, dh) = (st.clone(), jh.clone(), dh.clone());
                std::thread::spawn(move || serve(stream, &st, &jh, &dh));
            }
        });
        FakeIdp {
            addr,
            state,
            jwks_hits,
            discovery_hits,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves another JWK set from now on.
    pub fn set_jwks(&self, jwks: Value) {
        self.lock().jwks = jwks;
    }

    /// Up, or answering 503.
    pub fn set_up(&self, up: bool) {
        self.set_mode(if up {
            IdpMode::Up
        } else {
            IdpMode::Unavailable
        });
    }

    /// Answers this way from now on.
    pub fn set_mode(&self, mode: IdpMode) {
        self.lock().mode = mode;
    }

    /// JWK set requests received (whatever the answer).
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// Discovery requests received (whatever the answer).
    pub fn discovery_fetches(&self) -> usize {
        self.discovery_hits.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdpState> {
        lock(&self.state)
    }
}

fn serve(
    stream: TcpStream,
    state: &Mutex<IdpState>,
    jwks_hits: &AtomicUsize,
    discovery_hits: &AtomicUsize,
) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    loop {
        let Ok((request_line, headers)) = read_head(&mut reader) else {
            return;
        };
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let authority = headers
            .into_iter()
            .find_map(|(name, value)| (name == "host").then_some(value))
            .unwrap_or_default();
        let (mode, issuer, jwks) = {
            let s = lock(state);
            (s.mode, s.issuer.clone(), s.jwks.to_string())
        };
        match path.as_str() {
            "/.well-known/openid-configuration" => discovery_hits.fetch_add(1, Ordering::SeqCst),
            "/jwks" => jwks_hits.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        let (status, body) = match mode {
            IdpMode::Reset => return,
            IdpMode::Hang => {
                hang_while_hanging(state);
                return;
            }
            IdpMode::Unavailable => ("503 Service Unavailable", "down".to_string()),
            IdpMode::Garbage => ("200 OK", "{\"keys\": [{\"kty\": \"EC\", <html>".to_string()),
            IdpMode::Up => match path.as_str() {
                "/.well-known/openid-configuration" => {
                    let doc =
                        json!({"issuer": issuer, "jwks_uri": format!("http://{authority}/jwks")});
                    ("200 OK", doc.to_string())
                }
                "/jwks" => ("200 OK", jwks),
                _ => ("404 Not Found", "{}".to_string()),
            },
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Holds a connection unanswered while the mode stays `Hang` (at most a
/// minute), then lets the caller close it.
fn hang_while_hanging(state: &Mutex<IdpState>) {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until && lock(state).mode == IdpMode::Hang {
        std::thread::sleep(Duration::from_millis(20));
    }
}
