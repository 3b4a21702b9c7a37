//! The rate limiter's key: the client address (through trusted proxies,
//! grouped by prefix), headers, identity claims, the MCP decision, path,
//! method, host, route.
//! Addresses of one group share a bucket; different values never share a
//! key by how they are spelled into the hash.
#![no_main]

use std::net::Ipv4Addr;
use std::rc::Rc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use palisade_fuzz::{header_pairs, Header};
use palisade_ratelimit::config::parse_duration;
use palisade_ratelimit::key::{
    client_key, key_hash, ClientAddressSpec, Descriptor, HashKey, IdentityClaim, McpField,
    RequestFacts,
};
use palisade_shared::contract::{Identity, McpDecision};
use palisade_shared::forwarded::{ForwardedHeader, TrustedProxies};

#[derive(Debug, Arbitrary)]
struct Input {
    hash_key: (u64, u64),
    method: String,
    host: String,
    path: String,
    route: String,
    peer: Option<String>,
    forwarded: Option<String>,
    headers: Vec<Header>,
    sub: Option<String>,
    jti: Option<String>,
    mcp: Option<(String, Option<String>, Option<String>, Option<String>)>,
    hops: u8,
    forwarded_header: bool,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    ip: u32,
    other_host_bits: u32,
    split: (String, String, usize),
}

fuzz_target!(|input: Input| {
    let spec = ClientAddressSpec {
        trusted: TrustedProxies {
            hops: u32::from(input.hops % 8),
            header: if input.forwarded_header {
                ForwardedHeader::Forwarded
            } else {
                ForwardedHeader::XForwardedFor
            },
        },
        ipv4_prefix: input.ipv4_prefix,
        ipv6_prefix: input.ipv6_prefix,
    };
    let identity = (input.sub.is_some() || input.jti.is_some()).then(|| {
        Rc::new(Identity {
            provider: "corp".into(),
            iss: "https://idp".into(),
            sub: input.sub.clone(),
            jti: input.jti.clone(),
            ..Identity::default()
        })
    });
    let facts = RequestFacts {
        method: input.method.clone(),
        host: input.host.clone(),
        path: input.path.clone(),
        route_name: input.route.clone(),
        peer_address: input.peer.clone(),
        forwarded: input.forwarded.clone(),
        headers: header_pairs(&input.headers),
        identity,
        mcp: input
            .mcp
            .clone()
            .map(|(method, tool, resource, prompt)| McpDecision {
                method,
                tool,
                resource,
                prompt,
                decision: "allowed".into(),
                ..McpDecision::default()
            }),
        cost: None,
    };
    let client = client_key(&spec, &facts);
    let mut descriptors = vec![
        Descriptor::ClientAddress,
        Descriptor::Path,
        Descriptor::Method,
        Descriptor::Host,
        Descriptor::RouteName,
        Descriptor::Constant("c".into()),
    ];
    for claim in IdentityClaim::ALL.into_iter().filter(|c| !c.is_list()) {
        descriptors.push(Descriptor::Identity(claim));
    }
    for name in McpField::NAMES {
        descriptors.push(Descriptor::Mcp(McpField::parse(name).unwrap()));
    }
    for (name, _) in &facts.headers {
        descriptors.push(Descriptor::Header(name.clone()));
    }
    let hash_key = HashKey::new(input.hash_key.0, input.hash_key.1);
    for d in &descriptors {
        let _ = key_hash(&hash_key, std::slice::from_ref(d), &facts, &client);
    }
    let _ = key_hash(&hash_key, &descriptors, &facts, &client);

    // Two addresses of one IPv4 group share the client key.
    let prefix = input.ipv4_prefix.min(32);
    let host_mask = if prefix == 0 {
        u32::MAX
    } else {
        u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
    };
    let other = (input.ip & !host_mask) | (input.other_host_bits & host_mask);
    let key_of = |ip: u32| {
        let facts = RequestFacts {
            peer_address: Some(format!("{}:4711", Ipv4Addr::from(ip))),
            ..RequestFacts::default()
        };
        let spec = ClientAddressSpec {
            trusted: TrustedProxies::default(),
            ..spec
        };
        client_key(&spec, &facts)
    };
    assert_eq!(
        key_of(input.ip),
        key_of(other),
        "/{prefix} group of {}",
        Ipv4Addr::from(input.ip)
    );

    // Two headers' values are spelled apart: moving bytes from one value to
    // the other gives another key.
    let (a, b, at) = &input.split;
    let joined = format!("{a}{b}");
    let mut cut = at % (joined.len() + 1);
    while !joined.is_char_boundary(cut) {
        cut -= 1;
    }
    let (a2, b2) = joined.split_at(cut);
    if (a2, b2) != (a.as_str(), b.as_str()) {
        let pair = [
            Descriptor::Header("x-a".into()),
            Descriptor::Header("x-b".into()),
        ];
        let hash = |a: &str, b: &str| {
            let facts = RequestFacts {
                headers: vec![("x-a".into(), a.into()), ("x-b".into(), b.into())],
                ..RequestFacts::default()
            };
            key_hash(&hash_key, &pair, &facts, &client).unwrap()
        };
        assert_ne!(hash(a, b), hash(a2, b2));
    }
    let _ = parse_duration(&input.path);
});
