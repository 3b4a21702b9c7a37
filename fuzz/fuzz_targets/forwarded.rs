//! The client address behind trusted proxies: `X-Forwarded-For` and RFC
//! 7239 `Forwarded` as any client can write them, and the peer address.
//! The rate limiter (`client_address`) and the audit record (`hops`, then
//! `client_address_from`) read the same header two ways: they must agree on
//! who the client is.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use palisade_shared::forwarded::{
    client_address, client_address_from, hops, parse_forwarded_node, parse_peer_address,
    parse_socket_address, parse_xff_entry, ForwardedHeader, Forwarding, Node, TrustedProxies,
};

#[derive(Debug, Arbitrary)]
struct Input {
    peer: Option<String>,
    value: Option<String>,
    hops: u8,
    forwarded: bool,
}

fuzz_target!(|input: Input| {
    let header = if input.forwarded {
        ForwardedHeader::Forwarded
    } else {
        ForwardedHeader::XForwardedFor
    };
    let trusted = TrustedProxies {
        hops: u32::from(input.hops % 24),
        header,
    };
    let peer = input.peer.as_deref();
    let direct = client_address(peer, input.value.as_deref(), &trusted);
    let parsed = input.value.as_deref().map(|v| hops(header, v));
    let nodes: Vec<Node> = match &parsed {
        Some(Some(hops)) => hops.iter().map(|h| h.node).collect(),
        _ => Vec::new(),
    };
    let forwarding = match &parsed {
        _ if trusted.hops == 0 => Forwarding::Ignored,
        None => Forwarding::Absent,
        Some(None) => Forwarding::Malformed,
        Some(Some(_)) => Forwarding::Nodes(&nodes),
    };
    let from_hops = client_address_from(peer, forwarding, trusted.hops);
    assert_eq!(
        direct, from_hops,
        "the rate limiter and the audit record disagree"
    );
    if let Some(client) = direct {
        // An IPv4 client seen through IPv6 is an IPv4 client.
        assert_eq!(client.ip, client.ip.to_canonical());
    }
    if let Some(hops) = parsed.flatten() {
        for hop in hops {
            if !input.forwarded {
                assert!(!hop.text.is_empty() && hop.text.trim() == hop.text);
                assert_eq!(parse_xff_entry(&hop.text), hop.node);
            }
        }
    }
    for text in [input.peer.as_deref(), input.value.as_deref()]
        .into_iter()
        .flatten()
    {
        let _ = parse_socket_address(text);
        let _ = parse_peer_address(text);
        let _ = parse_forwarded_node(text);
        let _ = parse_xff_entry(text);
    }
});
