//! The whole per-request decision: pick the rule, find and verify the
//! tokens its providers need, check scopes and claims, and say what to do.
//!
//! Everything comes in as arguments (request, keys, verifier, cache, time);
//! a [`Decision`] comes out. The adapter only gathers and applies.

use std::rc::Rc;

use palisade_shared::contract::Identity;
use palisade_shared::headers::first_value;
use palisade_shared::matcher::RequestView;
use serde_json::{Map, Value};

use crate::cache::{TokenCache, TokenFacts, MAX_AGE_S};
use crate::claims;
use crate::config::{ClaimCheck, Config, Provider, Requirement, Rule};
use crate::error::Reason;
use crate::jwk::KeySet;
use crate::jws;
use crate::sender::{self, SenderContext};
use crate::source::{self, TokenPlaces, TokenSource};
use crate::verify::{verify_jws, SignatureVerifier};

/// A provider's keys as the adapter has them now.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// Loaded.
    Ready(Rc<KeySet>),
    /// Being fetched for the first time (a request may wait).
    Loading,
    /// Could not be had (fetch failed and nothing usable is cached).
    Unavailable,
}

/// The keys of every provider, by index.
pub trait KeyLookup {
    /// The keys of provider `index`.
    fn keys(&self, index: usize) -> KeyState;
}

/// One verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Provider index.
    pub provider: usize,
    /// The claims, identity and claim headers.
    pub facts: Rc<TokenFacts>,
    /// Where the token was found (to remove it when not forwarded): an
    /// index into the provider's `sources`.
    pub source: usize,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// A refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// The provider concerned, when there is one.
    pub provider: Option<usize>,
    /// For `insufficient_scope`: the scopes the route needs, space separated.
    pub scope: Option<String>,
    /// Whether the refused token came with the `DPoP` scheme (the
    /// challenge answers in kind).
    pub dpop_scheme: bool,
    /// The rule's providers, for the challenge of a missing token.
    pub providers: Vec<usize>,
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let it through, with the verified tokens (empty when none was needed,
    /// or when a missing/failed token was allowed).
    Allow {
        /// Verified tokens, first the one whose identity is published.
        verified: Vec<Verified>,
        /// The reason a token was tolerated (`allow_missing*`), for metrics.
        tolerated: Option<Reason>,
        /// Cache hits among the verified tokens.
        cache_hits: u32,
    },
    /// Refuse it.
    Deny(Refusal),
    /// Wait until these providers' keys are loaded, then decide again.
    WaitForKeys(Vec<usize>),
}

/// The request, as the core sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method, host, path, route name.
    pub view: RequestView<'a>,
    /// All request headers, lower-case names.
    pub headers: &'a [(String, String)],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        first_value(self.headers, name)
    }

    fn is_cors_preflight(&self) -> bool {
        self.view.method == "OPTIONS"
            && self.header("origin").is_some()
            && self.header("access-control-request-method").is_some()
    }
}

/// The first rule matching the request.
pub fn rule_for<'c>(config: &'c Config, request: &Request<'_>) -> Option<&'c Rule> {
    config
        .rules
        .iter()
        .find(|r| r.matcher.matches(&request.view))
}

enum TokenOutcome {
    Missing,
    Verified(Verified),
    Failed(Reason, bool),
    NeedKeys,
}

/// Decides what to do with a request at time `now` (Unix seconds).
///
/// With `bypass_cors_preflight`, a CORS preflight is never refused or held
/// for want of a valid token: whatever would have refused it becomes an
/// allow without identity. A preflight that does carry a valid token is
/// handled like any other request. (So the adapter may read the preflight
/// headers only when the answer is not already an allow with a token.)
pub fn decide(
    config: &Config,
    request: &Request<'_>,
    keys: &dyn KeyLookup,
    verifier: &dyn SignatureVerifier,
    cache: &mut TokenCache,
    now: i64,
    senders: &mut dyn SenderContext,
) -> Decision {
    let decision = decide_by_rule(config, request, keys, verifier, cache, now, senders);
    if is_authenticated(&decision) || !(config.bypass_cors_preflight && request.is_cors_preflight())
    {
        return decision;
    }
    Decision::Allow {
        verified: vec![],
        tolerated: None,
        cache_hits: 0,
    }
}

/// Whether the decision lets the request through with a verified token:
/// the only answer the CORS preflight bypass leaves as it is.
pub fn is_authenticated(decision: &Decision) -> bool {
    matches!(decision, Decision::Allow { verified, .. } if !verified.is_empty())
}

fn decide_by_rule(
    config: &Config,
    request: &Request<'_>,
    keys: &dyn KeyLookup,
    verifier: &dyn SignatureVerifier,
    cache: &mut TokenCache,
    now: i64,
    senders: &mut dyn SenderContext,
) -> Decision {
    let allow_none = Decision::Allow {
        verified: vec![],
        tolerated: None,
        cache_hits: 0,
    };
    let Some(rule) = rule_for(config, request) else {
        return Decision::Deny(Refusal {
            reason: Reason::TokenMissing,
            provider: None,
            scope: None,
            dpop_scheme: false,
            providers: (0..config.providers.len()).collect(),
        });
    };
    let (providers, need_all) = match &rule.requirement {
        Requirement::None => return allow_none,
        Requirement::Any(p) => (p, false),
        Requirement::All(p) => (p, true),
    };
    let places = TokenPlaces {
        headers: request.headers,
        path: request.view.path,
    };
    // One pass, nothing collected: the usual rule names one provider.
    let mut waiting: Vec<usize> = Vec::new();
    let mut verified = Vec::new();
    let mut first_failure: Option<(usize, Reason, bool)> = None;
    let mut any_missing = false;
    for &index in providers {
        let provider = &config.providers[index];
        let outcome = match source::find(&provider.sources, &places) {
            None => TokenOutcome::Missing,
            Some((token, src)) => {
                // With several providers on one rule, a token issued by
                // another provider's issuer is that provider's business.
                if providers.len() > 1
                    && !need_all
                    && jws::peek_issuer(&token).is_some_and(|iss| iss != provider.claims.issuer)
                {
                    TokenOutcome::Failed(Reason::IssuerMismatch, src.is_dpop())
                } else {
                    let dpop_scheme = src.is_dpop();
                    let src = provider
                        .sources
                        .iter()
                        .position(|s| std::ptr::eq(s, src))
                        .unwrap_or(0);
                    let outcome = check_token(
                        config, provider, index, &token, src, keys, verifier, cache, now,
                    );
                    match outcome {
                        TokenOutcome::Verified(v) => match sender::check(
                            index,
                            provider,
                            &v.facts.claims,
                            &token,
                            dpop_scheme,
                            request,
                            verifier,
                            now,
                            senders,
                        ) {
                            Ok(()) => TokenOutcome::Verified(v),
                            Err(reason) => TokenOutcome::Failed(reason, dpop_scheme),
                        },
                        TokenOutcome::Failed(reason, _) => {
                            TokenOutcome::Failed(reason, dpop_scheme)
                        }
                        other => other,
                    }
                }
            }
        };
        match outcome {
            TokenOutcome::Verified(v) => verified.push(v),
            TokenOutcome::Missing => any_missing = true,
            TokenOutcome::Failed(reason, dpop_scheme) => {
                // Prefer the failure of the provider whose issuer the token
                // names over "issuer mismatch" of the others.
                let better = match first_failure {
                    None => true,
                    Some((_, Reason::IssuerMismatch, _)) => reason != Reason::IssuerMismatch,
                    Some(_) => false,
                };
                if better {
                    first_failure = Some((index, reason, dpop_scheme));
                }
            }
            TokenOutcome::NeedKeys => waiting.push(index),
        }
    }
    let satisfied = if need_all {
        verified.len() == providers.len()
    } else {
        !verified.is_empty()
    };
    if !satisfied && !waiting.is_empty() {
        return Decision::WaitForKeys(waiting);
    }
    if !satisfied {
        let failure = match first_failure {
            Some((p, reason, dpop_scheme)) => Refusal {
                reason,
                provider: Some(p),
                scope: None,
                dpop_scheme,
                providers: providers.clone(),
            },
            None => Refusal {
                reason: Reason::TokenMissing,
                provider: None,
                scope: None,
                dpop_scheme: false,
                providers: providers.clone(),
            },
        };
        let only_missing = failure.reason == Reason::TokenMissing;
        let tolerated = rule.allow_missing_or_failed
            || (rule.allow_missing && only_missing && !need_all)
            || (rule.allow_missing
                && need_all
                && verified.is_empty()
                && first_failure.is_none()
                && any_missing);
        if tolerated {
            return Decision::Allow {
                verified: vec![],
                tolerated: Some(failure.reason),
                cache_hits: 0,
            };
        }
        return Decision::Deny(failure);
    }
    if let Some(mut refusal) = check_authorization(rule, &verified) {
        refusal.providers = providers.clone();
        return Decision::Deny(refusal);
    }
    let cache_hits = verified.iter().filter(|v| v.cached).count() as u32;
    Decision::Allow {
        verified,
        tolerated: None,
        cache_hits,
    }
}

#[allow(clippy::too_many_arguments)]
fn check_token(
    config: &Config,
    provider: &Provider,
    index: usize,
    token: &str,
    src: usize,
    keys: &dyn KeyLookup,
    verifier: &dyn SignatureVerifier,
    cache: &mut TokenCache,
    now: i64,
) -> TokenOutcome {
    if token.len() > config.max_token_bytes {
        return TokenOutcome::Failed(Reason::TokenTooLarge, false);
    }
    // A hit stands for every check below: see `cache`.
    if let Some(facts) = cache.get(index, token, now) {
        return TokenOutcome::Verified(Verified {
            provider: index,
            facts,
            source: src,
            cached: true,
        });
    }
    let parsed = match jws::parse(token, config.max_token_bytes) {
        Ok(p) => p,
        Err(reason) => return TokenOutcome::Failed(reason, false),
    };
    let set = match keys.keys(index) {
        KeyState::Ready(set) => set,
        KeyState::Loading => return TokenOutcome::NeedKeys,
        KeyState::Unavailable => return TokenOutcome::Failed(Reason::KeysUnavailable, false),
    };
    if let Err(reason) = verify_jws(&parsed, &set, provider.algorithms.as_deref(), verifier) {
        return TokenOutcome::Failed(reason, false);
    }
    let map = match claims::parse_claims(&parsed.payload) {
        Ok(m) => m,
        Err(reason) => return TokenOutcome::Failed(reason, false),
    };
    if let Err(reason) = claims::check(&map, parsed.header.typ.as_deref(), &provider.claims, now) {
        return TokenOutcome::Failed(reason, false);
    }
    let until = match map.get("exp").and_then(Value::as_f64) {
        Some(exp) => (exp.floor() as i64).saturating_add(provider.claims.clock_skew_s),
        None => now.saturating_add(MAX_AGE_S),
    };
    let facts = Rc::new(facts_of(provider, map));
    cache.put(index, token, facts.clone(), now, until);
    TokenOutcome::Verified(Verified {
        provider: index,
        facts,
        source: src,
        cached: false,
    })
}

/// Everything derived from a verified token's claims, once.
pub fn facts_of(provider: &Provider, claims: Map<String, Value>) -> TokenFacts {
    let identity = claims::identity(&provider.name, &claims);
    let identity_json = serde_json::to_vec(&identity).unwrap_or_default();
    let mut headers = Vec::new();
    for (claim, header) in &provider.claim_headers {
        if let Some(value) = claims::lookup(&claims, claim) {
            let text = claims::header_value(value);
            // Header values cannot carry control characters.
            if !text.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                headers.push((header.clone(), text));
            }
        }
    }
    if let Some(header) = &provider.payload_header {
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        headers.push((header.clone(), jws::b64url_encode(&json)));
    }
    TokenFacts {
        claims,
        identity: Rc::new(identity),
        identity_json,
        headers,
    }
}

fn check_authorization(rule: &Rule, verified: &[Verified]) -> Option<Refusal> {
    let first = verified.first()?;
    if !rule.scopes_all.is_empty() || !rule.scopes_any.is_empty() {
        let have = claims::scopes(&first.facts.claims);
        let all_ok = rule.scopes_all.iter().all(|s| have.contains(s));
        let any_ok = rule.scopes_any.is_empty() || rule.scopes_any.iter().any(|s| have.contains(s));
        if !all_ok || !any_ok {
            let mut needed: Vec<&str> = rule.scopes_all.iter().map(String::as_str).collect();
            if !any_ok {
                needed.extend(rule.scopes_any.iter().map(String::as_str));
            }
            return Some(Refusal {
                reason: Reason::InsufficientScope,
                provider: Some(first.provider),
                scope: Some(needed.join(" ")),
                dpop_scheme: false,
                providers: Vec::new(),
            });
        }
    }
    for (path, check) in &rule.claims {
        let value = claims::lookup(&first.facts.claims, path);
        if !claim_ok(value, check) {
            return Some(Refusal {
                reason: Reason::ClaimMismatch,
                provider: Some(first.provider),
                scope: None,
                dpop_scheme: false,
                providers: Vec::new(),
            });
        }
    }
    None
}

fn claim_ok(value: Option<&Value>, check: &ClaimCheck) -> bool {
    let Some(value) = value else { return false };
    match check {
        ClaimCheck::Equals(want) => value == want,
        ClaimCheck::OneOf(list) => list.contains(value),
        ClaimCheck::Contains(want) => match (value, want) {
            (Value::Array(items), _) => items.contains(want),
            (Value::String(s), Value::String(w)) => s.split(' ').any(|part| part == w),
            _ => false,
        },
    }
}

/// The identity to publish for an allowed request, if a token was verified.
pub fn identity_of(verified: &[Verified]) -> Option<Rc<Identity>> {
    verified.first().map(|v| v.facts.identity.clone())
}

/// For a rule that required several tokens (`all`): every verified
/// identity, the JSON array published as `palisade.identities`, in the
/// rule's provider order; `None` when one token was verified.
pub fn identities_json(verified: &[Verified]) -> Option<Vec<u8>> {
    if verified.len() < 2 {
        return None;
    }
    let size: usize = verified
        .iter()
        .map(|v| v.facts.identity_json.len() + 1)
        .sum();
    let mut out = Vec::with_capacity(size + 1);
    out.push(b'[');
    for v in verified
        .iter()
        .filter(|v| !v.facts.identity_json.is_empty())
    {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(&v.facts.identity_json);
    }
    out.push(b']');
    Some(out)
}

/// How to change the request toward the upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamEdits<'a> {
    /// Headers to remove.
    pub remove: Vec<&'a str>,
    /// Headers to set, replacing every copy the client sent.
    pub set: Vec<(&'a str, &'a str)>,
    /// A new `:path` (a token taken out of the query).
    pub path: Option<String>,
    /// A new `Cookie` value (`Some(None)`: remove the header).
    pub cookie: Option<Option<String>>,
}

/// The edits for a decision: verified tokens set their claim headers
/// (replacing any client copy); every other managed header a client may
/// have sent is removed; tokens not forwarded are removed.
pub fn upstream_edits<'a>(
    config: &'a Config,
    request: &Request<'_>,
    verified: &'a [Verified],
) -> UpstreamEdits<'a> {
    let mut edits = UpstreamEdits::default();
    for v in verified {
        for (name, value) in &v.facts.headers {
            if !edits.set.iter().any(|(n, _)| n == name) {
                edits.set.push((name, value));
            }
        }
    }
    for name in &config.managed {
        if !edits.set.iter().any(|(n, _)| n == name) {
            edits.remove.push(name);
        }
    }
    let mut path = None::<String>;
    let mut cookie = None::<Option<String>>;
    for v in verified {
        let provider = &config.providers[v.provider];
        if provider.forward {
            continue;
        }
        match provider.sources.get(v.source) {
            Some(TokenSource::Header { name, .. })
                if !edits.remove.contains(&name.as_str())
                    && !edits.set.iter().any(|(n, _)| n == name) =>
            {
                edits.remove.push(name);
            }
            Some(TokenSource::Query(param)) => {
                let current = path.as_deref().unwrap_or(request.view.path);
                path = Some(source::path_without_param(current, param));
            }
            Some(TokenSource::Cookie(name)) => {
                let current = match &cookie {
                    Some(c) => c.clone(),
                    None => request.header("cookie").map(str::to_string),
                };
                cookie = Some(current.and_then(|c| source::cookie_without(&c, name)));
            }
            _ => {}
        }
    }
    edits.path = path.filter(|p| p != request.view.path);
    edits.cookie = cookie;
    edits
}

#[cfg(test)]
mod tests;
