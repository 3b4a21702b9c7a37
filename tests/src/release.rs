//! The release of the Envoy the tests run, for the few tests whose outcome
//! depends on a host feature that only newer supported Envoys offer
//! (`make test-envoys` runs the suite against 1.36 to 1.40).

use std::process::Command;
use std::sync::OnceLock;

use palisade_shared::engine::{EnvoyVersion, HostFeature};

use crate::paths::envoy_bin;

/// The release of the Envoy the tests run, from `envoy --version`
/// (`version: <commit>/1.36.4/Clean/RELEASE/BoringSSL`).
pub fn envoy_release() -> EnvoyVersion {
    static RELEASE: OnceLock<EnvoyVersion> = OnceLock::new();
    *RELEASE.get_or_init(|| {
        let out = Command::new(envoy_bin())
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", envoy_bin().display()));
        let text = String::from_utf8_lossy(&out.stdout);
        parse_release(&text).unwrap_or_else(|| panic!("no release in `envoy --version`: {text}"))
    })
}

fn parse_release(version_output: &str) -> Option<EnvoyVersion> {
    let (_, after) = version_output.split_once("version: ")?;
    let release = after.split('/').nth(1)?;
    let mut numbers = release.split(['.', '-']).map(|n| n.parse::<u64>().ok());
    Some(EnvoyVersion::new(
        numbers.next()??,
        numbers.next()??,
        numbers.next()??,
    ))
}

/// Whether this Envoy gives modules the whole client certificate
/// (`connection.peer_certificate`). Without it the transport policy
/// refuses, at load, a client-certificate rule on subjects, issuers or SANs.
pub fn envoy_gives_peer_certificate() -> bool {
    HostFeature::PeerCertificate.offered_by(envoy_release())
}

/// What the transport policy's load-time refusal says on an Envoy without
/// `connection.peer_certificate`.
pub fn no_peer_certificate() -> String {
    HostFeature::PeerCertificate.requirement()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_read_from_envoy_version() {
        for (output, want) in [
            (
                "envoy  version: bad8280de85c25b147a90c1d9b8a8c67a13e7134/1.36.4/Clean/RELEASE/BoringSSL\n",
                Some(EnvoyVersion::new(1, 36, 4)),
            ),
            (
                "x version: abc/1.40.0-dev/Modified/DEBUG/BoringSSL",
                Some(EnvoyVersion::new(1, 40, 0)),
            ),
            ("no version here", None),
            ("x version: abc/main/Clean", None),
        ] {
            assert_eq!(parse_release(output), want, "{output}");
        }
    }
}
