//! An OTLP/gRPC receiver on a free loopback port: `tests/otlp_receiver.py`,
//! built on the official OpenTelemetry protobuf definitions and gRPC (PyPI
//! `opentelemetry-proto`, `grpcio`, installed by `make otlp-deps` into
//! `.tools/otlp`). It records every log record and span it receives.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::paths::repo_root;

/// A running receiver. Dropping it kills the process.
pub struct OtlpReceiver {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl OtlpReceiver {
    /// Starts the receiver and waits until it listens.
    pub fn start() -> OtlpReceiver {
        let root = repo_root();
        let python = root.join(".tools/otlp/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `make otlp-deps` (or `make test`)",
            python.display()
        );
        let out = crate::run_dir().join("otlp.jsonl");
        let mut child = Command::new(&python)
            .arg(root.join("tests/otlp_receiver.py"))
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the OTLP receiver: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the receiver's stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the receiver's port");
        let port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("the OTLP receiver did not start (it printed {line:?})");
            }
        };
        OtlpReceiver { child, out, port }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything received so far: `{"kind": "log", "resource", "scope",
    /// "time_unix_nano", "trace_id", "span_id", "body", "attributes"}` per
    /// log record, `{"kind": "span", "name", "trace_id", "span_id"}` per span.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("the receiver writes JSON lines"))
            .collect()
    }

    /// Waits (up to 15 s) until at least `n` log records arrived, and returns them.
    pub fn wait_logs(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let logs: Vec<Value> = self
                .received()
                .into_iter()
                .filter(|v| v["kind"] == "log")
                .collect();
            if logs.len() >= n || Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            if let Some(dir) = self.out.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}
