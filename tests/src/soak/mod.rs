//! The soak under hostile load (`make soak`): the whole suite (audit, WAF,
//! JWT, MFA, rate limit) in one Envoy with two workers, as separate modules
//! or as the bundle, under a mix of valid traffic and attacks for a set
//! time, while the identity provider's JWKS endpoint fails and recovers on
//! a schedule ([`schedule`]). Every answer is checked against what its kind
//! of request must get ([`traffic::check`]); Envoy's memory, its Wasm VM
//! stats and its log are watched ([`monitor`]); [`run`] returns the report
//! ([`report`]) and the problems found.

pub mod monitor;
pub mod report;
pub mod schedule;
pub mod traffic;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::deployment::Deployment;
use crate::http::{send, Request, Response};
use crate::idp::{FakeIdp, IdpMode};
use crate::tokens::TestIssuer;
use crate::{EchoUpstream, Envoy, EnvoyConfig};
use report::{Mismatch, Sample};
use traffic::Kind;

/// The share of the run before memory is expected to be flat (caches and
/// V8 heaps fill up first).
const WARM_UP_SHARE: f64 = 0.2;
/// Memory growth after warm-up that fails the run: the larger of this and
/// [`RSS_GROWTH_SHARE`] of the mean RSS.
const RSS_GROWTH_FLOOR: f64 = 8.0 * 1048576.0;
const RSS_GROWTH_SHARE: f64 = 0.05;
/// One-shot keys the limit probe sprays after its key's first request:
/// enough that every set of 8 of the rule's 64 slots gets a claim after the
/// probe's (a set is missed with odds 8 × (7/8)^200, about 2e-11).
const PROBE_SPRAY: usize = 200;
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

/// What the client threads share.
struct Recorder {
    start: Instant,
    stop: AtomicBool,
    samples: Mutex<Vec<Sample>>,
    mismatches: Mutex<Vec<Mismatch>>,
    /// Limit probes evicted before their second request.
    probe_resets: AtomicU64,
}

impl Recorder {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `ms` unless the soak ends first.
    fn pause(&self, ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        while self.running() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(ms.min(50)));
        }
    }

    /// Sends `request` (or runs `exchange`), checks the answer against its
    /// kind with the keys' state over the request's time, records it.
    fn exchange(
        &self,
        kind: Kind,
        request: &Request,
        exchange: impl FnOnce() -> std::io::Result<Response>,
    ) -> Option<Response> {
        let at_ms = self.now_ms();
        let sent = Instant::now();
        let answer = exchange();
        let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
        let keys = schedule::keys_at(at_ms).over(schedule::keys_at(self.now_ms()));
        let (status, verdict) = match &answer {
            Ok(r) => (Some(r.status), traffic::check(kind, keys, request, r)),
            Err(e) => (None, Err(format!("no answer: {e}"))),
        };
        self.record(
            kind,
            at_ms,
            latency_ms,
            status,
            verdict,
            answer.as_ref().ok(),
        );
        answer.ok()
    }

    fn record(
        &self,
        kind: Kind,
        at_ms: u64,
        latency_ms: f64,
        status: Option<u16>,
        verdict: Result<(), String>,
        answer: Option<&Response>,
    ) {
        lock(&self.samples).push(Sample {
            kind,
            at_ms,
            latency_ms,
            status,
        });
        if let Err(why) = verdict {
            let body: String = answer
                .map(Response::text)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            lock(&self.mismatches).push(Mismatch {
                kind,
                at_ms,
                status,
                detail: format!("{why}; body: {body}"),
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    let rec = Recorder {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        samples: Mutex::new(Vec::new()),
        mismatches: Mutex::new(Vec::new()),
        probe_resets: AtomicU64::new(0),
    };
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
                if let Some(bytes) = monitor::rss_bytes(pid) {
                    lock(rss).push((rec.start.elapsed().as_secs_f64(), bytes));
                }
                rec.pause(1000);
            }
        });
        for client in 0..2 {
            s.spawn(move || valid_client(rec, addr, issuer, client));
        }
        s.spawn(move || attack_client(rec, addr));
        s.spawn(move || token_client(rec, addr, issuer));
        s.spawn(move || body_client(rec, addr, issuer));
        s.spawn(move || slow_client(rec, addr));
        s.spawn(move || flood_client(rec, addr));
        s.spawn(move || spray_client(rec, addr));
        s.spawn(move || probe_client(rec, addr));
        std::thread::sleep(duration);
        rec.stop.store(true, Ordering::Relaxed);
    });

    // The IdP comes back for good: the keys must follow, and the VMs still
    // answer.
    idp.set_mode(IdpMode::Up);
    let recovered = wait_for_keys(&envoy, &issuer);
    let stats_after = envoy.stats();
    let log = envoy.envoy_log();
    let samples = std::mem::take(&mut *lock(&rec.samples));
    let mismatches = std::mem::take(&mut *lock(&rec.mismatches));
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
    text += &memory_verdict(&rss, duration, &mut problems);

    // The VMs: no failure, no reload, no VM created after start.
    text += &vm_verdict(&stats_before, &stats_after, &mut problems);

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
        rec.probe_resets.load(Ordering::Relaxed)
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

fn memory_verdict(rss: &[(f64, u64)], duration: Duration, problems: &mut Vec<String>) -> String {
    let warm = duration.as_secs_f64() * WARM_UP_SHARE;
    let after: Vec<(f64, f64)> = rss
        .iter()
        .filter(|(t, _)| *t >= warm)
        .map(|(t, b)| (*t, *b as f64))
        .collect();
    let mib = |b: f64| b / 1048576.0;
    let slope = monitor::slope(&after);
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

fn vm_verdict(
    before: &[(String, u64)],
    after: &[(String, u64)],
    problems: &mut Vec<String>,
) -> String {
    let value = |stats: &[(String, u64)], name: &str| {
        stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    };
    let mut text = String::from("\nWasm VM stats (start -> end):\n");
    for (name, end) in after {
        let vm_stat = name.starts_with("wasm.") || monitor::is_vm_failure_stat(name);
        let watched = name.contains("jwks_fetch")
            || name.contains("keys_unavailable")
            || name.contains("slot_evictions");
        if !vm_stat && !watched {
            continue;
        }
        let start = value(before, name).unwrap_or(0);
        text += &format!("  {name}: {start} -> {end}\n");
        if monitor::is_vm_failure_stat(name) && *end > 0 {
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

fn valid_client(rec: &Recorder, addr: std::net::SocketAddr, issuer: &TestIssuer, client: u32) {
    let sub = format!("user-{client}");
    let reused = traffic::token(issuer, &sub, "pwd");
    let mut n = 0u64;
    while rec.running() {
        let (kind, request) = match n % 8 {
            4 => (Kind::ValidReused, traffic::with_token(&reused)),
            5 => (
                Kind::Admin,
                Request::get(&format!("/admin/reports/{n}")).header(
                    "authorization",
                    &format!("Bearer {}", traffic::token(issuer, &sub, "mfa")),
                ),
            ),
            6 => (
                Kind::StepUp,
                Request::get("/admin/reports").header(
                    "authorization",
                    &format!("Bearer {}", traffic::token(issuer, &sub, "pwd")),
                ),
            ),
            _ => (Kind::Valid, traffic::valid(issuer, &sub, n)),
        };
        rec.exchange(kind, &request, || send(addr, &request));
        n += 1;
        rec.pause(10);
    }
}

fn attack_client(rec: &Recorder, addr: std::net::SocketAddr) {
    let attacks = traffic::attacks();
    for request in attacks.iter().cycle() {
        if !rec.running() {
            return;
        }
        rec.exchange(Kind::Attack, request, || send(addr, request));
        rec.pause(10);
    }
}

fn token_client(rec: &Recorder, addr: std::net::SocketAddr, issuer: &TestIssuer) {
    let mut n = 0usize;
    while rec.running() {
        // Fresh tokens now and then: the "valid but flipped" ones stay
        // unexpired.
        let malformed = traffic::malformed_tokens(issuer);
        let forged = traffic::forged_tokens(issuer);
        for _ in 0..100 {
            if !rec.running() {
                return;
            }
            let (kind, token) = if n % 2 == 0 {
                (Kind::MalformedToken, &malformed[n / 2 % malformed.len()])
            } else {
                (Kind::ForgedToken, &forged[n / 2 % forged.len()])
            };
            let request = traffic::with_token(token);
            rec.exchange(kind, &request, || send(addr, &request));
            n += 1;
            rec.pause(10);
        }
    }
}

fn body_client(rec: &Recorder, addr: std::net::SocketAddr, issuer: &TestIssuer) {
    let mut n = 0u64;
    while rec.running() {
        match n % 3 {
            0 => {
                let request = traffic::oversized(n);
                rec.exchange(Kind::Oversized, &request, || send(addr, &request));
            }
            1 => {
                let at_ms = rec.now_ms();
                let sent = Instant::now();
                let ok = traffic::send_truncated(addr, issuer, n);
                let verdict = if ok {
                    Ok(())
                } else {
                    Err("could not connect".to_string())
                };
                rec.record(
                    Kind::Truncated,
                    at_ms,
                    sent.elapsed().as_secs_f64() * 1000.0,
                    None,
                    verdict,
                    None,
                );
            }
            _ => {
                // A large valid body, under the WAF's limit.
                let body = serde_json::json!({"items": vec!["sku-1234"; 2000], "n": n}).to_string();
                let request = Request::post("/api/orders/bulk", body)
                    .header("content-type", "application/json")
                    .header(
                        "authorization",
                        &format!("Bearer {}", traffic::token(issuer, "bulk", "pwd")),
                    );
                rec.exchange(Kind::Valid, &request, || send(addr, &request));
            }
        }
        n += 1;
        rec.pause(20);
    }
}

fn slow_client(rec: &Recorder, addr: std::net::SocketAddr) {
    let mut n = 1u64;
    while rec.running() {
        let request = traffic::slow_body(n);
        rec.exchange(Kind::SlowBody, &request, || {
            traffic::send_slowly(addr, &request, Duration::from_secs(2))
        });
        n += 2;
    }
}

fn flood_client(rec: &Recorder, addr: std::net::SocketAddr) {
    let mut n = 0u64;
    while rec.running() {
        let request = traffic::header_flood(n);
        rec.exchange(Kind::HeaderFlood, &request, || send(addr, &request));
        n += 1;
        rec.pause(50);
    }
}

fn spray_client(rec: &Recorder, addr: std::net::SocketAddr) {
    let mut n = 0u64;
    while rec.running() {
        let request = traffic::keyed(&format!("spray-{n}"));
        rec.exchange(Kind::Spray, &request, || send(addr, &request));
        n += 1;
        rec.pause(5);
    }
}

/// Every 3 s a new key: its first request claims a bucket, then the
/// probe sprays one-shot keys of its own, then the key spends its bucket
/// until refused twice; [`traffic::Probe`] checks each answer.
fn probe_client(rec: &Recorder, addr: std::net::SocketAddr) {
    let mut round = 0u64;
    while rec.running() {
        let request = traffic::keyed(&format!("probe-{round}"));
        let mut probe = traffic::Probe::default();
        for i in 0..4 * traffic::KEY_LIMIT {
            if i == 1 {
                for k in 0..PROBE_SPRAY {
                    let one_shot = traffic::keyed(&format!("probe-{round}-spray-{k}"));
                    rec.exchange(Kind::Spray, &one_shot, || send(addr, &one_shot));
                }
            }
            let at_ms = rec.now_ms();
            let sent = Instant::now();
            let answer = send(addr, &request);
            let latency = sent.elapsed().as_secs_f64() * 1000.0;
            let verdict = match &answer {
                Ok(r) => probe.next(r),
                Err(e) => Err(format!("no answer: {e}")),
            };
            let failed = verdict.is_err();
            rec.record(
                Kind::LimitProbe,
                at_ms,
                latency,
                answer.as_ref().ok().map(|r| r.status),
                verdict,
                answer.as_ref().ok(),
            );
            if failed || probe.done() {
                break;
            }
        }
        if !probe.done() {
            rec.record(
                Kind::LimitProbe,
                rec.now_ms(),
                0.0,
                None,
                Err(format!("round {round} never refused")),
                None,
            );
        }
        rec.probe_resets
            .fetch_add(probe.resets as u64, Ordering::Relaxed);
        round += 1;
        rec.pause(3000);
    }
}
