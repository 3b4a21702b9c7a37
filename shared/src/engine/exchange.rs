//! What a stage sees of one request: the [`Exchange`].
//!
//! The engine fills it once per request: the request headers are read when
//! the request starts (the whole map, or only the named headers the stages
//! declared), pseudo-headers are located once, Envoy attributes are read on
//! first use and kept, and the decisions of earlier stages are handed on in
//! memory, typed. A decision made by a module in another VM (a separate
//! Palisade module earlier in the chain) is read from its filter state on
//! first use, once.

use std::rc::Rc;

use crate::contract::{
    self, Denial, Identity, LlmDecision, McpDecision, MfaDecision, RateLimitDecision, TlsDecision,
    WafDecision,
};
use crate::matcher::RequestView;

use super::host::{HeaderMap, Host, LogLevel};

/// What an event may do with a header map by name. Envoy holds the request
/// map during the request-headers event (and while the request waits), the
/// response map during the response-headers event, and lets both be read
/// when the request ends; at other times a lookup or an edit by name is an
/// error the SDK would panic on. Reading a whole map never fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MapAccess {
    /// Neither read nor edited by name: answers come from what was read.
    #[default]
    None,
    /// Read by name.
    Read,
    /// Read and edited.
    Edit,
}

/// The request headers as read when the request started, with the edits
/// stages made since.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    headers: Vec<(String, String)>,
    whole: bool,
    pseudo: [Option<usize>; 4],
    access: MapAccess,
}

const METHOD: usize = 0;
const PATH: usize = 1;
const AUTHORITY: usize = 2;
const SCHEME: usize = 3;

impl RequestHead {
    /// A head holding exactly these headers; `whole` says whether they are
    /// the request's whole map.
    pub fn new(headers: Vec<(String, String)>, whole: bool) -> Self {
        let mut head = RequestHead {
            headers,
            whole,
            pseudo: [None; 4],
            access: MapAccess::None,
        };
        head.locate_pseudo_headers();
        head
    }

    /// Reads the whole map, or the named headers, from the host.
    pub fn read(host: &dyn Host, names: &[String], whole: bool) -> Self {
        if whole {
            return RequestHead::new(host.header_map(HeaderMap::Request), true);
        }
        let mut headers = Vec::with_capacity(names.len());
        for name in names {
            if let Some(value) = host.header(HeaderMap::Request, name) {
                headers.push((name.clone(), value));
            }
        }
        RequestHead::new(headers, false)
    }

    fn locate_pseudo_headers(&mut self) {
        self.pseudo = [None; 4];
        for (i, (name, _)) in self.headers.iter().enumerate() {
            let slot = match name.as_str() {
                ":method" => METHOD,
                ":path" => PATH,
                ":authority" => AUTHORITY,
                ":scheme" => SCHEME,
                _ => continue,
            };
            if self.pseudo[slot].is_none() {
                self.pseudo[slot] = Some(i);
            }
        }
    }

    fn pseudo(&self, slot: usize) -> &str {
        self.pseudo[slot]
            .and_then(|i| self.headers.get(i))
            .map_or("", |(_, v)| v.as_str())
    }

    /// Whether the whole request map was read (else only declared headers).
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// Every header read, in order (the whole map when [`Self::is_whole`]).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of a header (any case): one the stages declared, or
    /// any when the whole map was read.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::headers::first_value(&self.headers, name)
    }

    /// `:method`, empty when absent.
    pub fn method(&self) -> &str {
        self.pseudo(METHOD)
    }

    /// `:path` with its query, empty when absent.
    pub fn path(&self) -> &str {
        self.pseudo(PATH)
    }

    /// `:authority`, else `host`, empty when neither is there.
    pub fn authority(&self) -> &str {
        match self.pseudo(AUTHORITY) {
            "" => self.header("host").unwrap_or(""),
            a => a,
        }
    }

    /// `:scheme`, empty when absent.
    pub fn scheme(&self) -> &str {
        self.pseudo(SCHEME)
    }

    /// The view the request matchers use.
    pub fn view<'a>(&'a self, route_name: &'a str) -> RequestView<'a> {
        RequestView {
            method: self.method(),
            host: self.authority(),
            path: self.path(),
            route_name,
        }
    }

    /// Reads the whole map now, when only some headers were read at the
    /// start (a stage that found it needs more, such as a CORS preflight).
    pub fn read_whole(&mut self, host: &dyn Host) {
        if !self.whole {
            let access = self.access;
            *self = RequestHead::new(host.header_map(HeaderMap::Request), true);
            self.access = access;
        }
    }

    /// What this event may do with the map (set by the engine).
    pub(crate) fn set_access(&mut self, access: MapAccess) {
        self.access = access;
    }

    /// A header, asking the host when it was not read at the start and the
    /// host still holds the map. For rarely needed headers (the request id
    /// of a refusal).
    pub fn lookup(&self, host: &dyn Host, name: &str) -> Option<String> {
        match self.header(name) {
            Some(v) => Some(v.to_string()),
            None if self.whole || self.access == MapAccess::None => None,
            None => host.header(HeaderMap::Request, name),
        }
    }

    /// Envoy's `x-request-id`, for replies and logs.
    pub fn request_id(&self, host: &dyn Host) -> Option<String> {
        self.lookup(host, "x-request-id")
            .filter(|id| !id.is_empty())
    }

    fn editable(&self, host: &dyn Host, name: &str) -> bool {
        if self.access != MapAccess::Edit {
            host.log(
                LogLevel::Warn,
                &format!("palisade: request header `{name}` not edited: the headers have gone on"),
            );
        }
        self.access == MapAccess::Edit
    }

    /// Sets (replaces) a header toward the upstream.
    pub(crate) fn set(&mut self, host: &dyn Host, name: &str, value: &str) {
        if !self.editable(host, name) {
            return;
        }
        host.set_header(HeaderMap::Request, name, Some(value));
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self.locate_pseudo_headers();
    }

    /// Removes a header (all its values) toward the upstream. Knowing the
    /// whole map, a header the request does not have costs no host call.
    pub(crate) fn remove(&mut self, host: &dyn Host, name: &str) {
        if self.whole && self.header(name).is_none() || !self.editable(host, name) {
            return;
        }
        host.set_header(HeaderMap::Request, name, None);
        let before = self.headers.len();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if self.headers.len() != before {
            self.locate_pseudo_headers();
        }
    }
}

/// The response headers, read on first use.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    headers: Option<Vec<(String, String)>>,
    access: MapAccess,
}

impl ResponseHead {
    /// What this event may do with the map (set by the engine).
    pub(crate) fn set_access(&mut self, access: MapAccess) {
        self.access = access;
    }

    /// Every response header (read from the host once).
    pub fn headers(&mut self, host: &dyn Host) -> &[(String, String)] {
        self.headers
            .get_or_insert_with(|| host.header_map(HeaderMap::Response))
    }

    /// One response header: from the map when it was read, else by name
    /// while the host holds the map.
    pub fn header(&self, host: &dyn Host, name: &str) -> Option<String> {
        match &self.headers {
            Some(all) => crate::headers::first_value(all, name).map(str::to_string),
            None if self.access == MapAccess::None => None,
            None => host.header(HeaderMap::Response, name),
        }
    }

    /// Removes a header (all its values) toward the client, such as the
    /// `content-length` of a body a stage will rewrite (only while the
    /// response headers are being answered).
    pub fn remove(&mut self, host: &dyn Host, name: &str) {
        if !self.editable(host, name) {
            return;
        }
        host.set_header(HeaderMap::Response, name, None);
        if let Some(all) = &mut self.headers {
            all.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
    }

    fn editable(&self, host: &dyn Host, name: &str) -> bool {
        if self.access != MapAccess::Edit {
            host.log(
                LogLevel::Warn,
                &format!("palisade: response header `{name}` not edited: the headers have gone on"),
            );
        }
        self.access == MapAccess::Edit
    }

    /// Adds a header toward the client (only while the response headers
    /// are being answered).
    pub fn add(&mut self, host: &dyn Host, name: &str, value: &str) {
        if !self.editable(host, name) {
            return;
        }
        host.add_header(HeaderMap::Response, name, value);
        if let Some(all) = &mut self.headers {
            all.push((name.to_string(), value.to_string()));
        }
    }

    /// Sets (replaces) a header toward the client (only while the response
    /// headers are being answered).
    pub fn set(&mut self, host: &dyn Host, name: &str, value: &str) {
        if !self.editable(host, name) {
            return;
        }
        host.set_header(HeaderMap::Response, name, Some(value));
        if let Some(all) = &mut self.headers {
            all.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            all.push((name.to_string(), value.to_string()));
        }
    }
}

/// The Envoy attributes stages read. Each costs a host call that returns
/// data (docs/performance.md), so each is read at most once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// `xds.route_name`.
    RouteName,
    /// `xds.cluster_name`: the upstream cluster.
    ClusterName,
    /// `source.address`: the downstream peer, `ip:port`.
    SourceAddress,
    /// `destination.address`: the local address the request came in on.
    DestinationAddress,
    /// `upstream.address`.
    UpstreamAddress,
    /// `request.protocol`: `HTTP/1.1`, `HTTP/2`, ...
    RequestProtocol,
    /// `request.total_size`: bytes received (integer).
    RequestTotalSize,
    /// `response.total_size`: bytes sent (integer).
    ResponseTotalSize,
    /// `response.code_details`.
    ResponseCodeDetails,
    /// `connection.tls_version`, on TLS connections.
    TlsVersion,
    /// `connection.mtls`: whether the peer presented a certificate (bool).
    Mtls,
    /// `connection.subject_peer_certificate`.
    PeerSubject,
    /// `connection.sha256_peer_certificate_digest`.
    PeerSha256,
    /// `connection.requested_server_name`: the SNI.
    RequestedServerName,
    /// `connection.peer_certificate`: the client certificate, PEM (every
    /// SAN and the issuer are only in it: `connection.uri_san_peer_certificate`
    /// and `dns_san_peer_certificate` give the first SAN alone).
    PeerCertificate,
    /// `filter_state["palisade.tls_cipher"]`: Envoy has no cipher attribute;
    /// its `set_filter_state` HTTP filter writes `%DOWNSTREAM_TLS_CIPHER%`
    /// there (`envoy/tls.yaml`). Filter state, so no client can set it.
    TlsCipher,
}

impl Attribute {
    const COUNT: usize = 16;

    /// The attribute's property path.
    pub fn path(self) -> &'static [&'static str] {
        match self {
            Attribute::RouteName => &["xds", "route_name"],
            Attribute::ClusterName => &["xds", "cluster_name"],
            Attribute::SourceAddress => &["source", "address"],
            Attribute::DestinationAddress => &["destination", "address"],
            Attribute::UpstreamAddress => &["upstream", "address"],
            Attribute::RequestProtocol => &["request", "protocol"],
            Attribute::RequestTotalSize => &["request", "total_size"],
            Attribute::ResponseTotalSize => &["response", "total_size"],
            Attribute::ResponseCodeDetails => &["response", "code_details"],
            Attribute::TlsVersion => &["connection", "tls_version"],
            Attribute::Mtls => &["connection", "mtls"],
            Attribute::PeerSubject => &["connection", "subject_peer_certificate"],
            Attribute::PeerSha256 => &["connection", "sha256_peer_certificate_digest"],
            Attribute::RequestedServerName => &["connection", "requested_server_name"],
            Attribute::PeerCertificate => &["connection", "peer_certificate"],
            Attribute::TlsCipher => &["filter_state", "palisade.tls_cipher"],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The attributes read so far for one request.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    values: [Option<Option<Vec<u8>>>; Attribute::COUNT],
}

impl Attributes {
    /// The attribute's raw bytes, `None` when absent or unavailable.
    pub fn bytes(&mut self, host: &dyn Host, attribute: Attribute) -> Option<&[u8]> {
        let slot = self.values.get_mut(attribute.index())?;
        slot.get_or_insert_with(|| host.property(attribute.path()))
            .as_deref()
    }

    /// The attribute as text, `None` when absent, empty or not UTF-8.
    pub fn string(&mut self, host: &dyn Host, attribute: Attribute) -> Option<&str> {
        self.bytes(host, attribute)
            .and_then(|b| std::str::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
    }

    /// An integer attribute (8 little-endian bytes, as Envoy encodes them).
    pub fn integer(&mut self, host: &dyn Host, attribute: Attribute) -> Option<i64> {
        let bytes = self.bytes(host, attribute)?;
        let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(i64::from_le_bytes(array))
    }

    /// A boolean attribute (one byte).
    pub fn flag(&mut self, host: &dyn Host, attribute: Attribute) -> bool {
        self.bytes(host, attribute)
            .and_then(|b| b.first().copied())
            .is_some_and(|b| b != 0)
    }

    /// The route name, empty when there is none.
    pub fn route_name(&mut self, host: &dyn Host) -> &str {
        self.string(host, Attribute::RouteName).unwrap_or("")
    }

    /// Forgets the route and cluster read so far: a request-header edit
    /// makes Envoy pick the route again.
    pub(crate) fn forget_route(&mut self) {
        for attribute in [Attribute::RouteName, Attribute::ClusterName] {
            if let Some(slot) = self.values.get_mut(attribute.index()) {
                *slot = None;
            }
        }
    }
}

/// The kinds of decision stages hand on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// `palisade.identity`.
    Identity,
    /// `palisade.mfa`.
    Mfa,
    /// `palisade.ratelimit`.
    RateLimit,
    /// `palisade.waf`.
    Waf,
    /// `palisade.denial`.
    Denial,
    /// `palisade.mcp`.
    Mcp,
    /// `palisade.llm`.
    Llm,
    /// `palisade.tls`.
    Tls,
}

/// A set of [`DecisionKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionSet(u8);

impl DecisionSet {
    /// No decision.
    pub const NONE: DecisionSet = DecisionSet(0);

    /// The set with these kinds.
    pub fn of(kinds: &[DecisionKind]) -> Self {
        kinds.iter().fold(DecisionSet::NONE, |s, k| s.with(*k))
    }

    /// This set and `kind`.
    pub const fn with(self, kind: DecisionKind) -> Self {
        DecisionSet(self.0 | 1 << kind as u8)
    }

    /// Both sets.
    pub const fn union(self, other: DecisionSet) -> Self {
        DecisionSet(self.0 | other.0)
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: DecisionKind) -> bool {
        self.0 & 1 << kind as u8 != 0
    }

    /// How many kinds the set holds.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One decision: made in this VM (or known not to be made), or still to be
/// read from filter state.
#[derive(Debug, Clone)]
enum Decided<T> {
    Unread,
    Known(Option<T>),
}

impl<T> Decided<T> {
    fn new(in_memory: bool) -> Self {
        if in_memory {
            Decided::Known(None)
        } else {
            Decided::Unread
        }
    }
}

/// The decisions of the stages so far, typed.
#[derive(Debug, Clone)]
pub struct Decisions {
    identity: Decided<Rc<Identity>>,
    mfa: Decided<MfaDecision>,
    ratelimit: Decided<RateLimitDecision>,
    waf: Decided<WafDecision>,
    denial: Decided<Denial>,
    mcp: Decided<McpDecision>,
    llm: Decided<LlmDecision>,
    tls: Decided<TlsDecision>,
    unreadable: DecisionSet,
}

impl Default for Decisions {
    fn default() -> Self {
        Decisions::new(DecisionSet::NONE)
    }
}

fn load<T: serde::de::DeserializeOwned>(
    host: &dyn Host,
    name: &str,
    kind: DecisionKind,
    unreadable: &mut DecisionSet,
) -> Option<T> {
    let bytes = host.property(&[name]).filter(|b| !b.is_empty())?;
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            *unreadable = unreadable.with(kind);
            host.log(
                LogLevel::Warn,
                &format!("palisade: unreadable filter state {name}: {e}"),
            );
            None
        }
    }
}

macro_rules! decision_accessors {
    ($($field:ident, $setter:ident, $ty:ty, $kind:expr, $name:expr, $doc:literal;)*) => {
        $(
            #[doc = concat!("The ", $doc, ": from this VM's stages, else read once from filter state.")]
            pub fn $field(&mut self, host: &dyn Host) -> Option<&$ty> {
                if let Decided::Unread = self.$field {
                    self.$field = Decided::Known(load(host, $name, $kind, &mut self.unreadable));
                }
                match &self.$field {
                    Decided::Known(value) => value.as_ref(),
                    Decided::Unread => None,
                }
            }

            #[doc = concat!("Records the ", $doc, " for the stages after this one.")]
            pub fn $setter(&mut self, value: $ty) {
                self.$field = Decided::Known(Some(value));
            }
        )*
    };
}

impl Decisions {
    /// Decisions for a request, with the kinds `in_memory` made by stages of
    /// this VM (so never read from filter state).
    pub fn new(in_memory: DecisionSet) -> Self {
        Decisions {
            identity: Decided::new(in_memory.contains(DecisionKind::Identity)),
            mfa: Decided::new(in_memory.contains(DecisionKind::Mfa)),
            ratelimit: Decided::new(in_memory.contains(DecisionKind::RateLimit)),
            waf: Decided::new(in_memory.contains(DecisionKind::Waf)),
            // A refusal is looked for in filter state when none was made in
            // this VM: a Palisade module beside it may have refused first
            // (it feeds only the audit record, never a decision).
            denial: Decided::Unread,
            mcp: Decided::new(in_memory.contains(DecisionKind::Mcp)),
            llm: Decided::new(in_memory.contains(DecisionKind::Llm)),
            tls: Decided::new(in_memory.contains(DecisionKind::Tls)),
            unreadable: DecisionSet::NONE,
        }
    }

    decision_accessors! {
        identity, set_identity, Rc<Identity>, DecisionKind::Identity, contract::IDENTITY, "verified identity";
        mfa, set_mfa, MfaDecision, DecisionKind::Mfa, contract::MFA, "MFA step-up decision";
        ratelimit, set_ratelimit, RateLimitDecision, DecisionKind::RateLimit, contract::RATELIMIT, "rate-limit decision";
        waf, set_waf, WafDecision, DecisionKind::Waf, contract::WAF, "WAF decision";
        denial, set_denial, Denial, DecisionKind::Denial, contract::DENIAL, "refusal";
        mcp, set_mcp, McpDecision, DecisionKind::Mcp, contract::MCP, "MCP decision";
        llm, set_llm, LlmDecision, DecisionKind::Llm, contract::LLM, "LLM gateway decision";
        tls, set_tls, TlsDecision, DecisionKind::Tls, contract::TLS, "transport decision";
    }

    /// The decisions whose filter state was there but could not be read (a
    /// producer that wrote something else than the contract): a stage that
    /// depends on one cannot decide, and refuses.
    pub fn unreadable(&self) -> DecisionSet {
        self.unreadable
    }
}

/// Publishes a decision as filter state (`wasm.<name>` in Envoy): for the
/// access log and for modules in other VMs. A failure is logged, never
/// fatal to the request.
pub fn publish(host: &dyn Host, stage: &str, name: &str, value: &[u8]) {
    if let Err(status) = host.set_property(name, value) {
        super::host::log(
            host,
            stage,
            LogLevel::Warn,
            &format!("cannot publish {name}: {status:?}"),
        );
    }
}

/// Serializes a contract value and publishes it (see [`publish`]).
pub fn publish_json<T: serde::Serialize>(host: &dyn Host, stage: &str, name: &str, value: &T) {
    match serde_json::to_vec(value) {
        Ok(json) => publish(host, stage, name, &json),
        Err(e) => super::host::log(
            host,
            stage,
            LogLevel::Warn,
            &format!("cannot serialize {name}: {e}"),
        ),
    }
}

/// What a stage sees of a request, and how it acts on it. The fields are
/// separate so a stage can hold the request head while it calls the host.
pub struct Exchange<'a> {
    /// The proxy.
    pub host: &'a dyn Host,
    /// The request headers.
    pub request: &'a mut RequestHead,
    /// The response headers (from the response-headers event on).
    pub response: &'a mut ResponseHead,
    /// Envoy attributes, read on first use.
    pub attributes: &'a mut Attributes,
    /// The decisions of the stages so far.
    pub decisions: &'a mut Decisions,
    /// Whether the request headers ended the request (no body follows).
    pub end_of_stream: bool,
    /// The host clock, read at most once per event for every stage.
    pub(super) now_ms: std::cell::Cell<Option<i64>>,
}

impl Exchange<'_> {
    /// Sets (replaces) a request header toward the upstream. Envoy then picks
    /// the route again, so the route read so far is forgotten.
    pub fn set_request_header(&mut self, name: &str, value: &str) {
        self.request.set(self.host, name, value);
        self.attributes.forget_route();
    }

    /// Removes a request header toward the upstream (see
    /// [`Exchange::set_request_header`]).
    pub fn remove_request_header(&mut self, name: &str) {
        self.request.remove(self.host, name);
        self.attributes.forget_route();
    }

    /// The host's wall clock (ms since the epoch), read once per event: the
    /// stages of one event see the same time, for one host call.
    pub fn now_ms(&self) -> i64 {
        match self.now_ms.get() {
            Some(now) => now,
            None => {
                let now = self.host.now_unix_ms();
                self.now_ms.set(Some(now));
                now
            }
        }
    }

    /// The request's view for the matchers; reads the route name only
    /// when `with_route_name` (it costs a host call).
    pub fn view(&mut self, with_route_name: bool) -> RequestView<'_> {
        let route_name = if with_route_name {
            self.attributes.route_name(self.host)
        } else {
            ""
        };
        self.request.view(route_name)
    }
}
