//! The client address behind trusted proxies.
//!
//! Envoy's own rule (`xff_num_trusted_hops`): with `N` trusted proxies in front
//! of Envoy, each of which appended the address it saw to `X-Forwarded-For`,
//! the client is the `N`th address from the right. Anything further left was
//! written by the client and proves nothing. With `N = 0`, or when the header
//! has fewer than `N` entries, the client is the peer of the connection.

/// The addresses of `X-Forwarded-For`, left to right, trimmed; empty entries dropped.
pub fn forwarded_chain(xff: &str) -> Vec<&str> {
    xff.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

/// The client address: the `trusted_hops`-th address from the right of
/// `X-Forwarded-For`, or the connection's peer address.
pub fn client_address<'a>(peer: &'a str, xff: Option<&'a str>, trusted_hops: u32) -> &'a str {
    if trusted_hops == 0 {
        return peer;
    }
    let Some(xff) = xff else { return peer };
    let chain = forwarded_chain(xff);
    let hops = trusted_hops as usize;
    if chain.len() < hops {
        return peer;
    }
    chain.get(chain.len() - hops).copied().unwrap_or(peer)
}

/// The IP of an `ip:port` or `[v6]:port` socket address (unchanged when there is no port).
pub fn ip_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let peer = "10.0.0.9";
        let cases = [
            (None, 0, "10.0.0.9"),
            (Some("1.1.1.1, 2.2.2.2"), 0, "10.0.0.9"),
            (Some("1.1.1.1, 2.2.2.2"), 1, "2.2.2.2"),
            (Some("1.1.1.1,2.2.2.2"), 2, "1.1.1.1"),
            (Some("1.1.1.1, 2.2.2.2"), 3, "10.0.0.9"),
            (Some(" , 3.3.3.3 ,"), 1, "3.3.3.3"),
            (None, 1, "10.0.0.9"),
        ];
        for (xff, hops, want) in cases {
            assert_eq!(client_address(peer, xff, hops), want, "{xff:?} {hops}");
        }
    }

    #[test]
    fn ip_of_strips_ports() {
        assert_eq!(ip_of("127.0.0.1:5555"), "127.0.0.1");
        assert_eq!(ip_of("[::1]:80"), "::1");
        assert_eq!(ip_of("::1"), "::1");
        assert_eq!(ip_of("10.1.1.1"), "10.1.1.1");
    }
}
