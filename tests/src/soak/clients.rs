//! The soak's client threads, one per kind of traffic, and what they
//! share: the record of every answer and of every mismatch.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::expect::{self, Probe};
use super::report::{Mismatch, Sample};
use super::schedule;
use super::traffic::{self, Kind};
use crate::http::{send, Request, Response};
use crate::lock;
use crate::tokens::TestIssuer;

/// One-shot keys the limit probe sprays after its key's first request:
/// about six new claims in every set of the rule's table, its own included,
/// while the probe holds a bucket.
const PROBE_SPRAY: usize = 200;

/// What the client threads share.
pub(super) struct Recorder {
    start: Instant,
    stop: AtomicBool,
    samples: Mutex<Vec<Sample>>,
    mismatches: Mutex<Vec<Mismatch>>,
    /// Limit probes evicted before their second request.
    probe_resets: AtomicU64,
}

impl Recorder {
    pub(super) fn new() -> Self {
        Recorder {
            start: Instant::now(),
            stop: AtomicBool::new(false),
            samples: Mutex::new(Vec::new()),
            mismatches: Mutex::new(Vec::new()),
            probe_resets: AtomicU64::new(0),
        }
    }

    /// Ends the soak: every thread stops after its current request.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Limit probes evicted before their second request, so far.
    pub(super) fn probe_resets(&self) -> u64 {
        self.probe_resets.load(Ordering::Relaxed)
    }

    /// Every answer recorded, and every mismatch, taken out.
    pub(super) fn take(&self) -> (Vec<Sample>, Vec<Mismatch>) {
        (
            std::mem::take(&mut *lock(&self.samples)),
            std::mem::take(&mut *lock(&self.mismatches)),
        )
    }

    /// Milliseconds since the soak's start (the schedule's clock).
    pub(super) fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Whether the soak is still on.
    pub(super) fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `ms` unless the soak ends first.
    pub(super) fn pause(&self, ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        while self.running() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(ms.min(50)));
        }
    }

    /// Runs `exchange` (which sends `request`), checks the answer against its
    /// kind with the keys' state over the request's time, records it.
    fn exchange(
        &self,
        kind: Kind,
        request: &Request,
        exchange: impl FnOnce() -> std::io::Result<Response>,
    ) {
        let at_ms = self.now_ms();
        let sent = Instant::now();
        let answer = exchange();
        let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
        let keys = schedule::keys_at(at_ms).over(schedule::keys_at(self.now_ms()));
        let (status, verdict) = match &answer {
            Ok(r) => (Some(r.status), expect::check(kind, keys, request, r)),
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

pub(super) fn valid_client(rec: &Recorder, addr: SocketAddr, issuer: &TestIssuer, client: u32) {
    let sub = format!("user-{client}");
    // Tokens live 10 minutes: the reused one is minted again every 5, so a
    // soak longer than a token's life still sends valid ones.
    let mut reused = (traffic::token(issuer, &sub, "pwd"), Instant::now());
    let mut n = 0u64;
    while rec.running() {
        if reused.1.elapsed() > Duration::from_secs(300) {
            reused = (traffic::token(issuer, &sub, "pwd"), Instant::now());
        }
        let (kind, request) = match n % 8 {
            4 => (Kind::ValidReused, traffic::with_token(&reused.0)),
            5 => (
                Kind::Admin,
                Request::get(&format!("/admin/reports/{n}")).header(
                    "authorization",
                    &traffic::bearer(&traffic::token(issuer, &sub, "mfa")),
                ),
            ),
            6 => (
                Kind::StepUp,
                Request::get("/admin/reports").header(
                    "authorization",
                    &traffic::bearer(&traffic::token(issuer, &sub, "pwd")),
                ),
            ),
            _ => (Kind::Valid, traffic::valid(issuer, &sub, n)),
        };
        rec.exchange(kind, &request, || send(addr, &request));
        n += 1;
        rec.pause(10);
    }
}

pub(super) fn attack_client(rec: &Recorder, addr: SocketAddr) {
    let attacks = traffic::attacks();
    for request in attacks.iter().cycle() {
        if !rec.running() {
            return;
        }
        rec.exchange(Kind::Attack, request, || send(addr, request));
        rec.pause(10);
    }
}

pub(super) fn token_client(rec: &Recorder, addr: SocketAddr, issuer: &TestIssuer) {
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
            let (kind, token) = if n.is_multiple_of(2) {
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

pub(super) fn body_client(rec: &Recorder, addr: SocketAddr, issuer: &TestIssuer) {
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
                        &traffic::bearer(&traffic::token(issuer, "bulk", "pwd")),
                    );
                rec.exchange(Kind::Valid, &request, || send(addr, &request));
            }
        }
        n += 1;
        rec.pause(20);
    }
}

pub(super) fn slow_client(rec: &Recorder, addr: SocketAddr) {
    let mut n = 1u64;
    while rec.running() {
        let request = traffic::slow_body(n);
        rec.exchange(Kind::SlowBody, &request, || {
            traffic::send_slowly(addr, &request, Duration::from_secs(2))
        });
        n += 2;
    }
}

pub(super) fn flood_client(rec: &Recorder, addr: SocketAddr) {
    let mut n = 0u64;
    while rec.running() {
        let request = traffic::header_flood(n);
        rec.exchange(Kind::HeaderFlood, &request, || send(addr, &request));
        n += 1;
        rec.pause(50);
    }
}

pub(super) fn spray_client(rec: &Recorder, addr: SocketAddr) {
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
/// until refused twice; [`Probe`] checks each answer.
pub(super) fn probe_client(rec: &Recorder, addr: SocketAddr) {
    let mut round = 0u64;
    while rec.running() {
        let request = traffic::keyed(&format!("probe-{round}"));
        let mut probe = Probe::default();
        let mut failed = false;
        let mut last_answer = Instant::now();
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
                Ok(r) => probe.next(r, last_answer.elapsed()),
                Err(e) => Err(format!("no answer: {e}")),
            };
            last_answer = Instant::now();
            failed = verdict.is_err();
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
        if !failed && !probe.done() {
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
