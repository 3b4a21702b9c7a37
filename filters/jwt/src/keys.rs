//! Remote key sets as one worker holds them, kept in step with every other
//! worker through shared data.
//!
//! Each remote provider has a record in shared data (the JWKS text, when it
//! was fetched, the failures since): whichever worker fetches writes it, and
//! every worker takes new keys from it on its next tick. A lease in shared
//! data lets one worker fetch at a time. The decisions (when a refresh is
//! due, backoff, what a response means) are [`crate::remote`]'s; this module
//! applies them through the host.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use palisade_shared::engine::{Body, CallResponse, Host, HostStore};
use palisade_shared::store::{self, SharedStore, UpdateOutcome};

use crate::config::{Config, KeySource, RemoteSpec};
use crate::decide::{KeyLookup, KeyState};
use crate::jwk::{parse_jwks, KeySet, Symmetric};
use crate::remote::{self, KeyRecord};

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

/// What happened to a fetch, for metrics and logs.
pub enum FetchEvent {
    /// New keys were stored for the provider.
    Fetched(String),
    /// The fetch failed: the provider and why.
    Failed(String, String),
    /// A key set from the shared record was skipped or refused: a log line.
    Note(String),
}

/// Every remote provider's keys, the calls in flight, for one worker.
pub struct RemoteKeySets {
    remote: Vec<Option<RemoteKeys>>,
    /// Outstanding calls: token -> (provider, is the discovery step).
    calls: HashMap<u32, (usize, bool)>,
}

/// The keys of every provider at one moment, for [`crate::decide::decide`].
pub struct Lookup<'a> {
    config: &'a Config,
    keys: &'a RemoteKeySets,
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
            self.keys.remote.get(index).and_then(Option::as_ref),
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

impl RemoteKeySets {
    /// Nothing loaded yet for `config`'s remote providers.
    pub fn new(config: &Config) -> Self {
        RemoteKeySets {
            remote: config
                .providers
                .iter()
                .map(|p| matches!(p.keys, KeySource::Remote(_)).then(RemoteKeys::default))
                .collect(),
            calls: HashMap::new(),
        }
    }

    /// The keys as they are now. `expired`: the request waited its time, so
    /// keys still loading count as unavailable.
    pub fn lookup<'a>(&'a self, config: &'a Config, expired: bool, now_ms: i64) -> Lookup<'a> {
        Lookup {
            config,
            keys: self,
            expired,
            now_ms,
        }
    }

    /// Takes provider `p`'s shared record when another worker (or this one)
    /// wrote a new one. Returns whether anything changed.
    pub fn sync_provider(
        &mut self,
        p: usize,
        name: &str,
        host: &dyn Host,
        notes: &mut Vec<FetchEvent>,
    ) -> bool {
        match self.remote.get_mut(p) {
            Some(Some(r)) => sync_record(r, name, host, notes),
            _ => false,
        }
    }

    /// Asks for provider `p`'s keys to be fetched again at the next tick
    /// (an unknown `kid` may mean the provider rotated its keys).
    pub fn force_refresh(&mut self, p: usize) {
        if let Some(Some(r)) = self.remote.get_mut(p) {
            r.forced = true;
        }
    }

    /// Whether `token` is one of this stage's calls.
    pub fn owns_call(&self, token: u32) -> bool {
        self.calls.contains_key(&token)
    }

    /// Takes in every remote provider's shared record, and starts the
    /// fetches that are due (one worker at a time, by lease). Returns whether
    /// any provider's keys changed.
    pub fn sync_and_fetch(
        &mut self,
        config: &Config,
        host: &dyn Host,
        now_ms: i64,
        events: &mut Vec<FetchEvent>,
    ) -> bool {
        let store = HostStore(host);
        let mut changed = false;
        let mut to_fetch = Vec::new();
        for (p, provider) in config.providers.iter().enumerate() {
            let KeySource::Remote(spec) = &provider.keys else {
                continue;
            };
            let Some(Some(r)) = self.remote.get_mut(p) else {
                continue;
            };
            if sync_record(r, &provider.name, host, events) {
                changed = true;
            }
            if !r.fetching && remote::refresh_due(r.record.as_ref(), spec, now_ms, r.forced) {
                let hold_ms = i64::try_from(spec.timeout_ms)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(2)
                    .saturating_add(1000);
                let won = matches!(
                    store::update(&store, &remote::lease_key(&provider.name), 3, |cur| {
                        remote::take_lease(cur, now_ms, hold_ms)
                    }),
                    UpdateOutcome::Done { result: true, .. }
                );
                // Another worker may have finished a fetch (and freed the
                // lease) between our read of the record and our lease: read
                // again before fetching.
                if won && sync_record(r, &provider.name, host, events) {
                    // New keys arrived: they also answer a forced refresh.
                    changed = true;
                    r.forced = false;
                }
                if won && !remote::refresh_due(r.record.as_ref(), spec, now_ms, r.forced) {
                    let _ = store.set(&remote::lease_key(&provider.name), b"0", None);
                } else if won {
                    r.fetching = true;
                    to_fetch.push((p, spec.clone()));
                }
            }
            if r.forced && (r.fetching || changed) {
                r.forced = false;
            }
        }
        for (p, spec) in to_fetch {
            if let Err(e) =
                self.dispatch(p, &spec, &spec.authority, &spec.path, spec.discovery, host)
            {
                self.fetch_failed(config, p, &e, host, now_ms, events);
            }
        }
        changed
    }

    fn dispatch(
        &mut self,
        p: usize,
        spec: &RemoteSpec,
        authority: &str,
        path: &str,
        discovery_step: bool,
        host: &dyn Host,
    ) -> Result<(), String> {
        let headers = [
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
            ("accept", "application/json"),
            ("user-agent", "palisade-jwt"),
        ];
        let token = host
            .dispatch_http_call(
                &spec.cluster,
                &headers,
                None,
                Duration::from_millis(spec.timeout_ms),
            )
            .map_err(|s| format!("cannot call cluster `{}`: {s:?}", spec.cluster))?;
        self.calls.insert(token, (p, discovery_step));
        Ok(())
    }

    /// The response to one of this stage's calls: a discovery document
    /// (then the JWKS is fetched) or a JWKS (then the record is written).
    pub fn on_call_response(
        &mut self,
        config: &Config,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
        events: &mut Vec<FetchEvent>,
    ) {
        let Some((p, discovery_step)) = self.calls.remove(&token) else {
            return;
        };
        let body = host
            .body(
                Body::CallResponse,
                response.body_size.min(remote::MAX_DOCUMENT_BYTES + 1),
            )
            .unwrap_or_default();
        let body = body.as_slice();
        let now_ms = host.now_unix_ms();
        let Some(provider) = config.providers.get(p) else {
            return;
        };
        let KeySource::Remote(spec) = &provider.keys else {
            return;
        };
        let checked = remote::check_response(response.status.as_deref(), response.body_size);
        if discovery_step {
            match checked.and_then(|()| remote::jwks_location(body, &provider.claims.issuer)) {
                Ok((authority, path)) => {
                    if let Err(e) = self.dispatch(p, spec, &authority, &path, false, host) {
                        self.fetch_failed(config, p, &e, host, now_ms, events);
                    }
                }
                Err(e) => {
                    self.fetch_failed(config, p, &format!("discovery: {e}"), host, now_ms, events)
                }
            }
            return;
        }
        let parsed = checked.and_then(|()| {
            parse_jwks(body, Symmetric::Refused)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok(()) => {
                let store = HostStore(host);
                let jwks = String::from_utf8_lossy(body).into_owned();
                let _ = store.set(
                    &remote::record_key(&provider.name),
                    &remote::record_success(jwks, now_ms),
                    None,
                );
                let _ = store.set(&remote::lease_key(&provider.name), b"0", None);
                if let Some(Some(r)) = self.remote.get_mut(p) {
                    r.fetching = false;
                }
                events.push(FetchEvent::Fetched(provider.name.clone()));
            }
            Err(e) => self.fetch_failed(config, p, &e, host, now_ms, events),
        }
    }

    fn fetch_failed(
        &mut self,
        config: &Config,
        p: usize,
        error: &str,
        host: &dyn Host,
        now_ms: i64,
        events: &mut Vec<FetchEvent>,
    ) {
        let Some(provider) = config.providers.get(p) else {
            return;
        };
        let store = HostStore(host);
        let _ = store::update(&store, &remote::record_key(&provider.name), 5, |cur| {
            remote::record_failure(cur, now_ms, error)
        });
        let _ = store.set(&remote::lease_key(&provider.name), b"0", None);
        if let Some(Some(r)) = self.remote.get_mut(p) {
            r.fetching = false;
        }
        events.push(FetchEvent::Failed(provider.name.clone(), error.to_string()));
    }
}

/// Reads a remote provider's shared record; when another worker (or this
/// one) wrote a new one, takes its keys. Returns whether anything changed.
fn sync_record(
    r: &mut RemoteKeys,
    name: &str,
    host: &dyn Host,
    notes: &mut Vec<FetchEvent>,
) -> bool {
    let (value, cas) = HostStore(host)
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
                        notes.push(FetchEvent::Note(format!(
                            "provider `{name}`: key skipped: {line}"
                        )));
                    }
                    r.set = Some(Rc::new(set));
                }
                Some(Err(e)) => notes.push(FetchEvent::Note(format!("provider `{name}`: {e}"))),
                None => {}
            }
        }
        r.fetched_at_ms = rec.fetched_at_ms;
    }
    r.record = record;
    true
}
