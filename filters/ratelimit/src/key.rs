//! Client keys: which bucket of a rule a request spends from.
//!
//! A rule's key is a list of descriptors (the client address, a header, a
//! claim of the verified identity, the path, ...). Their values are hashed
//! into one 64-bit key hash with SipHash-1-3 under a [`HashKey`] drawn at
//! random once per Envoy process (see [`crate::hash_key`]): the hash picks
//! the slot set and is stored in the slot as its owner, so a client would
//! need a second preimage of a 64-bit keyed SipHash to spend from another
//! client's bucket, and nobody who does not know the key can choose keys
//! that land in a given set. Each value is framed by a tag and its length,
//! so `("ab", "c")` and `("a", "bc")` never collide by construction.
//!
//! Values are never logged: a key may be an API key or a user id.

use std::borrow::Cow;
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

pub use palisade_shared::contract::IdentityClaim;
use palisade_shared::contract::{Identity, McpDecision};
use palisade_shared::forwarded::{client_address, Fallback, TrustedProxies};
use palisade_shared::matcher::RequestView;
use siphasher::sip::SipHasher13;

/// The 128-bit SipHash key of the client-key hash. The default (all zero)
/// is for rules whose key never varies; the stage replaces it with the
/// process's random key when the configuration loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashKey {
    k0: u64,
    k1: u64,
}

impl HashKey {
    /// Length of [`HashKey::to_bytes`].
    pub const LEN: usize = 16;

    /// The key with these two halves.
    pub fn new(k0: u64, k1: u64) -> Self {
        HashKey { k0, k1 }
    }

    /// A key from the host's random source (WASI `random_get`, which Envoy
    /// serves from BoringSSL).
    pub fn random() -> Result<Self, String> {
        let mut bytes = [0u8; Self::LEN];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
        Ok(Self::from_bytes(&bytes).unwrap_or_default())
    }

    /// The key encoded as 16 bytes, little endian.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.k0.to_le_bytes());
        out[8..].copy_from_slice(&self.k1.to_le_bytes());
        out
    }

    /// The key encoded by [`HashKey::to_bytes`]; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let k0 = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let k1 = u64::from_le_bytes(bytes.get(8..)?.try_into().ok()?);
        Some(HashKey { k0, k1 })
    }

    fn hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// One part of a rule's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Descriptor {
    /// The client address (see [`ClientAddressSpec`]).
    ClientAddress,
    /// A request header (lower-case name).
    Header(String),
    /// A single-valued claim of the verified identity (`palisade.identity`
    /// filter state).
    Identity(IdentityClaim),
    /// The path without its query.
    Path,
    /// The method.
    Method,
    /// The host, lower case, without a port.
    Host,
    /// Envoy's route name.
    RouteName,
    /// A fixed value.
    Constant(String),
    /// A part of the MCP decision (`palisade.mcp`): the tool of a
    /// `tools/call`, say, so that each tool has its own bucket.
    Mcp(McpField),
}

/// The parts of the MCP decision a key can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpField {
    /// The JSON-RPC method.
    Method,
    /// The tool of a `tools/call`.
    Tool,
    /// The resource URI of a `resources/read`.
    Resource,
    /// The prompt of a `prompts/get`.
    Prompt,
}

impl McpField {
    /// The accepted names, for error messages.
    pub const NAMES: [&'static str; 4] = ["method", "tool", "resource", "prompt"];

    /// The field named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "method" => McpField::Method,
            "tool" => McpField::Tool,
            "resource" => McpField::Resource,
            "prompt" => McpField::Prompt,
            _ => return None,
        })
    }

    /// Its name in configurations.
    pub fn name(self) -> &'static str {
        match self {
            McpField::Method => "method",
            McpField::Tool => "tool",
            McpField::Resource => "resource",
            McpField::Prompt => "prompt",
        }
    }

    /// Its value in `mcp`, `None` when absent or empty.
    pub fn value<'a>(&self, mcp: &'a McpDecision) -> Option<&'a str> {
        let v = match self {
            McpField::Method => Some(mcp.method.as_str()),
            McpField::Tool => mcp.tool.as_deref(),
            McpField::Resource => mcp.resource.as_deref(),
            McpField::Prompt => mcp.prompt.as_deref(),
        };
        v.filter(|s| !s.is_empty())
    }
}

/// How the client address is found and grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddressSpec {
    /// Trusted proxies in front of Envoy and the header they write: the
    /// client is the hop this many entries from the right (0: the
    /// connection's peer). See [`palisade_shared::forwarded`].
    pub trusted: TrustedProxies,
    /// IPv4 addresses are grouped by this prefix length (32: one bucket per address).
    pub ipv4_prefix: u8,
    /// IPv6 addresses are grouped by this prefix length (64 puts a whole
    /// customer network, which one attacker usually has, in one bucket).
    pub ipv6_prefix: u8,
}

impl Default for ClientAddressSpec {
    fn default() -> Self {
        ClientAddressSpec {
            trusted: TrustedProxies::default(),
            ipv4_prefix: 32,
            ipv6_prefix: 128,
        }
    }
}

/// What the adapter read from a request: only what the rules need.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// `:method`.
    pub method: String,
    /// `:authority`.
    pub host: String,
    /// `:path`.
    pub path: String,
    /// `xds.route_name`.
    pub route_name: String,
    /// The connection's peer (`source.address`, `ip:port`).
    pub peer_address: Option<String>,
    /// The trusted proxies' header (`x-forwarded-for` or `forwarded`), read
    /// only when proxies are trusted.
    pub forwarded: Option<String>,
    /// The request headers the rules name, lower case, when present.
    pub headers: Vec<(String, String)>,
    /// The verified identity, when the JWT stage (or filter) verified one.
    pub identity: Option<Rc<Identity>>,
    /// The MCP decision, when the MCP stage (or filter) made one.
    pub mcp: Option<McpDecision>,
    /// Tokens the request takes from each rule's bucket instead of the
    /// rule's `cost` (at least 1, at most the bucket's capacity): for a
    /// stage that prices each request itself, such as the LLM stage's
    /// token reservation. `None`: the rule's `cost`.
    pub cost: Option<u64>,
}

impl RequestFacts {
    /// The view rules match on.
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: &self.host,
            path: &self.path,
            route_name: &self.route_name,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The client-address part of a request's key, resolved once per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientKey {
    /// The bytes to hash: the client IP masked to its group's prefix, or the
    /// raw peer text when the client has no IP (a Unix socket); `None`
    /// without a peer address.
    pub bytes: Option<Vec<u8>>,
    /// Set when the trusted hop was no address (`unknown`, an obfuscated
    /// identifier, garbage) or missing, and a nearer trusted hop or the peer
    /// was used instead: every client a proxy hides shares that proxy's
    /// bucket, and the adapter counts it.
    pub fallback: Option<Fallback>,
}

/// The client address of a request, grouped by prefix, as the bytes to hash.
pub fn client_key(spec: &ClientAddressSpec, facts: &RequestFacts) -> ClientKey {
    let peer = facts.peer_address.as_deref();
    match client_address(peer, facts.forwarded.as_deref(), &spec.trusted) {
        Some(client) => ClientKey {
            bytes: Some(masked(client.ip, spec)),
            fallback: client.fallback,
        },
        None => ClientKey {
            bytes: peer.map(|p| p.as_bytes().to_vec()),
            fallback: None,
        },
    }
}

/// `ip` is canonical: an IPv4 client seen through an IPv6 socket is an IPv4
/// client ([`palisade_shared::forwarded::ClientAddress::ip`]).
fn masked(ip: IpAddr, spec: &ClientAddressSpec) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & prefix_mask_u32(spec.ipv4_prefix);
            bits.to_be_bytes().to_vec()
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & prefix_mask_u128(spec.ipv6_prefix);
            bits.to_be_bytes().to_vec()
        }
    }
}

fn prefix_mask_u32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

fn prefix_mask_u128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p if p >= 128 => u128::MAX,
        p => u128::MAX << (128 - u32::from(p)),
    }
}

/// One descriptor's value in a request, with the tag that frames it in the
/// key hash; `None` when the value is absent (no such header, no verified
/// identity or no such claim, no peer address). `client` is the request's
/// [`client_key`]. Local rules hash these values ([`key_hash`]); global
/// rules send them to the rate-limit service ([`service_entries`]).
fn descriptor_value<'a>(
    d: &'a Descriptor,
    facts: &'a RequestFacts,
    client: &'a ClientKey,
) -> Option<(u8, Cow<'a, [u8]>)> {
    Some(match d {
        Descriptor::ClientAddress => (1, client.bytes.as_deref()?.into()),
        Descriptor::Header(name) => (2, facts.header(name)?.as_bytes().into()),
        Descriptor::Identity(claim) => {
            (3, claim.value(facts.identity.as_ref()?)?.as_bytes().into())
        }
        Descriptor::Path => {
            let path = facts.path.split('?').next().unwrap_or(&facts.path);
            (4, path.as_bytes().into())
        }
        Descriptor::Method => (5, facts.method.as_bytes().into()),
        Descriptor::Host => (6, facts.view().host_only().into_bytes().into()),
        Descriptor::RouteName => (7, facts.route_name.as_bytes().into()),
        Descriptor::Constant(c) => (8, c.as_bytes().into()),
        Descriptor::Mcp(field) => (9, field.value(facts.mcp.as_ref()?)?.as_bytes().into()),
    })
}

/// The key hash of a request for a rule, or `None` when a descriptor's value
/// is absent (no such header, no verified identity or no such claim, no peer
/// address). `client` is the request's [`client_key`].
pub fn key_hash(
    hash_key: &HashKey,
    descriptors: &[Descriptor],
    facts: &RequestFacts,
    client: &ClientKey,
) -> Option<u64> {
    let mut h = hash_key.hasher();
    for d in descriptors {
        let (tag, value) = descriptor_value(d, facts, client)?;
        h.write_u8(tag);
        h.write_usize(value.len());
        h.write(&value);
    }
    Some(h.finish())
}

/// How a global rule's descriptor entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFormat {
    /// The prefix lengths the client address is grouped by.
    pub client_address: ClientAddressSpec,
    /// Send `header` values as a hash (they may be credentials).
    pub hash_headers: bool,
}

/// The entry key a descriptor is sent under to the rate-limit service.
fn entry_key(d: &Descriptor) -> Cow<'static, str> {
    match d {
        Descriptor::ClientAddress => "client_address".into(),
        Descriptor::Header(name) => format!("header.{name}").into(),
        Descriptor::Identity(claim) => format!("identity.{}", claim.name()).into(),
        Descriptor::Path => "path".into(),
        Descriptor::Method => "method".into(),
        Descriptor::Host => "host".into(),
        Descriptor::RouteName => "route_name".into(),
        Descriptor::Constant(_) => "constant".into(),
        Descriptor::Mcp(field) => format!("mcp.{}", field.name()).into(),
    }
}

/// The entries of a global rule's `RateLimitDescriptor` for a request: the
/// rule's name under `rule`, then one entry per key descriptor, built from
/// the same values a local rule hashes. A value the request does not have is
/// sent empty, so every such request shares one counter of the service, as
/// `when_key_missing: shared_bucket` shares one bucket locally; `None` when
/// a value is absent and `skip` says the rule then does not apply.
pub fn service_entries(
    rule: &str,
    descriptors: &[Descriptor],
    facts: &RequestFacts,
    client: &ClientKey,
    format: &EntryFormat,
    skip: bool,
) -> Option<Vec<(Cow<'static, str>, String)>> {
    let mut entries = Vec::with_capacity(descriptors.len() + 1);
    entries.push((Cow::Borrowed("rule"), rule.to_string()));
    for d in descriptors {
        let value = match descriptor_value(d, facts, client) {
            None if skip => return None,
            None => String::new(),
            Some((_, bytes)) => match d {
                Descriptor::ClientAddress => client_text(&bytes, &format.client_address),
                Descriptor::Header(_) if format.hash_headers => value_digest(&bytes),
                _ => String::from_utf8_lossy(&bytes).into_owned(),
            },
        };
        entries.push((entry_key(d), value));
    }
    Some(entries)
}

/// The client-address bytes of [`client_key`] as text: the masked address,
/// with its prefix length when it stands for a network (`203.0.113.0/24`),
/// or the peer's text when the client had no IP address.
fn client_text(bytes: &[u8], spec: &ClientAddressSpec) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        let ip = Ipv4Addr::from(v4);
        return match spec.ipv4_prefix {
            32.. => ip.to_string(),
            p => format!("{ip}/{p}"),
        };
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        let ip = Ipv6Addr::from(v6);
        return match spec.ipv6_prefix {
            128.. => ip.to_string(),
            p => format!("{ip}/{p}"),
        };
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// A value as 32 hex digits of SipHash-1-3 with a 128-bit output and a
/// fixed key: the same on every proxy and in every build (the algorithm is
/// pinned by the `siphasher` crate, unlike std's `DefaultHasher`), and a
/// second value with the same digest takes about 2^128 work to find.
pub fn value_digest(value: &[u8]) -> String {
    use siphasher::sip128::{Hasher128, SipHasher13};
    let mut h = SipHasher13::new_with_keys(0x7061_6c69_7361_6465, 0x2e72_6174_656c_696d);
    h.write(value);
    format!("{:032x}", h.finish128().as_u128())
}

/// The key hash shared by every request of a rule whose key is missing
/// ([`crate::config::WhenKeyMissing::SharedBucket`]). No real key hashes to
/// it except by a 64-bit accident: real keys start with a descriptor tag.
pub fn missing_key_hash(hash_key: &HashKey) -> u64 {
    let mut h = hash_key.hasher();
    h.write_u8(0);
    h.write(b"palisade.ratelimit: key missing");
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_shared::forwarded::ForwardedHeader;

    fn facts() -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            host: "API.example.com:8443".into(),
            path: "/items?page=2".into(),
            route_name: "items".into(),
            peer_address: Some("10.0.0.9:5555".into()),
            forwarded: Some("203.0.113.7, 198.51.100.2".into()),
            headers: vec![("x-api-key".into(), "k1".into())],
            identity: Some(Rc::new(Identity {
                iss: "https://idp".into(),
                sub: Some("alice".into()),
                ..Identity::default()
            })),
            mcp: Some(McpDecision {
                method: "tools/call".into(),
                tool: Some("search".into()),
                decision: "allowed".into(),
                ..McpDecision::default()
            }),
            cost: None,
        }
    }

    #[test]
    fn each_mcp_tool_has_its_own_key() {
        let c = ClientAddressSpec::default();
        let per_tool = [Descriptor::Mcp(McpField::Tool)];
        let search = hash(&per_tool, &facts(), &c).unwrap();
        let mut deploy = facts();
        if let Some(m) = deploy.mcp.as_mut() {
            m.tool = Some("deploy".into());
        }
        assert_ne!(Some(search), hash(&per_tool, &deploy, &c));
        // The same text as a method or a constant is another key.
        assert_ne!(
            Some(search),
            hash(&[Descriptor::Constant("search".into())], &facts(), &c)
        );
        assert!(hash(&[Descriptor::Mcp(McpField::Method)], &facts(), &c).is_some());
        // No tool (a listing, or no MCP decision): no key.
        assert_eq!(
            hash(&[Descriptor::Mcp(McpField::Resource)], &facts(), &c),
            None
        );
        let mut none = facts();
        none.mcp = None;
        assert_eq!(hash(&per_tool, &none, &c), None);
    }

    fn hash(ds: &[Descriptor], f: &RequestFacts, c: &ClientAddressSpec) -> Option<u64> {
        key_hash(&HashKey::default(), ds, f, &client_key(c, f))
    }

    #[test]
    fn same_request_same_key_different_values_different_keys() {
        let c = ClientAddressSpec::default();
        let key = [Descriptor::Header("x-api-key".into())];
        let a = hash(&key, &facts(), &c).unwrap();
        assert_eq!(Some(a), hash(&key, &facts(), &c));
        let mut other = facts();
        other.headers[0].1 = "k2".into();
        assert_ne!(Some(a), hash(&key, &other, &c));
    }

    #[test]
    fn framing_prevents_concatenation_collisions() {
        let c = ClientAddressSpec::default();
        let f = facts();
        let ab_c = [
            Descriptor::Constant("ab".into()),
            Descriptor::Constant("c".into()),
        ];
        let a_bc = [
            Descriptor::Constant("a".into()),
            Descriptor::Constant("bc".into()),
        ];
        assert_ne!(hash(&ab_c, &f, &c), hash(&a_bc, &f, &c));
        // The same text from a header and from a constant is a different key.
        let header = [Descriptor::Header("x-api-key".into())];
        let constant = [Descriptor::Constant("k1".into())];
        assert_ne!(hash(&header, &f, &c), hash(&constant, &f, &c));
        assert_ne!(
            hash(&[], &f, &c),
            Some(missing_key_hash(&HashKey::default()))
        );
    }

    #[test]
    fn path_ignores_the_query_and_host_the_port_and_case() {
        let c = ClientAddressSpec::default();
        let mut other = facts();
        other.path = "/items?page=3".into();
        other.host = "api.example.com".into();
        for d in [Descriptor::Path, Descriptor::Host] {
            assert_eq!(
                hash(std::slice::from_ref(&d), &facts(), &c),
                hash(&[d], &other, &c)
            );
        }
        other.path = "/other".into();
        assert_ne!(
            hash(&[Descriptor::Path], &facts(), &c),
            hash(&[Descriptor::Path], &other, &c)
        );
    }

    #[test]
    fn missing_values_give_no_key() {
        let c = ClientAddressSpec::default();
        let mut f = facts();
        assert!(hash(&[Descriptor::Header("x-other".into())], &f, &c).is_none());
        assert!(hash(&[Descriptor::Identity(IdentityClaim::ClientId)], &f, &c).is_none());
        assert!(hash(&[Descriptor::Identity(IdentityClaim::Sub)], &f, &c).is_some());
        f.identity = None;
        assert!(hash(&[Descriptor::Identity(IdentityClaim::Sub)], &f, &c).is_none());
        f.peer_address = None;
        assert!(hash(&[Descriptor::ClientAddress], &f, &c).is_none());
    }

    #[test]
    fn client_address_uses_trusted_hops_and_prefixes() {
        let f = facts();
        let key = |spec: ClientAddressSpec, f: &RequestFacts| client_key(&spec, f).bytes.unwrap();
        let peer_only = ClientAddressSpec::default();
        assert_eq!(key(peer_only, &f), vec![10, 0, 0, 9]);
        let hops = |n: u32, header: ForwardedHeader| ClientAddressSpec {
            trusted: TrustedProxies { hops: n, header },
            ..peer_only
        };
        let one_hop = hops(1, ForwardedHeader::XForwardedFor);
        assert_eq!(key(one_hop, &f), vec![198, 51, 100, 2]);
        let two_hops = ClientAddressSpec {
            ipv4_prefix: 24,
            ..hops(2, ForwardedHeader::XForwardedFor)
        };
        assert_eq!(key(two_hops, &f), vec![203, 0, 113, 0]);

        // The same trust rule over RFC 7239 `Forwarded`.
        let mut fwd = f.clone();
        fwd.forwarded = Some(r#"for=203.0.113.7;proto=https, for="198.51.100.2:4711""#.into());
        assert_eq!(
            key(hops(1, ForwardedHeader::Forwarded), &fwd),
            vec![198, 51, 100, 2]
        );
        assert_eq!(
            key(hops(2, ForwardedHeader::Forwarded), &fwd),
            vec![203, 0, 113, 7]
        );

        // A port beside the address is not part of it.
        let mut with_port = f.clone();
        with_port.forwarded = Some("203.0.113.7, 198.51.100.2:4711".into());
        assert_eq!(key(one_hop, &with_port), vec![198, 51, 100, 2]);
        with_port.forwarded = Some("203.0.113.7, [2001:db8::5]:4711".into());
        assert_eq!(key(one_hop, &with_port), {
            let ip: IpAddr = "2001:db8::5".parse().unwrap();
            masked(ip, &one_hop)
        });

        let mut v6 = f.clone();
        v6.peer_address = Some("[2001:db8:1:2:aaaa::1]:443".into());
        let by_64 = ClientAddressSpec {
            ipv6_prefix: 64,
            ..peer_only
        };
        let mut neighbour = v6.clone();
        neighbour.peer_address = Some("[2001:db8:1:2:bbbb::9]:443".into());
        assert_eq!(key(by_64, &v6), key(by_64, &neighbour));
        assert_ne!(key(peer_only, &v6), key(peer_only, &neighbour));

        let mut mapped = f.clone();
        mapped.peer_address = Some("[::ffff:10.0.0.9]:80".into());
        assert_eq!(key(peer_only, &mapped), vec![10, 0, 0, 9]);

        let mut unix = f.clone();
        unix.peer_address = Some("/run/envoy.sock".into());
        assert_eq!(key(peer_only, &unix), b"/run/envoy.sock".to_vec());
    }

    /// A trusted proxy that writes `unknown` (or an obfuscated identifier)
    /// for its clients: they are not pooled into one global "unknown"
    /// bucket, nor keyed by text a client could vary. Each spends from the
    /// bucket of the proxy that hid it (the next trusted hop), and every such
    /// request reports the fallback, which the adapter counts
    /// (`palisade.ratelimit.client_address_fallback`).
    #[test]
    fn clients_a_proxy_hides_share_that_proxys_key_and_are_reported() {
        let spec = ClientAddressSpec {
            trusted: TrustedProxies {
                hops: 2,
                header: ForwardedHeader::XForwardedFor,
            },
            ..ClientAddressSpec::default()
        };
        let via = |xff: &str| RequestFacts {
            peer_address: Some("10.0.0.2:40000".into()),
            forwarded: Some(xff.into()),
            ..facts()
        };
        let hidden = ["unknown", "UNKNOWN", "_hidden", "_x1", "not-an-ip"];
        for entry in hidden {
            // Whatever the client put further left changes nothing.
            let k = client_key(&spec, &via(&format!("1.2.3.4, {entry}, 192.0.2.10")));
            assert_eq!(k.bytes, Some(vec![192, 0, 2, 10]), "{entry}");
            assert_eq!(k.fallback, Some(Fallback::NotAnAddress), "{entry}");
        }
        // Behind another edge proxy, the hidden clients have that proxy's key.
        let other = client_key(&spec, &via("unknown, 192.0.2.11"));
        assert_eq!(other.bytes, Some(vec![192, 0, 2, 11]));
        // A client the proxy names has its own key, and no fallback.
        let named = client_key(&spec, &via("198.51.100.7, 192.0.2.10"));
        assert_eq!(named.bytes, Some(vec![198, 51, 100, 7]));
        assert_eq!(named.fallback, None);
        // The nearest proxy hides the client too: the peer.
        let both = client_key(&spec, &via("unknown, unknown"));
        assert_eq!(both.bytes, Some(vec![10, 0, 0, 2]));
        assert_eq!(both.fallback, Some(Fallback::NotAnAddress));
    }

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_mask_u32(32), u32::MAX);
        assert_eq!(prefix_mask_u32(24), 0xffff_ff00);
        assert_eq!(prefix_mask_u32(1), 0x8000_0000);
        assert_eq!(prefix_mask_u128(64), u128::MAX << 64);
        assert_eq!(prefix_mask_u128(128), u128::MAX);
    }
}
