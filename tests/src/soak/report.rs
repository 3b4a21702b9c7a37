//! The soak's record of every request, and the report printed from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::traffic::Kind;

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    /// What it was.
    pub kind: Kind,
    /// When it was sent, ms after the soak's start.
    pub at_ms: u64,
    /// How long until the whole answer was read, ms.
    pub latency_ms: f64,
    /// The status, or `None` when no answer came (a truncated body's
    /// connection, or a failure).
    pub status: Option<u16>,
}

/// A response that did not match its kind's expectation.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// What it was.
    pub kind: Kind,
    /// When it was sent, ms after the soak's start.
    pub at_ms: u64,
    /// The status, if any.
    pub status: Option<u16>,
    /// What was wrong, and the start of the body.
    pub detail: String,
}

/// `p` (0..=100) percentile of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p90, p99 and max of `values`.
pub fn spread(values: impl Iterator<Item = f64>) -> [f64; 4] {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    [
        percentile(&v, 50.0),
        percentile(&v, 90.0),
        percentile(&v, 99.0),
        v.last().copied().unwrap_or(0.0),
    ]
}

/// Counts by status per kind, and latency spread per kind.
pub fn kinds_table(samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>8}  {:<34} {:>8} {:>8} {:>8} {:>8}",
        "kind", "requests", "statuses", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for kind in Kind::ALL {
        let of_kind: Vec<&Sample> = samples.iter().filter(|s| s.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        for s in &of_kind {
            let key = s.status.map_or("none".to_string(), |c| c.to_string());
            *statuses.entry(key).or_default() += 1;
        }
        let statuses: Vec<String> = statuses.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        let [p50, p90, p99, max] = spread(of_kind.iter().map(|s| s.latency_ms));
        let _ = writeln!(
            out,
            "{:<20} {:>8}  {:<34} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            kind.name(),
            of_kind.len(),
            statuses.join(" "),
            p50,
            p90,
            p99,
            max
        );
    }
    out
}

/// Per time window: requests, the valid traffic's latency spread, every
/// timed kind's p99, and Envoy's RSS at the window's end.
pub fn windows_table(samples: &[Sample], rss: &[(f64, u64)], window_s: u64, run_s: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11} {:>8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>9}",
        "window s",
        "requests",
        "valid p50",
        "valid p90",
        "valid p99",
        "valid max",
        "all p99 ms",
        "RSS MiB"
    );
    let mut start = 0;
    while start < run_s {
        let end = (start + window_s).min(run_s);
        let in_window: Vec<&Sample> = samples
            .iter()
            .filter(|s| (start * 1000..end * 1000).contains(&s.at_ms))
            .collect();
        let [p50, p90, p99, max] = spread(
            in_window
                .iter()
                .filter(|s| s.kind.valid())
                .map(|s| s.latency_ms),
        );
        let all_p99 = spread(
            in_window
                .iter()
                .filter(|s| s.kind.timed())
                .map(|s| s.latency_ms),
        )[2];
        let rss_mib = rss
            .iter()
            .rev()
            .find(|(t, _)| *t <= end as f64)
            .map_or(0.0, |(_, b)| *b as f64 / 1048576.0);
        let _ = writeln!(
            out,
            "{:<11} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>11.1} {:>9.1}",
            format!("{start}-{end}"),
            in_window.len(),
            p50,
            p90,
            p99,
            max,
            all_p99,
            rss_mib
        );
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 90.0), 3.0);
        assert_eq!(percentile(&[], 90.0), 0.0);
        assert_eq!(
            spread([4.0, 1.0, 2.0, 3.0].into_iter()),
            [2.0, 4.0, 4.0, 4.0]
        );
    }
}
