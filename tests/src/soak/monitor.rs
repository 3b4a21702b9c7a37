//! What the soak watches besides the answers: Envoy's resident memory, the
//! Wasm VM counters of its admin stats, and its own log.

/// Envoy's resident set size, bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The least-squares slope of `y` over `x`.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Whether a stat says a Wasm VM failed, crashed or was reloaded: Envoy's
/// `wasm.envoy.wasm.runtime.v8.*` and the Wasm filter's per-plugin stats.
/// (Not the policies' own `wasmcustom.*` metrics.)
pub fn is_vm_failure_stat(name: &str) -> bool {
    name.starts_with("wasm.")
        && ["reload", "crash", "fail", "restart"]
            .iter()
            .any(|word| name.contains(word))
}

/// What in Envoy's log means a VM or a filter broke: a Rust panic, a
/// critical line, a Wasm function that failed (a trap), a VM that failed or
/// was restarted.
pub fn is_fatal_log_line(line: &str) -> bool {
    const MARKS: [&str; 9] = [
        "panicked",
        "[critical]",
        "Function: proxy_",
        "wasm trap",
        "VM failed",
        "failed to load",
        "restarting",
        "vm_reload",
        "Plugin configured to fail",
    ];
    MARKS.iter().any(|mark| line.contains(mark))
}

/// Log lines at warning level or above, by message (without the timestamp
/// and thread), most frequent first.
pub fn log_summary(log: &str) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for line in log.lines() {
        if !(line.contains("[warning]") || line.contains("[error]") || line.contains("[critical]"))
        {
            continue;
        }
        // "[time][thread][level][component] [file:line] message"
        let message = line
            .splitn(3, "][")
            .nth(2)
            .unwrap_or(line)
            .chars()
            .take(160)
            .collect::<String>();
        let message = strip_digits(&message);
        *counts.entry(message).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1));
    out
}

/// Numbers (times, ids, ports) to `N`, so that repeats of one message group.
fn strip_digits(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 7.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10)
            .map(|x| (x as f64, if x % 2 == 0 { 5.0 } else { 6.0 }))
            .collect();
        assert!(slope(&flat).abs() < 0.1);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }

    #[test]
    fn vm_failures_and_fatal_lines_are_recognized() {
        assert!(is_vm_failure_stat(
            "wasm.envoy.wasm.runtime.v8.vm_reload_failure"
        ));
        assert!(!is_vm_failure_stat("wasm.envoy.wasm.runtime.v8.created"));
        assert!(is_vm_failure_stat("wasm.palisade_jwt.vm_reload"));
        assert!(!is_vm_failure_stat(
            "wasmcustom.palisade.jwt.jwks_fetch_failed"
        ));
        assert!(is_fatal_log_line(
            "[2026-12-06 07:00:00.000][12][critical][wasm] wasm log palisade: panicked at src/x.rs:1:2"
        ));
        assert!(!is_fatal_log_line(
            "[2026-12-06 07:00:00.000][12][warning][wasm] wasm log palisade: key fetch failed: status 503"
        ));
        let summary = log_summary(
            "[2026-12-06 07:00:00.000][12][warning][wasm] key fetch failed: status 503\n\
             [2026-12-06 07:00:01.000][13][warning][wasm] key fetch failed: status 503\n\
             [2026-12-06 07:00:01.000][13][info][main] starting\n",
        );
        assert_eq!(
            summary,
            [("warning][wasm] key fetch failed: status N".to_string(), 2)]
        );
    }
}
