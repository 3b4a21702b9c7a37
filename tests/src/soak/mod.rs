//! The soak under hostile load (`make soak`): the whole suite (audit, WAF,
//! JWT, MFA, rate limit) in one Envoy with two workers, as separate modules
//! or as the bundle, under a mix of valid traffic and attacks for a set
//! time, while the identity provider's JWKS endpoint fails and recovers on
//! a schedule ([`schedule`]). Every answer is checked against what its kind
//! of request must get ([`expect::check`]); Envoy's memory, its Wasm VM
//! stats and its log are watched ([`monitor`]); [`run`] returns the report
//! ([`report`]) and the problems found.

mod clients;
pub mod expect;
pub mod monitor;
pub mod report;
pub mod schedule;
pub mod traffic;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::deployment::Deployment;
use crate::http::send;
use crate::idp::{FakeIdp, IdpMode};
use crate::lock;
use crate::tokens::TestIssuer;
use crate::{EchoUpstream, Envoy, EnvoyConfig};
use clients::Recorder;
use traffic::Kind;

/// Gross bound on the valid traffic's p99 latency over the run (a loaded
/// 2-core machine; this catches a wedged worker, not a slow one).
const VALID_P99_BOUND_MS: f64 = 5000.0;

/// A finished soak.
pub struct Outcome {
    /// The printed report.
    pub report: String,
    /// What failed; empty when the soak passed.
    pub problems: Vec<String>,
}

fn deployment_name(deployment: Deployment) -> &'static str {
    match deployment {
        Deployment::Modules => "modules",
        Deployment::Bundle => "bundle",
    }
}

/// Runs the soak for `duration` against `deployment`.
pub fn run(deployment: Deployment, duration: Duration) -> Outcome {
    let upstream = EchoUpstream::start();
    let issuer = traffic::issuer();
    let idp = FakeIdp::start(traffic::ISSUER, issuer.jwks());
    let mut config = EnvoyConfig::new()
        .deployment(deployment)
        .concurrency(2)
        // Info: debug-level Wasm logs for every request would be the load.
        .arg("-l")
        .arg("info")
        .cluster("idp", idp.addr())
        .upstream(&upstream);
    for (stage, section) in traffic::chain() {
        config = config.wasm_filter(stage, section);
    }
    let envoy = config.start();
    let addr = envoy.addr();
    let pid = envoy.pid();
    let ready = wait_for_keys(&envoy, &issuer);
    assert!(
        ready,
        "no valid request passed within 30 s of start:\n{}",
        envoy.envoy_log()
    );
    let stats_before = envoy.stats();

    let rec = Recorder::new();
    let rss: Mutex<Vec<(f64, u64)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let rec = &rec;
        let (issuer, idp, rss) = (&issuer, &idp, &rss);
        s.spawn(move || {
            while rec.running() {
                idp.set_mode(schedule::idp_mode(rec.now_ms()));
                rec.pause(50);
            }
        });
        s.spawn(move || {
            while rec.running() {
                if let Some(bytes) = crate::rss_bytes(pid) {
                    lock(rss).push((rec.now_ms() as f64 / 1000.0, bytes));
                }
                rec.pause(1000);
            }
        });
        for client in 0..2 {
            s.spawn(move || clients::valid_client(rec, addr, issuer, client));
        }
        s.spawn(move || clients::attack_client(rec, addr));
        s.spawn(move || clients::token_client(rec, addr, issuer));
        s.spawn(move || clients::body_client(rec, addr, issuer));
        s.spawn(move || clients::slow_client(rec, addr));
        s.spawn(move || clients::flood_client(rec, addr));
        s.spawn(move || clients::spray_client(rec, addr));
        s.spawn(move || clients::probe_client(rec, addr));
        std::thread::sleep(duration);
        rec.stop();
    });

    // The IdP comes back for good: the keys must follow, and the VMs still
    // answer.
    idp.set_mode(IdpMode::Up);
    let recovered = wait_for_keys(&envoy, &issuer);
    let stats_after = envoy.stats();
    let log = envoy.envoy_log();
    let (samples, mismatches) = rec.take();
    let rss = std::mem::take(&mut *lock(&rss));
    let run_s = duration.as_secs();
    let mut problems = Vec::new();
    let mut text = format!(
        "Palisade soak: {} deployment, {run_s} s, Envoy --concurrency 2, {} requests ({:.0}/s)\nIdP: {}\n\n",
        deployment_name(deployment),
        samples.len(),
        samples.len() as f64 / duration.as_secs_f64(),
        schedule::describe()
    );
    text += &report::kinds_table(&samples);
    text.push('\n');
    let window_s = if run_s <= 120 { 10 } else { 60 };
    text += &report::windows_table(&samples, &rss, window_s, run_s);
    text.push('\n');

    // Every answer as expected, and every kind exercised.
    if !mismatches.is_empty() {
        let first: Vec<String> = mismatches
            .iter()
            .take(10)
            .map(|m| {
                format!(
                    "  {} at {} ms: status {:?}: {}",
                    m.kind.name(),
                    m.at_ms,
                    m.status,
                    m.detail
                )
            })
            .collect();
        problems.push(format!(
            "{} answers did not match their kind:\n{}",
            mismatches.len(),
            first.join("\n")
        ));
    }
    for kind in Kind::ALL {
        if !samples.iter().any(|s| s.kind == kind) {
            problems.push(format!("no {} request was made", kind.name()));
        }
    }
    // The schedule's first long outage runs the keys out from 12 s on.
    let keys_ran_out = samples
        .iter()
        .any(|s| s.kind == Kind::Valid && s.status == Some(503));
    if run_s >= 15 && !keys_ran_out {
        problems.push(
            "no valid request met the keys-unavailable 503: the outage was not exercised".into(),
        );
    }
    if !recovered {
        problems
            .push("no valid request passed within 30 s after the IdP came back for good".into());
    }

    // Latency, grossly.
    let valid_p99 = report::spread(
        samples
            .iter()
            .filter(|s| s.kind.valid())
            .map(|s| s.latency_ms),
    )[2];
    if valid_p99 > VALID_P99_BOUND_MS {
        problems.push(format!(
            "valid p99 {valid_p99:.0} ms over {VALID_P99_BOUND_MS} ms"
        ));
    }

    // Memory: flat after warm-up.
    text += &monitor::memory_verdict(&rss, duration, &mut problems);

    // The VMs: no failure, no reload, no VM created after start.
    text += &monitor::vm_verdict(&stats_before, &stats_after, &mut problems);

    // Envoy's log.
    let fatal: Vec<&str> = log
        .lines()
        .filter(|l| monitor::is_fatal_log_line(l))
        .collect();
    if !fatal.is_empty() {
        problems.push(format!(
            "{} fatal lines in Envoy's log, first: {}",
            fatal.len(),
            fatal[..fatal.len().min(5)].join("\n")
        ));
    }
    text += "\nEnvoy log, warnings and errors by message:\n";
    for (message, n) in monitor::log_summary(&log).iter().take(8) {
        text += &format!("  {n:>7}  {message}\n");
    }
    text += &format!("\nIdP: {} JWKS requests received\n", idp.jwks_fetches());
    text += &format!(
        "Limit probes evicted by the spray before their second request (then given a full bucket, as documented): {}\n",
        rec.probe_resets()
    );
    text += &if problems.is_empty() {
        "\nverdict: PASS\n".to_string()
    } else {
        format!("\nverdict: FAIL\n{}\n", problems.join("\n"))
    };
    let path = crate::repo_root()
        .join("target")
        .join(format!("soak-report-{}.txt", deployment_name(deployment)));
    let _ = std::fs::write(&path, &text);
    Outcome {
        report: format!("{text}(written to {})\n", path.display()),
        problems,
    }
}

/// Sends valid requests until one passes (30 s at most).
fn wait_for_keys(envoy: &Envoy, issuer: &TestIssuer) -> bool {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let request = traffic::valid(issuer, "warm-up", 0);
        if send(envoy.addr(), &request).is_ok_and(|r| r.status == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}
