//! The proxy-wasm adapter: gathers the request, calls [`decide`], applies the
//! decision; owns the remote key fetches (root context, shared data) and the
//! requests waiting for keys. Nothing here decides anything.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use palisade_shared::contract::{self, Denial};
use palisade_shared::headers::first_value;
use palisade_shared::host::{self, Counter, HostSharedData};
use palisade_shared::matcher::RequestView;
use palisade_shared::store::{self, SharedStore, UpdateOutcome};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::cache::TokenCache;
use crate::challenge;
use crate::config::{Config, KeySource, RemoteSpec, VerifierChoice};
use crate::decide::{self, Decision, KeyLookup, KeyState, Refusal, Request};
use crate::error::Reason;
use crate::jwk::{parse_jwks, parse_jwks_value, Jwk, KeySet, Symmetric};
use crate::jws::Algorithm;
use crate::remote::{self, KeyRecord};
use crate::verify::{self, Portable, SignatureVerifier};

proxy_wasm::main! {{
    host::install_panic_hook();
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(JwtRoot { id, shared: None, calls: HashMap::new() }) });
}}

const TICK: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, Default)]
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
    fn define() -> Self {
        let mut denied = [Counter::default(); Reason::NAMES.len()];
        for (slot, name) in denied.iter_mut().zip(Reason::NAMES) {
            *slot = Counter::define(&format!("palisade.jwt.denied.{name}"));
        }
        Metrics {
            allowed: Counter::define("palisade.jwt.allowed"),
            tolerated: Counter::define("palisade.jwt.allowed_without_token"),
            denied,
            cache_hit: Counter::define("palisade.jwt.cache_hit"),
            waited: Counter::define("palisade.jwt.waited_for_keys"),
            fetch_ok: Counter::define("palisade.jwt.jwks_fetch_ok"),
            fetch_failed: Counter::define("palisade.jwt.jwks_fetch_failed"),
            kid_refetch: Counter::define("palisade.jwt.kid_refetch"),
        }
    }

    fn deny(&self, reason: Reason) {
        if let Some(i) = Reason::NAMES.iter().position(|n| *n == reason.name()) {
            if let Some(c) = self.denied.get(i) {
                c.inc();
            }
        }
    }
}

/// Envoy's BoringSSL through `verify_signature`, or the portable path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verifier {
    Host,
    Portable,
}

impl SignatureVerifier for Verifier {
    fn verify(&self, alg: Algorithm, key: &Jwk, input: &[u8], signature: &[u8]) -> bool {
        if *self == Verifier::Host && verify::host_capable(alg) {
            let Some(req) = verify::host_request(alg, key, signature) else {
                return false;
            };
            let args = verify::encode_verify_arguments(&req, input);
            if let Ok(Some(result)) =
                hostcalls::call_foreign_function("verify_signature", Some(&args))
            {
                if let Some(verdict) = verify::decode_verify_result(&result) {
                    return verdict;
                }
            }
            // The host could not answer (it refused the key, say): the
            // portable path decides, so the verdict never depends on it.
        }
        Portable.verify(alg, key, input, signature)
    }
}

/// Probes the host's `verify_signature` with the RFC 7515 A.2 (RS256) and
/// A.3 (ES256) examples: both must verify, and a tampered one must not.
fn probe_host_verifier() -> Result<(), String> {
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
            match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
                Ok(Some(bytes)) => verify::decode_verify_result(&bytes)
                    .ok_or_else(|| "unreadable result".to_string()),
                Ok(None) => Err("empty result".into()),
                Err(status) => Err(format!("{status:?}")),
            }
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

/// One remote provider's keys, as this worker has them.
#[derive(Default)]
struct RemoteKeys {
    set: Option<Rc<KeySet>>,
    fetched_at_ms: i64,
    record: Option<KeyRecord>,
    cas: Option<u32>,
    fetching: bool,
    forced: bool,
}

struct Waiter {
    context_id: u32,
    deadline_ms: i64,
}

/// What the root and the request contexts of one worker share.
struct Shared {
    config: Rc<Config>,
    remote: Vec<Option<RemoteKeys>>,
    cache: TokenCache,
    metrics: Metrics,
    verifier: Verifier,
    waiters: Vec<Waiter>,
    /// Waiters whose time is up: keys still loading count as unavailable.
    expired: bool,
}

struct Lookup<'a> {
    config: &'a Config,
    remote: &'a [Option<RemoteKeys>],
    expired: bool,
    now_ms: i64,
}

impl KeyLookup for Lookup<'_> {
    fn keys(&self, index: usize) -> KeyState {
        let Some(provider) = self.config.providers.get(index) else {
            return KeyState::Unavailable;
        };
        match (
            &provider.keys,
            self.remote.get(index).and_then(Option::as_ref),
        ) {
            (KeySource::Inline(set), _) => KeyState::Ready(set.clone()),
            (KeySource::Remote(spec), Some(r)) => match &r.set {
                Some(set) if remote::usable(r.fetched_at_ms, spec, self.now_ms) => {
                    KeyState::Ready(set.clone())
                }
                Some(_) => KeyState::Unavailable,
                None if self.expired => KeyState::Unavailable,
                None if r.record.as_ref().is_some_and(|rec| rec.failures > 0) => {
                    KeyState::Unavailable
                }
                None => KeyState::Loading,
            },
            (KeySource::Remote(_), None) => KeyState::Unavailable,
        }
    }
}

fn request_id() -> Option<String> {
    host::request_header("x-request-id")
}

/// What became of a request.
enum Outcome {
    Continue,
    Wait,
}

/// The request headers the decision needs: the whole map, or only the
/// configured ones by name (see [`crate::config::RequestNeeds`]).
fn read_headers(config: &Config, whole_map: bool) -> Vec<(String, String)> {
    if whole_map {
        return host::request_headers();
    }
    let mut out = Vec::with_capacity(config.needs.headers.len());
    for name in &config.needs.headers {
        if let Ok(Some(bytes)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
            // Valid UTF-8 (the usual case) is taken as it is, without a copy.
            let value = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            out.push((name.clone(), value));
        }
    }
    out
}

fn request_of<'a>(headers: &'a [(String, String)], route: &'a str) -> Request<'a> {
    let pseudo = |name: &str| first_value(headers, name).unwrap_or("");
    Request {
        view: RequestView {
            method: pseudo(":method"),
            host: pseudo(":authority"),
            path: pseudo(":path"),
            route_name: route,
        },
        headers,
    }
}

/// Decides, and when an unknown kid may mean another worker already holds
/// rotated keys, takes them and decides again.
fn decide_synced(s: &mut Shared, config: &Config, request: &Request<'_>, now_ms: i64) -> Decision {
    let verifier = s.verifier;
    let decision = run_decide(s, config, request, verifier, now_ms);
    if let Decision::Deny(Refusal {
        reason: Reason::UnknownKid,
        provider: Some(p),
        ..
    }) = decision
    {
        if let (Some(Some(r)), Some(provider)) = (s.remote.get_mut(p), config.providers.get(p)) {
            if sync_record(r, &provider.name) {
                s.cache.clear();
                return run_decide(s, config, request, verifier, now_ms);
            }
        }
    }
    decision
}

/// Runs the decision for the current (effective) request context and applies it.
/// `may_wait`: whether the request may still wait for keys.
fn handle_request(shared: &Rc<RefCell<Shared>>, context_id: u32, may_wait: bool) -> Outcome {
    let now_ms = host::now_unix_millis();
    let Ok(mut guard) = shared.try_borrow_mut() else {
        return deny(
            shared,
            &Refusal {
                reason: Reason::KeysUnavailable,
                provider: None,
                scope: None,
            },
        );
    };
    let s = &mut *guard;
    let config = s.config.clone();
    let route = if config.needs_route_name {
        host::property_string(&["xds", "route_name"]).unwrap_or_default()
    } else {
        String::new()
    };
    let mut headers = read_headers(&config, config.needs.whole_map);
    let mut decision = decide_synced(s, &config, &request_of(&headers, &route), now_ms);
    // Only the headers the rules and token sources need were read: when the
    // answer is not already an allow with a token, a CORS preflight could
    // change it, so look (a header that is absent costs little), and decide
    // again on the whole request if it may be one.
    if !config.needs.whole_map
        && config.bypass_cors_preflight
        && !decide::is_authenticated(&decision)
        && host::request_header("access-control-request-method").is_some()
    {
        headers = read_headers(&config, true);
        decision = decide_synced(s, &config, &request_of(&headers, &route), now_ms);
    }
    match decision {
        Decision::WaitForKeys(_) if may_wait => {
            s.waiters.push(Waiter {
                context_id,
                deadline_ms: now_ms.saturating_add(config.key_wait_ms as i64),
            });
            s.metrics.waited.inc();
            Outcome::Wait
        }
        Decision::WaitForKeys(_) => {
            drop(guard);
            deny(
                shared,
                &Refusal {
                    reason: Reason::KeysUnavailable,
                    provider: None,
                    scope: None,
                },
            )
        }
        Decision::Deny(refusal) => {
            // An unknown kid may mean the provider rotated its keys: one
            // refresh, within the rate bound, then decide again.
            if refusal.reason == Reason::UnknownKid && may_wait {
                if let Some(p) = refusal.provider {
                    if let KeySource::Remote(spec) = &config.providers[p].keys {
                        let key = remote::kid_key(&config.providers[p].name);
                        let allowed = matches!(
                            store::update(&HostSharedData, &key, 3, |cur| {
                                remote::take_kid_refresh(cur, now_ms, spec.refetch_interval_ms)
                            }),
                            UpdateOutcome::Done { result: true, .. }
                        );
                        if allowed {
                            if let Some(Some(r)) = s.remote.get_mut(p) {
                                r.forced = true;
                            }
                            s.metrics.kid_refetch.inc();
                            s.waiters.push(Waiter {
                                context_id,
                                deadline_ms: now_ms.saturating_add(config.key_wait_ms as i64),
                            });
                            return Outcome::Wait;
                        }
                    }
                }
            }
            drop(guard);
            deny(shared, &refusal)
        }
        Decision::Allow {
            verified,
            tolerated,
            cache_hits,
        } => {
            let metrics = s.metrics;
            drop(guard);
            let request = request_of(&headers, &route);
            let edits = decide::upstream_edits(&config, &request, &verified);
            for name in &edits.remove {
                host::remove_request_header(name);
            }
            for (name, value) in &edits.set {
                host::set_request_header(name, value);
            }
            if let Some(path) = &edits.path {
                host::set_request_header(":path", path);
            }
            match &edits.cookie {
                Some(Some(cookie)) => host::set_request_header("cookie", cookie),
                Some(None) => host::remove_request_header("cookie"),
                None => {}
            }
            if let Some(v) = verified.first() {
                if !v.facts.identity.is_empty() {
                    let _ = host::set_filter_state(contract::IDENTITY, &v.facts.identity);
                }
            }
            if let Some(all) = decide::identities_json(&verified) {
                let _ = host::set_filter_state(contract::IDENTITIES, &all);
            }
            metrics.allowed.inc();
            if cache_hits > 0 {
                metrics.cache_hit.add(u64::from(cache_hits));
            }
            if let Some(reason) = tolerated {
                metrics.tolerated.inc();
                host::log(
                    LogLevel::Debug,
                    &format!(
                        "palisade_jwt: allowed without a valid token ({})",
                        reason.name()
                    ),
                );
            }
            Outcome::Continue
        }
    }
}

fn run_decide(
    s: &mut Shared,
    config: &Config,
    request: &Request<'_>,
    verifier: Verifier,
    now_ms: i64,
) -> Decision {
    let lookup = Lookup {
        config: &s.config,
        remote: &s.remote,
        expired: s.expired,
        now_ms,
    };
    decide::decide(
        config,
        request,
        &lookup,
        &verifier,
        &mut s.cache,
        now_ms / 1000,
    )
}

fn deny(shared: &Rc<RefCell<Shared>>, refusal: &Refusal) -> Outcome {
    let (config, metrics) = match shared.try_borrow() {
        Ok(s) => (s.config.clone(), s.metrics),
        Err(_) => {
            // Closed default: without the state to describe the refusal,
            // still refuse.
            host::log(LogLevel::Error, "palisade_jwt: state busy, request refused");
            host::send_reply(503, &[("retry-after", "5")], b"");
            return Outcome::Wait;
        }
    };
    metrics.deny(refusal.reason);
    let provider = refusal
        .provider
        .and_then(|p| config.providers.get(p))
        .map_or("-", |p| p.name.as_str());
    let level = if refusal.reason == Reason::KeysUnavailable {
        LogLevel::Warn
    } else {
        LogLevel::Debug
    };
    host::log(
        level,
        &format!(
            "palisade_jwt: refused ({}, provider {provider})",
            refusal.reason.name()
        ),
    );
    let reply = challenge::reply(&config.realm, config.problem_body, refusal, request_id());
    let denial = Denial {
        filter: "jwt".into(),
        status: reply.status,
        reason: refusal.reason.name().into(),
    };
    if let Ok(json) = serde_json::to_vec(&denial) {
        let _ = host::set_filter_state(contract::DENIAL, &json);
    }
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    host::send_reply(reply.status, &headers, &reply.body);
    Outcome::Wait
}

/// Reads a remote provider's shared record; when another worker (or this
/// one) wrote a new one, takes its keys. Returns whether anything changed.
fn sync_record(r: &mut RemoteKeys, name: &str) -> bool {
    let (value, cas) = HostSharedData
        .get(&remote::record_key(name))
        .unwrap_or((None, None));
    if cas == r.cas && !(cas.is_none() && r.record.is_some()) {
        return false;
    }
    r.cas = cas;
    let record: Option<KeyRecord> = value
        .as_deref()
        .and_then(|v| serde_json::from_slice(v).ok());
    if let Some(rec) = &record {
        let new_text = rec.jwks.as_deref();
        let old_text = r.record.as_ref().and_then(|o| o.jwks.as_deref());
        if new_text.is_some() && (new_text != old_text || r.set.is_none()) {
            match new_text.map(|t| parse_jwks(t.as_bytes(), Symmetric::Refused)) {
                Some(Ok(set)) => {
                    for line in &set.skipped {
                        host::log(
                            LogLevel::Info,
                            &format!("palisade_jwt: provider `{name}`: key skipped: {line}"),
                        );
                    }
                    r.set = Some(Rc::new(set));
                }
                Some(Err(e)) => host::log(
                    LogLevel::Warn,
                    &format!("palisade_jwt: provider `{name}`: {e}"),
                ),
                None => {}
            }
        }
        r.fetched_at_ms = rec.fetched_at_ms;
    }
    r.record = record;
    true
}

struct JwtRoot {
    id: u32,
    shared: Option<Rc<RefCell<Shared>>>,
    /// Outstanding fetches: token -> (provider, is the discovery step).
    calls: HashMap<u32, (usize, bool)>,
}

impl Context for JwtRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some((p, discovery_step)) = self.calls.remove(&token) else {
            return;
        };
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let body = hostcalls::get_buffer(
            BufferType::HttpCallResponseBody,
            0,
            body_size.min(remote::MAX_DOCUMENT_BYTES + 1),
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let result = remote::check_response(status.as_deref(), body_size).and_then(|()| {
            if discovery_step {
                Err(String::new()) // handled below
            } else {
                parse_jwks(&body, Symmetric::Refused)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        });
        if discovery_step {
            let next = remote::check_response(status.as_deref(), body_size).and_then(|()| {
                let issuer = self.provider_issuer(p);
                remote::jwks_location(&body, &issuer)
            });
            match next {
                Ok((authority, path)) => {
                    if let Err(e) = self.dispatch(p, &authority, &path, false) {
                        self.fetch_failed(p, &e);
                    }
                }
                Err(e) => self.fetch_failed(p, &format!("discovery: {e}")),
            }
            return;
        }
        match result {
            Ok(()) => self.fetch_succeeded(p, String::from_utf8_lossy(&body).into_owned()),
            Err(e) => self.fetch_failed(p, &e),
        }
    }
}

impl JwtRoot {
    fn provider_issuer(&self, p: usize) -> String {
        self.shared
            .as_ref()
            .and_then(|s| {
                s.try_borrow()
                    .ok()
                    .and_then(|s| s.config.providers.get(p).map(|x| x.claims.issuer.clone()))
            })
            .unwrap_or_default()
    }

    fn spec(&self, p: usize) -> Option<(String, RemoteSpec)> {
        let shared = self.shared.as_ref()?.try_borrow().ok()?;
        let provider = shared.config.providers.get(p)?;
        match &provider.keys {
            KeySource::Remote(spec) => Some((provider.name.clone(), spec.clone())),
            KeySource::Inline(_) => None,
        }
    }

    fn dispatch(
        &mut self,
        p: usize,
        authority: &str,
        path: &str,
        discovery_step: bool,
    ) -> Result<(), String> {
        let (_, spec) = self.spec(p).ok_or("not a remote provider")?;
        let headers = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
            ("accept", "application/json"),
            ("user-agent", "palisade-jwt"),
        ];
        let token = hostcalls::dispatch_http_call(
            &spec.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(spec.timeout_ms),
        )
        .map_err(|s| format!("cannot call cluster `{}`: {s:?}", spec.cluster))?;
        self.calls.insert(token, (p, discovery_step));
        Ok(())
    }

    fn release_lease(&self, name: &str) {
        let _ = HostSharedData.set(&remote::lease_key(name), b"0", None);
    }

    fn fetch_succeeded(&mut self, p: usize, jwks: String) {
        let Some((name, _)) = self.spec(p) else {
            return;
        };
        let now_ms = host::now_unix_millis();
        let _ = HostSharedData.set(
            &remote::record_key(&name),
            &remote::record_success(jwks, now_ms),
            None,
        );
        self.release_lease(&name);
        if let Some(shared) = &self.shared {
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.metrics.fetch_ok.inc();
                if let Some(Some(r)) = s.remote.get_mut(p) {
                    r.fetching = false;
                }
            }
        }
        host::log(
            LogLevel::Info,
            &format!("palisade_jwt: provider `{name}`: keys fetched"),
        );
        self.sync_and_serve();
    }

    fn fetch_failed(&mut self, p: usize, error: &str) {
        let Some((name, _)) = self.spec(p) else {
            return;
        };
        let now_ms = host::now_unix_millis();
        let _ = store::update(&HostSharedData, &remote::record_key(&name), 5, |cur| {
            remote::record_failure(cur, now_ms, error)
        });
        self.release_lease(&name);
        if let Some(shared) = &self.shared {
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.metrics.fetch_failed.inc();
                if let Some(Some(r)) = s.remote.get_mut(p) {
                    r.fetching = false;
                }
            }
        }
        host::log(
            LogLevel::Warn,
            &format!("palisade_jwt: provider `{name}`: key fetch failed: {error}"),
        );
        self.sync_and_serve();
    }

    /// Reads every remote provider's shared record, starts due fetches, and
    /// decides again for the requests waiting for keys.
    fn sync_and_serve(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now_ms = host::now_unix_millis();
        let mut changed = false;
        let mut to_fetch = Vec::new();
        {
            let Ok(mut s) = shared.try_borrow_mut() else {
                return;
            };
            let config = s.config.clone();
            for (p, provider) in config.providers.iter().enumerate() {
                let KeySource::Remote(spec) = &provider.keys else {
                    continue;
                };
                let Some(Some(r)) = s.remote.get_mut(p) else {
                    continue;
                };
                if sync_record(r, &provider.name) {
                    changed = true;
                }
                if !r.fetching && remote::refresh_due(r.record.as_ref(), spec, now_ms, r.forced) {
                    let won = matches!(
                        store::update(
                            &HostSharedData,
                            &remote::lease_key(&provider.name),
                            3,
                            |cur| {
                                remote::take_lease(cur, now_ms, spec.timeout_ms as i64 * 2 + 1000)
                            }
                        ),
                        UpdateOutcome::Done { result: true, .. }
                    );
                    // Another worker may have finished a fetch (and freed the
                    // lease) between our read of the record and our lease:
                    // read again before fetching.
                    if won && sync_record(r, &provider.name) {
                        // New keys arrived: they also answer a forced refresh.
                        changed = true;
                        r.forced = false;
                    }
                    if won && !remote::refresh_due(r.record.as_ref(), spec, now_ms, r.forced) {
                        let _ = HostSharedData.set(&remote::lease_key(&provider.name), b"0", None);
                    } else if won {
                        r.fetching = true;
                        to_fetch.push((p, spec.clone()));
                    }
                }
                if r.forced && (r.fetching || changed) {
                    r.forced = false;
                }
            }
            if changed {
                s.cache.clear();
            }
        }
        for (p, spec) in to_fetch {
            if let Err(e) = self.dispatch(p, &spec.authority, &spec.path, spec.discovery) {
                self.fetch_failed(p, &e);
            }
        }
        self.serve_waiters(&shared, changed, now_ms);
    }

    fn serve_waiters(&self, shared: &Rc<RefCell<Shared>>, changed: bool, now_ms: i64) {
        let waiting: Vec<(u32, bool)> = match shared.try_borrow_mut() {
            Ok(mut s) => {
                let all = std::mem::take(&mut s.waiters);
                let (ready, keep): (Vec<Waiter>, Vec<Waiter>) = all
                    .into_iter()
                    .partition(|w| changed || now_ms >= w.deadline_ms);
                s.waiters = keep;
                ready
                    .into_iter()
                    .map(|w| (w.context_id, now_ms >= w.deadline_ms))
                    .collect()
            }
            Err(_) => return,
        };
        for (context_id, expired) in waiting {
            if hostcalls::set_effective_context(context_id).is_err() {
                continue; // the request is gone
            }
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.expired = expired;
            }
            // A request served again does not wait again: its keys came,
            // or failed, or its time is up.
            let outcome = handle_request(shared, context_id, false);
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.expired = false;
            }
            if let Outcome::Continue = outcome {
                let _ = hostcalls::resume_http_request();
            }
        }
        let _ = hostcalls::set_effective_context(self.id);
    }
}

impl RootContext for JwtRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match Config::from_json(&host::plugin_configuration()) {
            Ok(c) => Rc::new(c),
            Err(e) => {
                host::log(LogLevel::Error, &format!("palisade_jwt: {e}"));
                return false;
            }
        };
        for p in &config.providers {
            if let KeySource::Inline(set) = &p.keys {
                for line in &set.skipped {
                    host::log(
                        LogLevel::Warn,
                        &format!("palisade_jwt: provider `{}`: key skipped: {line}", p.name),
                    );
                }
            }
        }
        let verifier = match config.verifier {
            VerifierChoice::Portable => {
                host::log(LogLevel::Info, "palisade_jwt: signatures verified by the portable (pure-Rust) verifier, as configured");
                Verifier::Portable
            }
            VerifierChoice::Auto => match probe_host_verifier() {
                Ok(()) => {
                    host::log(LogLevel::Info, "palisade_jwt: RS*/ES* signatures verified by the host (verify_signature); PS*, EdDSA and HS* by the portable verifier");
                    Verifier::Host
                }
                Err(why) => {
                    host::log(LogLevel::Info, &format!("palisade_jwt: signatures verified by the portable (pure-Rust) verifier: host verify_signature unavailable ({why})"));
                    Verifier::Portable
                }
            },
        };
        let remote = config
            .providers
            .iter()
            .map(|p| matches!(p.keys, KeySource::Remote(_)).then(RemoteKeys::default))
            .collect();
        let any_remote = config
            .providers
            .iter()
            .any(|p| matches!(p.keys, KeySource::Remote(_)));
        self.shared = Some(Rc::new(RefCell::new(Shared {
            cache: TokenCache::new(config.cache_entries),
            config,
            remote,
            metrics: Metrics::define(),
            verifier,
            waiters: Vec::new(),
            expired: false,
        })));
        if any_remote {
            if let Err(status) = hostcalls::set_tick_period(TICK) {
                host::log(
                    LogLevel::Error,
                    &format!("palisade_jwt: cannot set the tick period: {status:?}"),
                );
                return false;
            }
        }
        true
    }

    fn on_tick(&mut self) {
        self.sync_and_serve();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(JwtFilter {
            context_id,
            shared: self.shared.clone()?,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct JwtFilter {
    context_id: u32,
    shared: Rc<RefCell<Shared>>,
}

// No `on_done`: a request that ends while waiting for keys stays in
// `waiters` until its deadline, when `set_effective_context` fails for it and
// it is dropped; not exporting the callback saves every request its call.
impl Context for JwtFilter {}

impl HttpContext for JwtFilter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        match handle_request(&self.shared, self.context_id, true) {
            Outcome::Continue => Action::Continue,
            Outcome::Wait => Action::Pause,
        }
    }
}
