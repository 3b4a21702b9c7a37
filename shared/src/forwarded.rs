//! The client address behind trusted proxies.
//!
//! Envoy's own rule (`xff_num_trusted_hops`): with `N` trusted proxies in front
//! of Envoy, each of which appended the address it saw, the client is the
//! `N`th hop from the right of the forwarding header. Anything further left
//! was written by the client and proves nothing. With `N = 0`, or when the
//! header has fewer than `N` hops, the client is the peer of the connection.
//!
//! The header is `X-Forwarded-For` or the standard `Forwarded` (RFC 7239), as
//! configured; the trust rule is the same for both. Each hop is parsed as real
//! proxies write it: an IPv4 or IPv6 address, bracketed IPv6 with or without a
//! port, IPv4 with a port (the port is kept apart, never in the address), and
//! the placeholders that are no address at all: `unknown` and RFC 7239
//! obfuscated identifiers (`_hidden`). When the trusted hop is no address, the
//! client is the nearest address the trusted proxies do vouch for: the next hop
//! to the right (the proxy that could not name its client), else the peer; the
//! result says so ([`ClientAddress::fallback`]) so callers count it. A value
//! that is not an IP never becomes the client address.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// The header trusted proxies write the client address into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: 203.0.113.7, 198.51.100.2`.
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=203.0.113.7;proto=https, for="[2001:db8::1]:4711"` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case.
    pub fn name(&self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// Which proxies are trusted, and through which header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Trusted proxies in front of Envoy (0: the client is the connection's peer).
    pub hops: u32,
    /// The header they append to.
    pub header: ForwardedHeader,
}

/// One hop of a forwarding header, as its proxy wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// An address, with the port when the proxy wrote one.
    Address {
        /// The IP (an IPv4-mapped IPv6 address is given as IPv4).
        ip: IpAddr,
        /// The port, when written.
        port: Option<u16>,
    },
    /// `unknown`: the proxy does not know or does not tell.
    Unknown,
    /// An RFC 7239 obfuscated identifier such as `_hidden`.
    Obfuscated,
    /// Anything else: no address (a host name, a zone-scoped address, garbage),
    /// or a `Forwarded` element without `for`.
    Invalid,
}

impl Node {
    /// The address, when the hop is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Node::Address { ip, .. } => Some(*ip),
            _ => None,
        }
    }
}

/// One hop: the text as written (trimmed; for `Forwarded`, the unquoted
/// `for` value) and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The raw text.
    pub text: String,
    /// Its meaning.
    pub node: Node,
}

/// Why the client address is not the trusted hop itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The trusted hop is `unknown`, obfuscated or no address.
    NotAnAddress,
    /// The header is missing or has fewer hops than there are trusted proxies
    /// (a request that did not come through all of them).
    TooFewHops,
    /// A `Forwarded` header that does not follow RFC 7239's syntax: no hop in
    /// it can be counted on.
    Malformed,
}

impl Fallback {
    /// A short name for logs and records.
    pub fn as_str(&self) -> &'static str {
        match self {
            Fallback::NotAnAddress => "not_an_address",
            Fallback::TooFewHops => "too_few_hops",
            Fallback::Malformed => "malformed_header",
        }
    }
}

/// Where the client address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// The connection's peer.
    Peer,
    /// A hop of the forwarding header.
    Header,
}

/// The client address of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client's IP (an IPv4-mapped IPv6 address is given as IPv4).
    pub ip: IpAddr,
    /// The client's port, when known: the peer's, or the one the trusted
    /// proxy wrote beside the address.
    pub port: Option<u16>,
    /// Where it comes from.
    pub source: AddressSource,
    /// Set when the trusted hop could not be used and a nearer one (or the
    /// peer) was taken instead.
    pub fallback: Option<Fallback>,
    /// For an address from the header: how many hops lie to its right (the
    /// trusted proxies between the client and the peer that wrote them).
    pub hops_to_the_right: usize,
}

/// An `ip:port`, `[v6]:port` or bare IP, such as Envoy's `source.address`.
pub fn parse_socket_address(address: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(sa) = address.parse::<SocketAddr>() {
        return Some((sa.ip().to_canonical(), Some(sa.port())));
    }
    address
        .parse::<IpAddr>()
        .ok()
        .map(|ip| (ip.to_canonical(), None))
}

/// The connection's peer as Envoy's `source.address` gives it: `ip:port`, or
/// an address Envoy's connection manager took from `X-Forwarded-For` (with
/// `use_remote_address: false` or `xff_num_trusted_hops`), whose port it
/// writes as 0: no port is known then.
pub fn parse_peer_address(address: &str) -> Option<(IpAddr, Option<u16>)> {
    parse_socket_address(address).map(|(ip, port)| (ip, port.filter(|p| *p != 0)))
}

/// One `X-Forwarded-For` entry (trimmed).
pub fn parse_xff_entry(entry: &str) -> Node {
    if entry.eq_ignore_ascii_case("unknown") {
        return Node::Unknown;
    }
    if entry.starts_with('_') {
        return Node::Obfuscated;
    }
    // `2001:db8::1`, `203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::1]:4711`.
    if let Some((ip, port)) = parse_socket_address(entry) {
        return Node::Address { ip, port };
    }
    // `[2001:db8::1]` without a port.
    if let Some(inner) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
        if let Ok(ip) = inner.parse::<std::net::Ipv6Addr>() {
            return Node::Address {
                ip: IpAddr::V6(ip).to_canonical(),
                port: None,
            };
        }
    }
    Node::Invalid
}

/// An RFC 7239 `node` (the value of `for=`, unquoted):
/// `IPv4 [":" port] / "[" IPv6 "]" [":" port] / "unknown" / obfnode`, where a
/// port may itself be obfuscated (`_abc`), which leaves the address without one.
pub fn parse_forwarded_node(value: &str) -> Node {
    let (name, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, tail)) => match tail {
                "" => (v6, None),
                _ => match tail.strip_prefix(':') {
                    Some(p) => (v6, Some(p)),
                    None => return Node::Invalid,
                },
            },
            None => return Node::Invalid,
        },
        None => match value.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (value, None),
        },
    };
    let port = match port {
        None => None,
        Some(p) if is_obfuscated(p) => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(port) => Some(port),
                Err(_) => return Node::Invalid,
            }
        }
        Some(_) => return Node::Invalid,
    };
    if value.starts_with('[') {
        return match name.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Node::Address {
                ip: IpAddr::V6(ip).to_canonical(),
                port,
            },
            Err(_) => Node::Invalid,
        };
    }
    if name.eq_ignore_ascii_case("unknown") {
        return Node::Unknown;
    }
    if is_obfuscated(name) {
        return Node::Obfuscated;
    }
    match name.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => Node::Address {
            ip: IpAddr::V4(ip),
            port,
        },
        Err(_) => Node::Invalid,
    }
}

fn is_obfuscated(s: &str) -> bool {
    s.len() > 1
        && s.starts_with('_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The hops of `X-Forwarded-For`, left to right; empty entries are dropped.
pub fn xff_hops(value: &str) -> Vec<Hop> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| Hop {
            text: e.to_string(),
            node: parse_xff_entry(e),
        })
        .collect()
}

/// The hops of `Forwarded`, left to right: one per element, from its `for`
/// parameter. `None` when the header does not follow RFC 7239's syntax (an
/// unterminated quoted string, a pair without `=`, a repeated parameter):
/// then no hop of it can be counted on.
pub fn forwarded_hops(value: &str) -> Option<Vec<Hop>> {
    let mut hops = Vec::new();
    let mut rest = value;
    loop {
        let mut for_value: Option<String> = None;
        let mut seen: Vec<String> = Vec::new();
        // One element: pairs separated by `;`, ended by `,` or the end.
        let element_end = loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if rest.is_empty() || rest.starts_with(',') || rest.starts_with(';') {
                // An empty pair (`;;`) or an empty element is allowed.
            } else {
                let eq = rest.find('=')?;
                let name = rest.get(..eq)?.trim_end_matches([' ', '\t']);
                if name.is_empty() || !name.bytes().all(is_tchar) {
                    return None;
                }
                rest = rest.get(eq + 1..)?;
                let (pair_value, after) = take_value(rest)?;
                rest = after.trim_start_matches([' ', '\t']);
                let name = name.to_ascii_lowercase();
                if seen.contains(&name) {
                    return None;
                }
                if name == "for" {
                    for_value = Some(pair_value);
                }
                seen.push(name);
            }
            match rest.as_bytes().first() {
                Some(b';') => rest = rest.get(1..)?,
                Some(b',') => {
                    rest = rest.get(1..)?;
                    break false;
                }
                None => break true,
                Some(_) => return None,
            }
        };
        if !seen.is_empty() {
            hops.push(match for_value {
                Some(v) => Hop {
                    node: parse_forwarded_node(&v),
                    text: v,
                },
                None => Hop {
                    text: String::new(),
                    node: Node::Invalid,
                },
            });
        }
        if element_end {
            return Some(hops);
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A token or quoted-string at the start of `s`: its value and the rest.
fn take_value(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((out, quoted.get(i + 1..)?)),
                '\\' => out.push(chars.next()?.1),
                c => out.push(c),
            }
        }
        return None;
    }
    let end = s.bytes().position(|b| !is_tchar(b)).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s.get(..end)?.to_string(), s.get(end..)?))
}

/// The hops of the configured header's value, or `None` when it is malformed.
pub fn hops(header: ForwardedHeader, value: &str) -> Option<Vec<Hop>> {
    match header {
        ForwardedHeader::XForwardedFor => Some(xff_hops(value)),
        ForwardedHeader::Forwarded => forwarded_hops(value),
    }
}

/// What the forwarding header says, as [`client_address_from`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding<'a> {
    /// No proxy is trusted: the header is not looked at.
    Ignored,
    /// The header is absent.
    Absent,
    /// The header does not follow its syntax.
    Malformed,
    /// What its hops are, left to right.
    Nodes(&'a [Node]),
}

/// The client address, from the connection's `peer` (`ip:port`) and the
/// configured header's value (`None` when absent, or when no proxy is
/// trusted and it was not read). `None` when the client has no IP: no proxy
/// vouches for one and the peer is not an IP (a Unix socket).
pub fn client_address(
    peer: Option<&str>,
    header_value: Option<&str>,
    trusted: &TrustedProxies,
) -> Option<ClientAddress> {
    if trusted.hops == 0 {
        return client_address_from(peer, Forwarding::Ignored, 0);
    }
    let Some(value) = header_value else {
        return client_address_from(peer, Forwarding::Absent, trusted.hops);
    };
    let nodes: Option<Vec<Node>> = match trusted.header {
        // Only the trusted hops matter, read from the right; no text is kept.
        ForwardedHeader::XForwardedFor => Some(
            value
                .rsplit(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .take(trusted.hops as usize)
                .map(parse_xff_entry)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
        ),
        ForwardedHeader::Forwarded => {
            forwarded_hops(value).map(|h| h.into_iter().map(|h| h.node).collect())
        }
    };
    match nodes {
        Some(n) => client_address_from(peer, Forwarding::Nodes(&n), trusted.hops),
        None => client_address_from(peer, Forwarding::Malformed, trusted.hops),
    }
}

/// [`client_address`] from a header already parsed (a caller that also logs
/// the hops parses them once).
pub fn client_address_from(
    peer: Option<&str>,
    forwarding: Forwarding<'_>,
    trusted_hops: u32,
) -> Option<ClientAddress> {
    let from_peer = |fallback: Option<Fallback>| {
        peer.and_then(parse_peer_address)
            .map(|(ip, port)| ClientAddress {
                ip,
                port,
                source: AddressSource::Peer,
                fallback,
                hops_to_the_right: 0,
            })
    };
    let nodes = match forwarding {
        Forwarding::Ignored => return from_peer(None),
        _ if trusted_hops == 0 => return from_peer(None),
        Forwarding::Absent => return from_peer(Some(Fallback::TooFewHops)),
        Forwarding::Malformed => return from_peer(Some(Fallback::Malformed)),
        Forwarding::Nodes(nodes) => nodes,
    };
    let n = trusted_hops as usize;
    if nodes.len() < n {
        return from_peer(Some(Fallback::TooFewHops));
    }
    let trusted = nodes.get(nodes.len() - n..).unwrap_or(&[]);
    for (i, node) in trusted.iter().enumerate() {
        if let Node::Address { ip, port } = *node {
            return Some(ClientAddress {
                ip,
                port,
                source: AddressSource::Header,
                fallback: (i > 0).then_some(Fallback::NotAnAddress),
                hops_to_the_right: n - 1 - i,
            });
        }
    }
    from_peer(Some(Fallback::NotAnAddress))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr(ip: &str, port: Option<u16>) -> Node {
        Node::Address { ip: v4(ip), port }
    }

    #[test]
    fn xff_entries_as_proxies_write_them() {
        let cases = [
            ("203.0.113.7", addr("203.0.113.7", None)),
            ("203.0.113.7:4711", addr("203.0.113.7", Some(4711))),
            ("2001:db8::1", addr("2001:db8::1", None)),
            ("[2001:db8::1]", addr("2001:db8::1", None)),
            ("[2001:db8::1]:4711", addr("2001:db8::1", Some(4711))),
            ("::ffff:198.51.100.9", addr("198.51.100.9", None)),
            ("unknown", Node::Unknown),
            ("UNKNOWN", Node::Unknown),
            ("_hidden", Node::Obfuscated),
            ("_SEVKISEK", Node::Obfuscated),
            ("fe80::1%eth0", Node::Invalid),
            ("example.com", Node::Invalid),
            ("203.0.113.7:http", Node::Invalid),
            ("203.0.113.7:99999", Node::Invalid),
            ("[2001:db8::1", Node::Invalid),
            ("1.2.3", Node::Invalid),
            ("\"203.0.113.7\"", Node::Invalid),
            ("", Node::Invalid),
        ];
        for (entry, want) in cases {
            assert_eq!(parse_xff_entry(entry), want, "{entry:?}");
        }
    }

    #[test]
    fn forwarded_nodes_follow_rfc_7239() {
        let cases = [
            ("192.0.2.43", addr("192.0.2.43", None)),
            ("192.0.2.43:47011", addr("192.0.2.43", Some(47011))),
            ("192.0.2.43:_abc", addr("192.0.2.43", None)),
            ("[2001:db8:cafe::17]", addr("2001:db8:cafe::17", None)),
            (
                "[2001:db8:cafe::17]:4711",
                addr("2001:db8:cafe::17", Some(4711)),
            ),
            ("unknown", Node::Unknown),
            ("unknown:4711", Node::Unknown),
            ("_hidden", Node::Obfuscated),
            ("_SEVKISEK:_port", Node::Obfuscated),
            ("2001:db8::1", Node::Invalid),
            ("[2001:db8::1]x", Node::Invalid),
            ("[not-v6]", Node::Invalid),
            ("192.0.2.43:", Node::Invalid),
            ("192.0.2.43:123456", Node::Invalid),
            ("_", Node::Invalid),
            ("host.example", Node::Invalid),
        ];
        for (value, want) in cases {
            assert_eq!(parse_forwarded_node(value), want, "{value:?}");
        }
    }

    #[test]
    fn forwarded_header_syntax() {
        let texts = |v: &str| {
            forwarded_hops(v).map(|h| h.into_iter().map(|h| (h.text, h.node)).collect::<Vec<_>>())
        };
        assert_eq!(
            texts(r#"for="_gazonk""#),
            Some(vec![("_gazonk".into(), Node::Obfuscated)])
        );
        assert_eq!(
            texts(r#"For="[2001:db8:cafe::17]:4711""#),
            Some(vec![(
                "[2001:db8:cafe::17]:4711".into(),
                addr("2001:db8:cafe::17", Some(4711))
            )])
        );
        assert_eq!(
            texts("for=192.0.2.60;proto=http;by=203.0.113.43"),
            Some(vec![("192.0.2.60".into(), addr("192.0.2.60", None))])
        );
        assert_eq!(
            texts("for=192.0.2.43, for=198.51.100.17"),
            Some(vec![
                ("192.0.2.43".into(), addr("192.0.2.43", None)),
                ("198.51.100.17".into(), addr("198.51.100.17", None)),
            ])
        );
        // A quoted comma or semicolon does not end anything; escapes unquote.
        assert_eq!(
            texts(r#"for=unknown;host="a,b;c", proto=https;for="\[::1\]""#),
            Some(vec![
                ("unknown".into(), Node::Unknown),
                ("[::1]".into(), addr("::1", None)),
            ])
        );
        // An element without `for` is a hop with no address.
        assert_eq!(
            texts("proto=https, for=192.0.2.1"),
            Some(vec![
                (String::new(), Node::Invalid),
                ("192.0.2.1".into(), addr("192.0.2.1", None))
            ])
        );
        // Empty elements and pairs are allowed and count for nothing.
        assert_eq!(texts(" , ;for=192.0.2.1;").map(|h| h.len()), Some(1));
        for bad in [
            r#"for="192.0.2.1"#,
            "for",
            "for=192.0.2.1;for=192.0.2.2",
            "for=[::1]",
            "for=192.0.2.1 proto=http",
            "f o r=1.1.1.1",
            "=1.1.1.1",
        ] {
            assert_eq!(texts(bad), None, "{bad:?}");
        }
    }

    fn client(
        peer: &str,
        header: Option<&str>,
        hops: u32,
        kind: ForwardedHeader,
    ) -> Option<ClientAddress> {
        client_address(Some(peer), header, &TrustedProxies { hops, header: kind })
    }

    #[test]
    fn trusted_hops_pick_the_client() {
        use AddressSource::{Header, Peer};
        use ForwardedHeader::{Forwarded, XForwardedFor as Xff};
        let peer = "10.0.0.9:5555";
        // (header value, trusted hops, kind) -> (ip, port, source, fallback)
        type Want = (&'static str, Option<u16>, AddressSource, Option<Fallback>);
        let cases: [(Option<&str>, u32, ForwardedHeader, Want); 17] = [
            (None, 0, Xff, ("10.0.0.9", Some(5555), Peer, None)),
            (
                Some("1.1.1.1, 2.2.2.2"),
                0,
                Xff,
                ("10.0.0.9", Some(5555), Peer, None),
            ),
            (
                Some("1.1.1.1, 2.2.2.2"),
                1,
                Xff,
                ("2.2.2.2", None, Header, None),
            ),
            (
                Some("1.1.1.1,2.2.2.2"),
                2,
                Xff,
                ("1.1.1.1", None, Header, None),
            ),
            (
                Some("1.1.1.1, 2.2.2.2"),
                3,
                Xff,
                ("10.0.0.9", Some(5555), Peer, Some(Fallback::TooFewHops)),
            ),
            (
                None,
                1,
                Xff,
                ("10.0.0.9", Some(5555), Peer, Some(Fallback::TooFewHops)),
            ),
            (
                Some(" , 3.3.3.3 ,"),
                1,
                Xff,
                ("3.3.3.3", None, Header, None),
            ),
            (
                Some("198.51.100.9:4711"),
                1,
                Xff,
                ("198.51.100.9", Some(4711), Header, None),
            ),
            (
                Some("[2001:db8::7]:443, 2.2.2.2"),
                2,
                Xff,
                ("2001:db8::7", Some(443), Header, None),
            ),
            // The trusted hop is no address: the next trusted one, then the peer.
            (
                Some("6.6.6.6, unknown, 2.2.2.2"),
                2,
                Xff,
                ("2.2.2.2", None, Header, Some(Fallback::NotAnAddress)),
            ),
            (
                Some("6.6.6.6, unknown"),
                1,
                Xff,
                ("10.0.0.9", Some(5555), Peer, Some(Fallback::NotAnAddress)),
            ),
            (
                Some("_hidden, garbage"),
                2,
                Xff,
                ("10.0.0.9", Some(5555), Peer, Some(Fallback::NotAnAddress)),
            ),
            // The untrusted part never counts, even when it is an address.
            (
                Some("6.6.6.6, _hidden"),
                1,
                Xff,
                ("10.0.0.9", Some(5555), Peer, Some(Fallback::NotAnAddress)),
            ),
            (
                Some(r#"for=192.0.2.60;proto=http, for="[2001:db8::9]:4711""#),
                1,
                Forwarded,
                ("2001:db8::9", Some(4711), Header, None),
            ),
            (
                Some("for=192.0.2.60, for=unknown"),
                1,
                Forwarded,
                ("10.0.0.9", Some(5555), Peer, Some(Fallback::NotAnAddress)),
            ),
            (
                Some(r#"for="192.0.2.60"#),
                1,
                Forwarded,
                ("10.0.0.9", Some(5555), Peer, Some(Fallback::Malformed)),
            ),
            // X-Forwarded-For syntax in a Forwarded header is malformed.
            (
                Some("192.0.2.60"),
                1,
                Forwarded,
                ("10.0.0.9", Some(5555), Peer, Some(Fallback::Malformed)),
            ),
        ];
        for (header, hops, kind, (ip, port, source, fallback)) in cases {
            let got = client(peer, header, hops, kind).unwrap();
            if source == Peer {
                assert_eq!(got.hops_to_the_right, 0);
            }
            assert_eq!(
                (got.ip, got.port, got.source, got.fallback),
                (v4(ip), port, source, fallback),
                "{header:?} hops={hops} {kind:?}"
            );
        }
    }

    #[test]
    fn hops_to_the_right_of_the_client() {
        let c = |xff: &str, hops: u32| {
            client(
                "10.0.0.9:1",
                Some(xff),
                hops,
                ForwardedHeader::XForwardedFor,
            )
            .unwrap()
            .hops_to_the_right
        };
        assert_eq!(c("1.1.1.1, 2.2.2.2, 3.3.3.3", 1), 0);
        assert_eq!(c("1.1.1.1, 2.2.2.2, 3.3.3.3", 3), 2);
        assert_eq!(c("unknown, 2.2.2.2, 3.3.3.3", 3), 1);
    }

    #[test]
    fn a_non_ip_is_never_the_client() {
        // A Unix-socket peer and nothing trusted: no client IP at all.
        assert_eq!(
            client(
                "/run/envoy.sock",
                Some("1.1.1.1"),
                0,
                ForwardedHeader::XForwardedFor
            ),
            None
        );
        // Behind a trusted proxy on a Unix socket, the header still names it.
        let c = client(
            "/run/envoy.sock",
            Some("1.1.1.1"),
            1,
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(c.unwrap().ip, v4("1.1.1.1"));
        for garbage in ["unknown", "_x", "999.1.1.1", "a b", "[::1", "::1]:80"] {
            let c = client(
                "10.0.0.1:1",
                Some(garbage),
                1,
                ForwardedHeader::XForwardedFor,
            )
            .unwrap();
            assert_eq!(c.ip, v4("10.0.0.1"), "{garbage}");
            assert!(c.fallback.is_some());
        }
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(
            parse_socket_address("127.0.0.1:5555"),
            Some((v4("127.0.0.1"), Some(5555)))
        );
        assert_eq!(
            parse_socket_address("[::1]:80"),
            Some((v4("::1"), Some(80)))
        );
        assert_eq!(
            parse_socket_address("[::ffff:10.0.0.9]:80"),
            Some((v4("10.0.0.9"), Some(80)))
        );
        assert_eq!(parse_socket_address("::1"), Some((v4("::1"), None)));
        assert_eq!(parse_socket_address("/run/envoy.sock"), None);
        assert_eq!(
            parse_peer_address("203.0.113.5:0"),
            Some((v4("203.0.113.5"), None))
        );
        assert_eq!(
            parse_peer_address("203.0.113.5:80"),
            Some((v4("203.0.113.5"), Some(80)))
        );
    }
}
