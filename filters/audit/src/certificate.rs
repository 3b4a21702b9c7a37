//! The client certificate's issuer, serial number and validity.
//!
//! Envoy gives a Wasm module the peer certificate's subject, SANs and SHA-256
//! digest as `connection.*` attributes, but not its issuer or serial number,
//! which OCSF's `certificate` object requires. Envoy does hand the whole
//! certificate to the request when its connection manager is configured with
//! `forward_client_cert_details: SANITIZE_SET` (or `APPEND_FORWARD`) and
//! `set_current_client_cert_details: {cert: true}`: the
//! `x-forwarded-client-cert` (XFCC) header then carries `Hash=<sha256>` and
//! `Cert="<URL-encoded PEM>"`. This module reads that certificate, and only
//! believes it when its SHA-256 is the digest of the certificate the TLS
//! connection actually presented (`connection.sha256_peer_certificate_digest`):
//! a client that sends its own XFCC, or a configuration that forwards one,
//! cannot put another certificate's issuer into the record.

use palisade_shared::x509::{self, der_from_pem_text, sha256_hex};

/// What the record says about the client certificate beyond its subject
/// (the issuer, serial number and validity are what it reads).
pub type PeerCertificate = x509::Certificate;

/// The certificate of the `x-forwarded-client-cert` element whose `Hash` and
/// whose decoded `Cert` both match `sha256_hex`, the TLS connection's peer
/// certificate digest. `None` when there is none, or it does not parse.
pub fn from_xfcc(xfcc: &str, connection_sha256: &str) -> Option<PeerCertificate> {
    // Envoy appends its own element last: look from the right.
    xfcc_elements(xfcc).into_iter().rev().find_map(|element| {
        let field = |name: &str| {
            element
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if !field("hash")?.eq_ignore_ascii_case(connection_sha256) {
            return None;
        }
        let der = der_from_pem_text(field("cert")?.as_bytes())?;
        if !sha256_hex(&der).eq_ignore_ascii_case(connection_sha256) {
            return None;
        }
        x509::parse(&der)
    })
}

/// XFCC: elements separated by `,`, key-value pairs by `;`, a value quoted
/// when it holds `,`, `;` or `=`, with `\"` for a quote inside.
fn xfcc_elements(value: &str) -> Vec<Vec<(String, String)>> {
    let mut elements = Vec::new();
    let mut pairs = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = value.chars();
    let finish_pair = |current: &mut String, pairs: &mut Vec<(String, String)>| {
        let text = std::mem::take(current);
        if let Some((k, v)) = text.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            pairs.push((k.trim().to_string(), v.replace("\\\"", "\"")));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => finish_pair(&mut current, &mut pairs),
            ',' if !quoted => {
                finish_pair(&mut current, &mut pairs);
                elements.push(std::mem::take(&mut pairs));
            }
            c => current.push(c),
        }
    }
    finish_pair(&mut current, &mut pairs);
    elements.push(pairs);
    elements
}

/// The test certificate and the XFCC header Envoy would send with it.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// A client certificate made with
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
    /// -subj '/O=Palisade Test/CN=client, "one"' -set_serial 0x00A1B2C3D4E5F60718
    /// -days 3650` (a self-signed certificate: issuer = subject).
    pub const PEM: &str = include_str!("../tests/fixtures/client-cert.pem");

    /// Its DER.
    pub fn der() -> Vec<u8> {
        x509::pem_to_der(PEM.as_bytes()).unwrap()
    }

    /// Its SHA-256, as `connection.sha256_peer_certificate_digest` gives it.
    pub fn sha256_hex() -> String {
        x509::sha256_hex(&der())
    }

    /// An XFCC element for `pem` claiming `hash`, as Envoy writes it.
    pub fn xfcc_for(pem: &str, hash: &str) -> String {
        let encoded: String = pem
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("By=spiffe://cluster.local/ns/default/sa/envoy;Hash={hash};Cert=\"{encoded}\";Subject=\"O=Palisade Test,CN=client\";URI=")
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{self, PEM};
    use super::*;

    #[test]
    fn parses_the_issuer_serial_and_validity() {
        let cert = x509::parse(&fixture::der()).unwrap();
        assert_eq!(cert.issuer, r#"CN=client\, \"one\",O=Palisade Test"#);
        assert_eq!(cert.serial_number, "A1B2C3D4E5F60718");
        let (nb, na) = (cert.not_before_ms.unwrap(), cert.not_after_ms.unwrap());
        assert!(na - nb >= 3650 * 86_400_000 - 1000, "{nb} {na}");
        assert_eq!(nb % 1000, 0);
    }

    #[test]
    fn believes_only_the_certificate_of_the_connection() {
        let digest = fixture::sha256_hex();
        let good = fixture::xfcc_for(PEM, &digest);
        assert!(from_xfcc(&good, &digest).is_some());
        assert!(from_xfcc(&good, &digest.to_ascii_uppercase()).is_some());
        // Envoy's element comes last; a client's own element before it is ignored.
        let with_client_element = format!("Hash=00;Subject=\"CN=mallory\",{good}");
        assert!(from_xfcc(&with_client_element, &digest).is_some());
        // Another connection's digest: no certificate.
        assert!(from_xfcc(&good, &"ab".repeat(32)).is_none());
        // The right hash with another certificate: refused after hashing it.
        let other_pem = PEM.replacen("MII", "MIJ", 1);
        assert!(from_xfcc(&fixture::xfcc_for(&other_pem, &digest), &digest).is_none());
        // No Cert field (only `Hash` and `Subject` were configured).
        assert!(from_xfcc(&format!("Hash={digest};Subject=\"CN=x\""), &digest).is_none());
        assert!(from_xfcc("", &digest).is_none());
    }

    #[test]
    fn xfcc_syntax() {
        let e = xfcc_elements(r#"By=a;Hash=1;Subject="CN=a,O=b;c=\"d\"";URI=,Hash=2"#);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][2], ("Subject".into(), r#"CN=a,O=b;c="d""#.into()));
        assert_eq!(e[0][3], ("URI".into(), String::new()));
        assert_eq!(e[1], vec![("Hash".into(), "2".into())]);
    }
}
