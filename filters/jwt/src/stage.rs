//! JWT validation as a stage of the engine: reads the token's headers, asks
//! [`decide`], applies the decision; waits (briefly) for remote keys that
//! are still loading, and refetches once on an unknown `kid`. The remote
//! key sets themselves are [`crate::keys`]'.

use std::cell::RefCell;
use std::time::Duration;

use palisade_shared::config::ConfigError;
use palisade_shared::contract;
use palisade_shared::engine::{
    self, Attribute, Attributes, CallResponse, Counter, DecisionKind, DecisionSet, Exchange, Host,
    HostStore, LogLevel, Module, Needs, Refusal, Stage, Step, Wake,
};
use palisade_shared::store::{self, UpdateOutcome};

use crate::cache::TokenCache;
use crate::challenge;
use crate::config::{Config, KeySource, VerifierChoice};
use crate::decide::{self, Decision, Refusal as JwtRefusal, Request};
use crate::error::Reason;
use crate::jwk::{parse_jwks_value, Jwk, Symmetric};
use crate::jws::Algorithm;
use crate::keys::{FetchEvent, RemoteKeySets};
use crate::nonce;
use crate::remote;
use crate::replay::{Recorded, ReplayTable};
use crate::sender::SenderContext;
use crate::verify::{self, Portable, SignatureVerifier};

/// How often the root context ticks when a provider's keys are remote.
const TICK: Duration = Duration::from_millis(250);

#[derive(Clone, Copy)]
struct Metrics {
    allowed: Counter,
    tolerated: Counter,
    denied: [Counter; Reason::NAMES.len()],
    cache_hit: Counter,
    waited: Counter,
    fetch_ok: Counter,
    fetch_failed: Counter,
    kid_refetch: Counter,
}

impl Metrics {
    fn define(host: &dyn Host) -> Self {
        let c = |name: &str| Counter::define(host, &format!("palisade.jwt.{name}"));
        Metrics {
            allowed: c("allowed"),
            tolerated: c("allowed_without_token"),
            denied: Reason::NAMES.map(|name| c(&format!("denied.{name}"))),
            cache_hit: c("cache_hit"),
            waited: c("waited_for_keys"),
            fetch_ok: c("jwks_fetch_ok"),
            fetch_failed: c("jwks_fetch_failed"),
            kid_refetch: c("kid_refetch"),
        }
    }

    fn deny(&self, host: &dyn Host, reason: Reason) {
        if let Some(i) = Reason::NAMES.iter().position(|n| *n == reason.name()) {
            if let Some(c) = self.denied.get(i) {
                c.inc(host);
            }
        }
    }
}

/// Envoy's BoringSSL through `verify_signature`, or the portable path. The
/// host path falls back to the portable one when the host cannot answer,
/// so the verdict never depends on which path ran.
struct HostVerifier<'a> {
    host: &'a dyn Host,
    use_host: bool,
}

impl SignatureVerifier for HostVerifier<'_> {
    fn verify(&self, alg: Algorithm, key: &Jwk, input: &[u8], signature: &[u8]) -> bool {
        if self.use_host && verify::host_capable(alg) {
            let Some(req) = verify::host_request(alg, key, signature) else {
                return false;
            };
            let args = verify::encode_verify_arguments(&req, input);
            if let Ok(result) = self.host.call_foreign_function("verify_signature", &args) {
                if let Some(verdict) = verify::decode_verify_result(&result) {
                    return verdict;
                }
            }
        }
        Portable.verify(alg, key, input, signature)
    }
}

/// Probes the host's `verify_signature` with the RFC 7515 A.2 (RS256) and
/// A.3 (ES256) examples: both must verify, and a tampered one must not.
fn probe_host_verifier(host: &dyn Host) -> Result<(), String> {
    const PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    let rsa = serde_json::json!({"kty":"RSA","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"});
    let ec = serde_json::json!({"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
    let cases = [
        (rsa, format!("eyJhbGciOiJSUzI1NiJ9.{PAYLOAD}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw")),
        (ec, format!("eyJhbGciOiJFUzI1NiJ9.{PAYLOAD}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")),
    ];
    for (jwk, token) in cases {
        let set = parse_jwks_value(&serde_json::json!({ "keys": [jwk] }), Symmetric::Refused)
            .map_err(|e| e.to_string())?;
        let jws = crate::jws::parse(&token, 8192).map_err(|r| r.name().to_string())?;
        let key = set.keys.first().ok_or("no probe key")?;
        let req =
            verify::host_request(jws.header.alg, key, &jws.signature).ok_or("no host request")?;
        let call = |text: &[u8]| -> Result<bool, String> {
            let args = verify::encode_verify_arguments(&req, text);
            let result = host
                .call_foreign_function("verify_signature", &args)
                .map_err(|status| format!("{status:?}"))?;
            verify::decode_verify_result(&result).ok_or_else(|| "unreadable result".to_string())
        };
        if !call(jws.signing_input.as_bytes())? || call(b"tampered")? {
            return Err(format!(
                "{} probe gave a wrong verdict",
                jws.header.alg.name()
            ));
        }
    }
    Ok(())
}

/// What one worker's stage holds across requests.
struct Worker {
    keys: RemoteKeySets,
    cache: TokenCache,
}

/// The JWT stage.
pub struct JwtStage {
    config: Config,
    metrics: Metrics,
    use_host_verifier: bool,
    any_remote: bool,
    worker: RefCell<Worker>,
    /// Each DPoP provider's replay table, by provider index.
    replay: Vec<Option<ReplayTable>>,
    /// Each nonce-requiring provider's nonce key, by provider index.
    nonce_keys: RefCell<Vec<Option<Vec<u8>>>>,
}

/// The shared-data key of a provider's nonce key, when none is configured.
fn nonce_key_name(provider: &str) -> String {
    format!("palisade.jwt.dpop.{provider}.nonce_key")
}

/// The nonce key shared by the workers: the stored one, or a new random
/// one stored for the others (workers that start together may each store
/// one; a nonce that fails under the key a worker holds makes it read the
/// stored key again, so they converge on the last one written).
fn shared_nonce_key(host: &dyn Host, provider: &str) -> Result<Vec<u8>, String> {
    let key = nonce_key_name(provider);
    let stored = || {
        host.shared_get(&key)
            .ok()
            .and_then(|(v, _)| v)
            .filter(|v| v.len() >= 32)
    };
    if let Some(existing) = stored() {
        return Ok(existing);
    }
    let mut fresh = [0u8; 32];
    getrandom::getrandom(&mut fresh)
        .map_err(|e| format!("no randomness for the nonce key: {e}"))?;
    host.shared_set(&key, &fresh, None)
        .map_err(|e| format!("cannot store the nonce key: {e:?}"))?;
    Ok(stored().unwrap_or_else(|| fresh.to_vec()))
}

/// The sender-constraint checks' view of the proxy for one request.
struct Senders<'a> {
    host: &'a dyn Host,
    attributes: &'a mut Attributes,
    replay: &'a [Option<ReplayTable>],
    nonce_keys: &'a RefCell<Vec<Option<Vec<u8>>>>,
    config: &'a Config,
}

impl SenderContext for Senders<'_> {
    fn peer_certificate_sha256(&mut self) -> Option<Vec<u8>> {
        // A certificate Envoy validated on this connection, never a header.
        if !self.attributes.flag(self.host, Attribute::Mtls) {
            return None;
        }
        let hex = self.attributes.string(self.host, Attribute::PeerSha256)?;
        palisade_shared::x509::from_hex(hex).filter(|d| d.len() == 32)
    }

    fn record_proof(
        &mut self,
        provider: usize,
        proof: (u64, u32),
        now: i64,
        until: i64,
    ) -> Recorded {
        match self.replay.get(provider).and_then(Option::as_ref) {
            Some(table) => table.record(&HostStore(self.host), proof, now, until),
            None => Recorded::Unavailable,
        }
    }

    fn nonce_secret(&mut self, provider: usize, refresh: bool) -> Option<Vec<u8>> {
        let p = self.config.providers.get(provider)?;
        let rules = p.dpop.as_ref()?.nonce.as_ref()?;
        if let Some(secret) = &rules.secret {
            return Some(secret.clone());
        }
        let mut keys = self.nonce_keys.try_borrow_mut().ok()?;
        let slot = keys.get_mut(provider)?;
        if refresh {
            if let Some(stored) = self
                .host
                .shared_get(&nonce_key_name(&p.name))
                .ok()
                .and_then(|(v, _)| v)
                .filter(|v| v.len() >= 32)
            {
                *slot = Some(stored);
            }
        }
        slot.clone()
    }
}

/// The standalone module `palisade_jwt.wasm`.
pub struct JwtModule;

impl Module for JwtModule {
    type Stage = JwtStage;
    const NAME: &'static str = "jwt";

    fn configure(config: &[u8], host: &dyn Host) -> Result<JwtStage, ConfigError> {
        JwtStage::configure(config, host)
    }
}

/// Whether a request may still wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The first look: it may wait.
    First,
    /// Woken after a wait: it decides now. `expired`: its time ran out.
    Again { expired: bool },
}

impl JwtStage {
    /// The stage for a configuration: metrics defined, the verifier chosen.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        let config = Config::from_json(config)?;
        for p in &config.providers {
            if let KeySource::Inline(set) = &p.keys {
                for line in &set.skipped {
                    Self::log(
                        host,
                        LogLevel::Warn,
                        &format!("provider `{}`: key skipped: {line}", p.name),
                    );
                }
            }
        }
        let use_host_verifier = match config.verifier {
            VerifierChoice::Portable => {
                Self::log(
                    host,
                    LogLevel::Info,
                    "signatures verified by the portable (pure-Rust) verifier, as configured",
                );
                false
            }
            VerifierChoice::Auto => match probe_host_verifier(host) {
                Ok(()) => {
                    Self::log(host, LogLevel::Info, "RS*/ES* signatures verified by the host (verify_signature); PS*, EdDSA and HS* by the portable verifier");
                    true
                }
                Err(why) => {
                    Self::log(host, LogLevel::Info, &format!("signatures verified by the portable (pure-Rust) verifier: host verify_signature unavailable ({why})"));
                    false
                }
            },
        };
        let any_remote = config
            .providers
            .iter()
            .any(|p| matches!(p.keys, KeySource::Remote(_)));
        let mut replay = Vec::with_capacity(config.providers.len());
        let mut nonce_keys = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            let at = format!("providers.{}.dpop", p.name);
            let Some(policy) = &p.dpop else {
                replay.push(None);
                nonce_keys.push(None);
                continue;
            };
            let table = ReplayTable::new(
                policy.replay_entries,
                format!("palisade.jwt.dpop.{}.jti.", p.name),
            );
            table
                .create(&HostStore(host))
                .map_err(|e| ConfigError::invalid(format!("{at}.replay_entries"), e))?;
            replay.push(Some(table));
            nonce_keys.push(match &policy.nonce {
                Some(n) if n.secret.is_none() => Some(
                    shared_nonce_key(host, &p.name)
                        .map_err(|e| ConfigError::invalid(format!("{at}.nonce"), e))?,
                ),
                _ => None,
            });
        }
        Ok(JwtStage {
            worker: RefCell::new(Worker {
                keys: RemoteKeySets::new(&config),
                cache: TokenCache::new(config.cache_entries),
            }),
            metrics: Metrics::define(host),
            use_host_verifier,
            any_remote,
            config,
            replay,
            nonce_keys: RefCell::new(nonce_keys),
        })
    }

    fn log(host: &dyn Host, level: LogLevel, message: &str) {
        engine::log(host, JwtModule::NAME, level, message);
    }

    /// Decides, and when an unknown `kid` may mean another worker already
    /// holds rotated keys, takes them and decides again.
    #[allow(clippy::too_many_arguments)]
    fn decide_synced(
        &self,
        worker: &mut Worker,
        request: &Request<'_>,
        host: &dyn Host,
        attributes: &mut Attributes,
        expired: bool,
        now_ms: i64,
    ) -> Decision {
        let verifier = HostVerifier {
            host,
            use_host: self.use_host_verifier,
        };
        let mut senders = Senders {
            host,
            attributes,
            replay: &self.replay,
            nonce_keys: &self.nonce_keys,
            config: &self.config,
        };
        let mut run = |worker: &mut Worker| {
            let lookup = worker.keys.lookup(&self.config, expired, now_ms);
            decide::decide(
                &self.config,
                request,
                &lookup,
                &verifier,
                &mut worker.cache,
                now_ms / 1000,
                &mut senders,
            )
        };
        let decision = run(worker);
        if let Decision::Deny(JwtRefusal {
            reason: Reason::UnknownKid,
            provider: Some(p),
            ..
        }) = decision
        {
            if let Some(provider) = self.config.providers.get(p) {
                let mut notes = Vec::new();
                let changed = worker
                    .keys
                    .sync_provider(p, &provider.name, host, &mut notes);
                self.report(host, notes);
                if changed {
                    worker.cache.clear();
                    return run(worker);
                }
            }
        }
        decision
    }

    /// Whether an unknown `kid` from a remote provider may trigger one
    /// refetch now (bounded per provider across every worker).
    fn may_refetch_for_kid(
        &self,
        host: &dyn Host,
        refusal: &JwtRefusal,
        now_ms: i64,
    ) -> Option<usize> {
        if refusal.reason != Reason::UnknownKid {
            return None;
        }
        let p = refusal.provider?;
        let provider = self.config.providers.get(p)?;
        let KeySource::Remote(spec) = &provider.keys else {
            return None;
        };
        let allowed = matches!(
            store::update(
                &HostStore(host),
                &remote::kid_key(&provider.name),
                3,
                |cur| { remote::take_kid_refresh(cur, now_ms, spec.refetch_interval_ms) }
            ),
            UpdateOutcome::Done { result: true, .. }
        );
        allowed.then_some(p)
    }

    fn handle(&self, cx: &mut Exchange<'_>, attempt: Attempt) -> Step {
        let host = cx.host;
        let now_ms = cx.now_ms();
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            // Not reachable: the engine never runs a stage inside itself.
            return self.deny(cx, &keys_unavailable());
        };
        let route_name = if self.config.needs_route_name {
            cx.attributes.route_name(host).to_string()
        } else {
            String::new()
        };
        let expired = attempt == Attempt::Again { expired: true };
        let request = Request {
            view: cx.request.view(&route_name),
            headers: cx.request.headers(),
        };
        let mut decision = self.decide_synced(
            &mut worker,
            &request,
            host,
            &mut *cx.attributes,
            expired,
            now_ms,
        );
        // Only the headers the rules and token sources need were read: when
        // the answer is not already an allow with a token, a CORS preflight
        // could change it, so look (an absent header costs little), and
        // decide again on the whole request if it may be one.
        if !cx.request.is_whole()
            && self.config.bypass_cors_preflight
            && !decide::is_authenticated(&decision)
            && cx
                .request
                .lookup(host, "access-control-request-method")
                .is_some()
        {
            cx.request.read_whole(host);
            let request = Request {
                view: cx.request.view(&route_name),
                headers: cx.request.headers(),
            };
            decision = self.decide_synced(
                &mut worker,
                &request,
                host,
                &mut *cx.attributes,
                expired,
                now_ms,
            );
        }
        let deadline_ms =
            now_ms.saturating_add(i64::try_from(self.config.key_wait_ms).unwrap_or(i64::MAX));
        match decision {
            Decision::WaitForKeys(_) if attempt == Attempt::First => {
                self.metrics.waited.inc(host);
                Step::Wait { deadline_ms }
            }
            Decision::WaitForKeys(_) => {
                drop(worker);
                self.deny(cx, &keys_unavailable())
            }
            Decision::Deny(refusal) => {
                // An unknown kid may mean the provider rotated its keys: one
                // refresh, within the rate bound, then decide again.
                if attempt == Attempt::First {
                    if let Some(p) = self.may_refetch_for_kid(host, &refusal, now_ms) {
                        worker.keys.force_refresh(p);
                        self.metrics.kid_refetch.inc(host);
                        return Step::Wait { deadline_ms };
                    }
                }
                drop(worker);
                self.deny(cx, &refusal)
            }
            Decision::Allow {
                verified,
                tolerated,
                cache_hits,
            } => {
                drop(worker);
                // The edits borrow the configuration and the verified
                // tokens, not the request: the head is free to change.
                let edits = decide::upstream_edits(
                    &self.config,
                    &Request {
                        view: cx.request.view(&route_name),
                        headers: cx.request.headers(),
                    },
                    &verified,
                );
                for name in &edits.remove {
                    cx.remove_request_header(name);
                }
                for (name, value) in &edits.set {
                    cx.set_request_header(name, value);
                }
                if let Some(path) = &edits.path {
                    cx.set_request_header(":path", path);
                }
                match &edits.cookie {
                    Some(Some(cookie)) => cx.set_request_header("cookie", cookie),
                    Some(None) => cx.remove_request_header("cookie"),
                    None => {}
                }
                if let Some(v) = verified.first() {
                    engine::publish(
                        host,
                        JwtModule::NAME,
                        contract::IDENTITY,
                        &v.facts.identity_json,
                    );
                    cx.decisions.set_identity(v.facts.identity.clone());
                }
                if let Some(all) = decide::identities_json(&verified) {
                    engine::publish(host, JwtModule::NAME, contract::IDENTITIES, &all);
                }
                self.metrics.allowed.inc(host);
                if cache_hits > 0 {
                    self.metrics.cache_hit.add(host, u64::from(cache_hits));
                }
                if let Some(reason) = tolerated {
                    self.metrics.tolerated.inc(host);
                    Self::log(
                        host,
                        LogLevel::Debug,
                        &format!("allowed without a valid token ({})", reason.name()),
                    );
                }
                Step::Continue
            }
        }
    }

    fn deny(&self, cx: &mut Exchange<'_>, refusal: &JwtRefusal) -> Step {
        let host = cx.host;
        self.metrics.deny(host, refusal.reason);
        let provider = refusal
            .provider
            .and_then(|p| self.config.providers.get(p))
            .map_or("-", |p| p.name.as_str());
        let level = if refusal.reason == Reason::KeysUnavailable {
            LogLevel::Warn
        } else {
            LogLevel::Debug
        };
        Self::log(
            host,
            level,
            &format!("refused ({}, provider {provider})", refusal.reason.name()),
        );
        let nonce = self.fresh_nonce(host, refusal, cx.now_ms() / 1000);
        Step::Refuse(Refusal {
            filter: JwtModule::NAME,
            reason: refusal.reason.name().to_string(),
            reply: challenge::reply(&self.config, refusal, cx.request.request_id(host), nonce),
        })
    }

    /// A server nonce for the challenge, when the provider concerned (or,
    /// for a missing token, one of the rule's) requires them.
    fn fresh_nonce(&self, host: &dyn Host, refusal: &JwtRefusal, now_s: i64) -> Option<String> {
        if refusal.reason.status() != 401 {
            return None;
        }
        let candidates: Vec<usize> = match refusal.provider {
            Some(p) => vec![p],
            None => refusal.providers.clone(),
        };
        let p = candidates.into_iter().find(|p| {
            self.config
                .providers
                .get(*p)
                .and_then(|p| p.dpop.as_ref())
                .is_some_and(|d| d.nonce.is_some())
        })?;
        let lifetime = self
            .config
            .providers
            .get(p)?
            .dpop
            .as_ref()?
            .nonce
            .as_ref()?
            .lifetime_s;
        let mut attributes = Attributes::default();
        let mut senders = Senders {
            host,
            attributes: &mut attributes,
            replay: &self.replay,
            nonce_keys: &self.nonce_keys,
            config: &self.config,
        };
        let secret = senders.nonce_secret(p, false)?;
        Some(nonce::mint(&secret, now_s, lifetime))
    }

    /// Logs and counts what the key sets reported.
    fn report(&self, host: &dyn Host, events: Vec<FetchEvent>) {
        for event in events {
            match event {
                FetchEvent::Fetched(name) => {
                    self.metrics.fetch_ok.inc(host);
                    Self::log(
                        host,
                        LogLevel::Info,
                        &format!("provider `{name}`: keys fetched"),
                    );
                }
                FetchEvent::Failed(name, error) => {
                    self.metrics.fetch_failed.inc(host);
                    Self::log(
                        host,
                        LogLevel::Warn,
                        &format!("provider `{name}`: key fetch failed: {error}"),
                    );
                }
                FetchEvent::Note(line) => Self::log(host, LogLevel::Info, &line),
            }
        }
    }

    /// Takes in new shared records and starts due fetches; new keys wake
    /// the waiting requests.
    fn sync(&self, worker: &mut Worker, host: &dyn Host) -> Wake {
        let mut events = Vec::new();
        let changed =
            worker
                .keys
                .sync_and_fetch(&self.config, host, host.now_unix_ms(), &mut events);
        self.report(host, events);
        if changed {
            worker.cache.clear();
            Wake::Waiters
        } else {
            Wake::No
        }
    }
}

fn keys_unavailable() -> JwtRefusal {
    JwtRefusal {
        reason: Reason::KeysUnavailable,
        provider: None,
        scope: None,
        dpop_scheme: false,
        providers: Vec::new(),
    }
}

impl Stage for JwtStage {
    type Request = ();

    fn needs(&self) -> Needs {
        Needs {
            request_headers: self.config.needs.headers.clone(),
            whole_request_map: self.config.needs.whole_map,
            tick: self.any_remote.then_some(TICK),
            provides: DecisionSet::of(&[DecisionKind::Identity, DecisionKind::Denial]),
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
        self.handle(cx, Attempt::First)
    }

    fn on_resume(&self, _: &mut (), cx: &mut Exchange<'_>, timed_out: bool) -> Step {
        self.handle(cx, Attempt::Again { expired: timed_out })
    }

    fn on_tick(&self, host: &dyn Host) -> Wake {
        match self.worker.try_borrow_mut() {
            Ok(mut worker) => self.sync(&mut worker, host),
            Err(_) => Wake::No,
        }
    }

    fn on_root_call_response(
        &self,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
    ) -> Option<Wake> {
        let mut worker = self.worker.try_borrow_mut().ok()?;
        if !worker.keys.owns_call(token) {
            return None;
        }
        let mut events = Vec::new();
        worker
            .keys
            .on_call_response(&self.config, token, response, host, &mut events);
        self.report(host, events);
        Some(self.sync(&mut worker, host))
    }
}

#[cfg(test)]
mod tests;
