//! Host features a stage may need that not every supported Envoy offers,
//! checked when the configuration loads.
//!
//! Envoy's connection attributes cannot be probed at load: the root context
//! has no connection, so an attribute the host does not know reads absent
//! just like one it knows. So the check reads the host's Envoy version
//! (`xds.node.user_agent_build_version`, which Envoy fills from its own build)
//! and compares it with the release that added the feature. A host that
//! reports no Envoy version (another proxy-wasm host) passes the check: a
//! stage then fails closed on the absent attribute, request by request.

use std::fmt;

use super::host::Host;

/// A host feature that only some supported Envoys offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFeature {
    /// The attribute `connection.peer_certificate`: the client certificate,
    /// PEM. Older Envoys give its digest, subject and first SANs only.
    PeerCertificate,
}

impl HostFeature {
    /// What the feature is, for a log line.
    pub fn describe(self) -> &'static str {
        match self {
            HostFeature::PeerCertificate => {
                "Envoy's attribute `connection.peer_certificate` (the whole client certificate)"
            }
        }
    }

    /// The first Envoy release that offers it.
    pub fn since(self) -> EnvoyVersion {
        match self {
            HostFeature::PeerCertificate => EnvoyVersion::new(1, 38, 0),
        }
    }

    /// What it needs, for a refusal: the feature and the Envoy release
    /// that added it.
    pub fn requirement(self) -> String {
        let since = self.since();
        format!(
            "needs {} from Envoy {}.{} on",
            self.describe(),
            since.major,
            since.minor
        )
    }

    /// Whether an Envoy of this release offers it.
    pub fn offered_by(self, version: EnvoyVersion) -> bool {
        version >= self.since()
    }

    /// `Err` with a message naming the feature, the Envoy release that
    /// added it and the host's, when the host is an Envoy older than that.
    pub fn check(self, host: &dyn Host) -> Result<(), String> {
        match EnvoyVersion::of_host(host) {
            Some(version) if !self.offered_by(version) => {
                Err(format!("{}; this Envoy is {version}", self.requirement()))
            }
            _ => Ok(()),
        }
    }
}

/// An Envoy release, as its node reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnvoyVersion {
    /// The major number (1).
    pub major: u64,
    /// The minor number (36 for Envoy 1.36.4).
    pub minor: u64,
    /// The patch number (4 for Envoy 1.36.4).
    pub patch: u64,
}

impl EnvoyVersion {
    /// The release `major.minor.patch`.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        EnvoyVersion {
            major,
            minor,
            patch,
        }
    }

    /// The host's Envoy release, from `xds.node.user_agent_build_version.version`
    /// (each number an 8-byte little-endian integer, as Envoy serializes
    /// them); `None` when the host does not say.
    pub fn of_host(host: &dyn Host) -> Option<EnvoyVersion> {
        let number = |field: &str| {
            let bytes = host.property(&version_field(field))?;
            <[u8; 8]>::try_from(bytes.as_slice())
                .ok()
                .map(u64::from_le_bytes)
        };
        let version = EnvoyVersion::new(
            number("major_number")?,
            number("minor_number")?,
            number("patch")?,
        );
        // An unset build version reads as zeros: that is no version.
        (version != EnvoyVersion::new(0, 0, 0)).then_some(version)
    }
}

/// The node property of one number of the host's Envoy release
/// (`major_number`, `minor_number`, `patch`).
pub(crate) fn version_field(field: &str) -> [&str; 5] {
    ["xds", "node", "user_agent_build_version", "version", field]
}

impl fmt::Display for EnvoyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeHost;

    fn envoy(major: u64, minor: u64, patch: u64) -> FakeHost {
        FakeHost::new().with_envoy_version(EnvoyVersion::new(major, minor, patch))
    }

    #[test]
    fn the_hosts_version_is_read_from_its_node() {
        let cases: &[(FakeHost, Option<EnvoyVersion>)] = &[
            (envoy(1, 36, 4), Some(EnvoyVersion::new(1, 36, 4))),
            (envoy(1, 40, 0), Some(EnvoyVersion::new(1, 40, 0))),
            // Not an Envoy, or a build without a version.
            (FakeHost::new(), None),
            (envoy(0, 0, 0), None),
            // A number in another encoding is no version.
            (
                envoy(1, 38, 0).with_property(&version_field("major_number"), b"1"),
                None,
            ),
        ];
        for (host, want) in cases {
            assert_eq!(EnvoyVersion::of_host(host), *want);
        }
    }

    #[test]
    fn a_feature_is_refused_on_an_envoy_older_than_its_release_only() {
        let feature = HostFeature::PeerCertificate;
        for (i, (host, ok)) in [
            (envoy(1, 36, 4), false),
            (envoy(1, 37, 9), false),
            (envoy(1, 38, 0), true),
            (envoy(1, 40, 0), true),
            (envoy(2, 0, 0), true),
            // A host that does not say is let through: the stage fails
            // closed on the absent attribute instead.
            (FakeHost::new(), true),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(feature.check(&host).is_ok(), ok, "case {i}");
        }
        let message = feature.check(&envoy(1, 36, 4)).unwrap_err();
        assert!(
            message.contains("connection.peer_certificate")
                && message.contains("from Envoy 1.38 on")
                && message.contains("this Envoy is 1.36.4"),
            "{message}"
        );
    }
}
