//! Where images go: a registry and a repository prefix.

use crate::error::Error;

/// A registry and the repository prefix under which the images go, parsed
/// from `OCI_REGISTRY` such as `127.0.0.1:5000/palisade` or `ghcr.io/acme/palisade`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]`.
    pub registry: String,
    /// The path under the registry (may be empty).
    pub prefix: String,
}

impl Target {
    /// Parses `host[:port][/prefix]`, with an optional `oci://` in front.
    pub fn parse(spec: &str) -> Result<Target, Error> {
        let spec = spec
            .trim()
            .trim_start_matches("oci://")
            .trim_end_matches('/');
        let (registry, prefix) = spec.split_once('/').unwrap_or((spec, ""));
        let valid_host = !registry.is_empty()
            && registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        let valid_prefix = prefix.split('/').all(|part| {
            prefix.is_empty()
                || (!part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)))
        });
        if !valid_host || !valid_prefix {
            return Err(Error::new(format!(
                "`{spec}` is not a registry: expected host[:port][/lower-case/path], such as 127.0.0.1:5000/palisade"
            )));
        }
        Ok(Target {
            registry: registry.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The repository of a module's images: `<prefix>/<name>`, where
    /// `name` is the filter (`waf`) or `bundle`.
    pub fn repository(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// `registry/prefix/name:tag`, for a `WasmPlugin` URL.
    pub fn tagged(&self, name: &str, tag: &str) -> String {
        format!("{}/{}:{tag}", self.registry, self.repository(name))
    }

    /// Whether the registry is on loopback, where plain HTTP is allowed.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => self.registry.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_and_prefix() {
        let t = Target::parse("127.0.0.1:5000/palisade").unwrap();
        assert_eq!(t.registry, "127.0.0.1:5000");
        assert_eq!(
            t.tagged("waf", "0.1.0"),
            "127.0.0.1:5000/palisade/waf:0.1.0"
        );
        assert!(t.is_loopback());
        let t = Target::parse("oci://ghcr.io/acme/security/").unwrap();
        assert_eq!(t.registry, "ghcr.io");
        assert_eq!(t.repository("jwt"), "acme/security/jwt");
        assert!(!t.is_loopback());
        let t = Target::parse("localhost:5000").unwrap();
        assert_eq!(t.tagged("mfa", "1"), "localhost:5000/mfa:1");
        assert!(t.is_loopback());
        assert!(Target::parse("[::1]:5000/p").unwrap().is_loopback());
        assert!(Target::parse("127.0.0.2:5000").unwrap().is_loopback());
        // a host name that merely starts like a loopback address is not one
        assert!(!Target::parse("127.example.com/p").unwrap().is_loopback());
        assert!(!Target::parse("10.0.0.1:5000/p").unwrap().is_loopback());
    }

    #[test]
    fn refuses_what_is_not_a_registry() {
        for bad in [
            "",
            "/palisade",
            "host/Upper",
            "host//x",
            "ho st/p",
            "host/p?x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
