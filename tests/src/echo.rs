//! The echo upstream: answers every request with the request it received.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use crate::http::{read_body, read_head};

/// An HTTP/1.1 server on a free loopback port, in a thread of the test
/// process. It answers 200 with `{"method", "path", "headers", "body"}`
/// (header names in lower case; repeated headers joined with `, `), so a test
/// sees exactly what Envoy forwarded. It stops when dropped.
pub struct EchoUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl EchoUpstream {
    /// Starts the server.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo upstream");
        Self::serve(listener)
    }

    /// Serves on an existing listener (the demo binds a fixed port).
    pub fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("echo upstream address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    thread::spawn(move || serve_connection(conn));
                }
            }
        });
        EchoUpstream { addr, stop }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // wake the accept loop so it sees the flag
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_connection(conn: TcpStream) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(conn);
    loop {
        let Ok((request_line, headers)) = read_head(&mut reader) else {
            return;
        };
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut header_map: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &headers {
            header_map
                .entry(name.clone())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }
        let echo = serde_json::json!({
            "method": method,
            "path": path,
            "headers": header_map,
            "body": String::from_utf8_lossy(&body),
        });
        let payload = echo.to_string();
        let close = header_map
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-echo: palisade\r\n\r\n{}",
            payload.len(),
            payload
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}
