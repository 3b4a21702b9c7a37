//! The global backend of the rate-limit tests: a Redis server (Debian's
//! `redis-server`, installed by `make rls-deps`) and `palisade-rls` (Envoy's
//! RLS API over limitador with its Redis storage, `services/rls`), both on
//! free loopback ports and killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::paths::repo_root;

/// A free loopback port (the listener is closed before it is returned).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A Redis server on loopback, without persistence. Dropping it kills it.
pub struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits until it accepts.
    pub fn start() -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let bin = std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e} (run `make rls-deps`)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (its counters are gone with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `palisade-rls` binary: `$PALISADE_RLS_BIN`, else the workspace's
/// debug build (`make rls` builds it).
pub fn rls_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PALISADE_RLS_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let bin = repo_root().join("target/debug/palisade-rls");
    assert!(
        bin.is_file(),
        "{} is missing: run `make rls` (or `make test`)",
        bin.display()
    );
    bin
}

/// `palisade-rls` on a free loopback port. Dropping it kills it.
pub struct RateLimitService {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl RateLimitService {
    /// Starts the service with `limits` (a JSON list of limitador limits)
    /// over `redis`, and waits until it listens.
    pub fn start(redis: &Redis, limits: &Value) -> RateLimitService {
        let dir = crate::run_dir();
        let limits_path = dir.join("limits.json");
        std::fs::write(&limits_path, limits.to_string()).expect("write limits.json");
        let mut child = Command::new(rls_bin())
            .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()])
            .arg("--limits")
            .arg(&limits_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start palisade-rls: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the service's stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the service's address");
        let addr = match line.trim().strip_prefix("listening on ").map(str::parse) {
            Some(Ok(addr)) => addr,
            _ => {
                let _ = child.kill();
                panic!("palisade-rls did not start (it printed {line:?})");
            }
        };
        RateLimitService { child, addr, dir }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes (`true`, SIGSTOP) or thaws (`false`, SIGCONT) the process:
    /// connections are still accepted, nothing is answered.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// The Envoy cluster for it (HTTP/2, as gRPC needs), named `name`.
    pub fn cluster(&self, name: &str) -> Value {
        grpc_cluster_json(name, self.addr)
    }
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A static HTTP/2 cluster with one loopback endpoint (for gRPC services).
pub fn grpc_cluster_json(name: &str, addr: SocketAddr) -> Value {
    let mut cluster = crate::envoy::cluster_json(name, addr);
    cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} }
        }
    });
    cluster
}
