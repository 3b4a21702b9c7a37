//! Helper processes of the tests (servers written in Node or Python) that
//! print `ready` on stdout once they listen.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

/// Reads `child`'s stdout (piped) until a line starts with `ready`; kills it
/// and fails the test when it exits first or takes over 30 s. `what` names
/// it in the failure.
pub fn wait_until_ready(child: &mut Child, what: &str) {
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        panic!("{what}: its stdout is not piped");
    };
    let mut out = BufReader::new(stdout);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !line.starts_with("ready") {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not start");
        }
    }
}

/// A process's resident set size, bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
