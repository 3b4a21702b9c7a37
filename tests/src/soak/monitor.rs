//! What the soak watches besides the answers: Envoy's resident memory, the
//! Wasm VM counters of its admin stats, and its own log.

use std::time::Duration;

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
    out.sort_by_key(|entry| std::cmp::Reverse(entry.1));
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

/// The share of the run before memory is expected to be flat (caches and
/// V8 heaps fill up first).
const WARM_UP_SHARE: f64 = 0.2;
/// Memory growth after warm-up that fails the run: the larger of this and
/// [`RSS_GROWTH_SHARE`] of the mean RSS.
const RSS_GROWTH_FLOOR: f64 = 8.0 * 1048576.0;
const RSS_GROWTH_SHARE: f64 = 0.05;
/// Envoy's RSS after warm-up, as report text; a growth over the bound is a
/// problem.
pub fn memory_verdict(
    rss: &[(f64, u64)],
    duration: Duration,
    problems: &mut Vec<String>,
) -> String {
    let warm = duration.as_secs_f64() * WARM_UP_SHARE;
    let after: Vec<(f64, f64)> = rss
        .iter()
        .filter(|(t, _)| *t >= warm)
        .map(|(t, b)| (*t, *b as f64))
        .collect();
    let mib = |b: f64| b / 1048576.0;
    let slope = slope(&after);
    let span = after.last().map_or(0.0, |l| l.0) - after.first().map_or(0.0, |f| f.0);
    let mean = after.iter().map(|p| p.1).sum::<f64>() / after.len().max(1) as f64;
    let growth = slope * span;
    let tolerance = RSS_GROWTH_FLOOR.max(RSS_GROWTH_SHARE * mean);
    if after.len() < 3 {
        problems.push("too few RSS samples after warm-up".into());
    } else if growth > tolerance {
        problems.push(format!(
            "Envoy's RSS grew {:.1} MiB after warm-up (slope {:.2} MiB/min), over {:.1} MiB",
            mib(growth),
            mib(slope) * 60.0,
            mib(tolerance)
        ));
    }
    let first = rss.first().map_or(0, |s| s.1) as f64;
    let last = rss.last().map_or(0, |s| s.1) as f64;
    let peak = rss.iter().map(|s| s.1).max().unwrap_or(0) as f64;
    format!(
        "Envoy RSS: start {:.1} MiB, end {:.1} MiB, peak {:.1} MiB; after {:.0} s warm-up: slope {:+.3} MiB/min, \
         fitted growth {:+.2} MiB over {:.0} s (limit {:.1} MiB)\n",
        mib(first),
        mib(last),
        mib(peak),
        warm,
        mib(slope) * 60.0,
        mib(growth),
        span,
        mib(tolerance)
    )
}

/// The Wasm VM stats (and the JWT and rate-limit counters) at start and
/// end, as report text; a VM failure, reload or new VM is a problem.
pub fn vm_verdict(
    before: &[(String, u64)],
    after: &[(String, u64)],
    problems: &mut Vec<String>,
) -> String {
    let value = |stats: &[(String, u64)], name: &str| {
        stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    };
    let mut text = String::from("\nWasm VM stats (start -> end):\n");
    for (name, end) in after {
        let vm_stat = name.starts_with("wasm.");
        let watched = name.contains("jwks_fetch")
            || name.contains("keys_unavailable")
            || name.contains("slot_evictions");
        if !vm_stat && !watched {
            continue;
        }
        let start = value(before, name).unwrap_or(0);
        text += &format!("  {name}: {start} -> {end}\n");
        if is_vm_failure_stat(name) && *end > 0 {
            problems.push(format!("{name} = {end}"));
        }
        if name.ends_with(".created") && name.starts_with("wasm.") && *end != start {
            problems.push(format!(
                "{name} went from {start} to {end}: a VM was created during the soak"
            ));
        }
    }
    text
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
