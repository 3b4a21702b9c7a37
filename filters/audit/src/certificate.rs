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

use base64::Engine;
use sha2::{Digest, Sha256};

use palisade_shared::time::unix_millis_from_civil;

/// What the record says about the client certificate beyond its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The issuer's distinguished name, RFC 4514 (Envoy's subject format).
    pub issuer: String,
    /// The serial number, upper-case hex without separators or sign padding.
    pub serial_number: String,
    /// `notBefore`, milliseconds since the epoch.
    pub not_before_ms: Option<i64>,
    /// `notAfter`, milliseconds since the epoch.
    pub not_after_ms: Option<i64>,
}

/// The certificate of the `x-forwarded-client-cert` element whose `Hash` and
/// whose decoded `Cert` both match `sha256_hex`, the TLS connection's peer
/// certificate digest. `None` when there is none, or it does not parse.
pub fn from_xfcc(xfcc: &str, sha256_hex: &str) -> Option<PeerCertificate> {
    // Envoy appends its own element last: look from the right.
    xfcc_elements(xfcc).into_iter().rev().find_map(|element| {
        let field = |name: &str| {
            element
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if !field("hash")?.eq_ignore_ascii_case(sha256_hex) {
            return None;
        }
        let der = pem_to_der(&percent_decode(field("cert")?)?)?;
        let digest = Sha256::digest(&der);
        if !hex(&digest, false).eq_ignore_ascii_case(sha256_hex) {
            return None;
        }
        parse_certificate(&der)
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

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
fn pem_to_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let (_, rest) = text.split_once("-----BEGIN CERTIFICATE-----")?;
    let (body, _) = rest.split_once("-----END CERTIFICATE-----")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn hex(bytes: &[u8], upper: bool) -> String {
    let digits = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(digits[usize::from(b >> 4)]));
        s.push(char::from(digits[usize::from(b & 0xf)]));
    }
    s
}

/// A DER reader over one level of nesting.
struct Der<'a> {
    rest: &'a [u8],
}

/// One TLV: its tag, its content, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    encoded: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn next(&mut self) -> Option<Tlv<'a>> {
        let all = self.rest;
        let (&tag, after_tag) = all.split_first()?;
        let (&first, mut after_len) = after_tag.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (len_bytes, tail) = after_len.split_at_checked(n)?;
            after_len = tail;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (content, tail) = after_len.split_at_checked(len)?;
        let header = all.len() - after_len.len();
        let encoded = all.get(..header + len)?;
        self.rest = tail;
        Some(Tlv {
            tag,
            content,
            encoded,
        })
    }

    fn expect(&mut self, tag: u8) -> Option<Tlv<'a>> {
        self.next().filter(|t| t.tag == tag)
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION_TAG: u8 = 0xa0;

/// The parts of a DER certificate the record needs.
fn parse_certificate(der: &[u8]) -> Option<PeerCertificate> {
    let cert = Der::new(der).expect(SEQUENCE)?;
    let tbs = Der::new(cert.content).expect(SEQUENCE)?;
    let mut fields = Der::new(tbs.content);
    let mut next = fields.next()?;
    if next.tag == VERSION_TAG {
        next = fields.next()?;
    }
    if next.tag != INTEGER || next.content.is_empty() {
        return None;
    }
    let serial = next.content;
    let _signature = fields.expect(SEQUENCE)?;
    let issuer = fields.expect(SEQUENCE)?;
    let validity = fields.expect(SEQUENCE)?;
    let mut times = Der::new(validity.content);
    let not_before = times.next().and_then(|t| time_ms(&t));
    let not_after = times.next().and_then(|t| time_ms(&t));
    // Sign padding (a leading zero byte before a byte with its top bit set)
    // is not part of the number.
    let significant = match serial {
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    Some(PeerCertificate {
        issuer: distinguished_name(issuer.content)?,
        serial_number: hex(significant, true),
        not_before_ms: not_before,
        not_after_ms: not_after,
    })
}

/// `UTCTime` (`YYMMDDHHMMSSZ`, years 1950-2049) or `GeneralizedTime`
/// (`YYYYMMDDHHMMSSZ`), as RFC 5280 requires them in certificates.
fn time_ms(t: &Tlv<'_>) -> Option<i64> {
    let text = std::str::from_utf8(t.content).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| digits.get(range)?.parse::<u32>().ok();
    let (year, rest) = match (t.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = i64::from(num(0..2)?);
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (i64::from(num(0..4)?), 4),
        _ => return None,
    };
    unix_millis_from_civil(
        year,
        num(rest..rest + 2)?,
        num(rest + 2..rest + 4)?,
        num(rest + 4..rest + 6)?,
        num(rest + 6..rest + 8)?,
        num(rest + 8..rest + 10)?,
    )
}

/// An X.501 `Name` as RFC 4514 writes it: relative distinguished names in
/// reverse order, separated by `,`; attributes of one RDN joined by `+`.
fn distinguished_name(name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    let mut seq = Der::new(name);
    while !seq.rest.is_empty() {
        let set = seq.expect(SET)?;
        let mut avas = Vec::new();
        let mut members = Der::new(set.content);
        while !members.rest.is_empty() {
            let ava = members.expect(SEQUENCE)?;
            let mut parts = Der::new(ava.content);
            let oid = parts.expect(OID)?;
            let value = parts.next()?;
            avas.push(attribute(oid.content, &value)?);
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn attribute(oid: &[u8], value: &Tlv<'_>) -> Option<String> {
    let dotted = oid_text(oid)?;
    let short = match dotted.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.4" => Some("SN"),
        "2.5.4.5" => Some("serialNumber"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.9" => Some("street"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "2.5.4.12" => Some("title"),
        "2.5.4.17" => Some("postalCode"),
        "2.5.4.42" => Some("GN"),
        "2.5.4.43" => Some("initials"),
        "2.5.4.46" => Some("dnQualifier"),
        "2.5.4.65" => Some("pseudonym"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "1.2.840.113549.1.9.1" => Some("emailAddress"),
        _ => None,
    };
    Some(match (short, string_value(value)) {
        (Some(name), Some(text)) => format!("{name}={}", escape_value(&text)),
        // RFC 4514: a type without a short name, or a value that is not a
        // string, is written as the dotted OID and the hex of its encoding.
        (name, _) => format!(
            "{}=#{}",
            name.map_or(dotted.clone(), str::to_string),
            hex(value.encoded, false)
        ),
    })
}

fn oid_text(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut arcs = vec![u64::from(first / 40).min(2), 0];
    arcs[1] = u64::from(first) - arcs[0] * 40;
    let mut acc: u64 = 0;
    for &b in rest {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    if acc != 0 {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

fn string_value(value: &Tlv<'_>) -> Option<String> {
    match value.tag {
        // UTF8String, PrintableString, IA5String, VisibleString, NumericString.
        0x0c | 0x13 | 0x16 | 0x1a | 0x12 => String::from_utf8(value.content.to_vec()).ok(),
        // TeletexString: in practice Latin-1.
        0x14 => Some(value.content.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e => {
            let units: Vec<u16> = value
                .content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 4514 section 2.4 escaping.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let escape = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
        pem_to_der(PEM.as_bytes()).unwrap()
    }

    /// Its SHA-256, as `connection.sha256_peer_certificate_digest` gives it.
    pub fn sha256_hex() -> String {
        hex(&Sha256::digest(der()), false)
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
    use super::fixture::*;
    use super::*;

    #[test]
    fn parses_the_issuer_serial_and_validity() {
        let cert = parse_certificate(&der()).unwrap();
        assert_eq!(cert.issuer, r#"CN=client\, \"one\",O=Palisade Test"#);
        assert_eq!(cert.serial_number, "A1B2C3D4E5F60718");
        let (nb, na) = (cert.not_before_ms.unwrap(), cert.not_after_ms.unwrap());
        assert!(na - nb >= 3650 * 86_400_000 - 1000, "{nb} {na}");
        assert_eq!(nb % 1000, 0);
    }

    #[test]
    fn believes_only_the_certificate_of_the_connection() {
        let digest = sha256_hex();
        let good = xfcc_for(PEM, &digest);
        assert!(from_xfcc(&good, &digest).is_some());
        assert!(from_xfcc(&good, &digest.to_ascii_uppercase()).is_some());
        // Envoy's element comes last; a client's own element before it is ignored.
        let with_client_element = format!("Hash=00;Subject=\"CN=mallory\",{good}");
        assert!(from_xfcc(&with_client_element, &digest).is_some());
        // Another connection's digest: no certificate.
        assert!(from_xfcc(&good, &"ab".repeat(32)).is_none());
        // The right hash with another certificate: refused after hashing it.
        let other_pem = PEM.replacen("MII", "MIJ", 1);
        assert!(from_xfcc(&xfcc_for(&other_pem, &digest), &digest).is_none());
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

    #[test]
    fn names_and_values_follow_rfc_4514() {
        assert_eq!(escape_value(" #a,b+c "), r"\ #a\,b\+c\ ");
        assert_eq!(escape_value("a#b"), "a#b");
        assert_eq!(oid_text(&[0x55, 0x04, 0x03]).unwrap(), "2.5.4.3");
        assert_eq!(
            oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]).unwrap(),
            "1.2.840.113549.1.9.1"
        );
        // An unknown attribute type: dotted OID and the hex of the value.
        let value = [0x0c, 0x01, b'x'];
        let tlv = Der::new(&value).next().unwrap();
        assert_eq!(
            attribute(&[0x2b, 0x06, 0x01], &tlv).unwrap(),
            "1.3.6.1=#0c0178"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let der = der();
        for cut in 0..der.len() {
            let _ = parse_certificate(&der[..cut]);
        }
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
        ] {
            assert!(parse_certificate(bytes).is_none());
        }
        assert!(percent_decode("%4").is_none());
        assert!(percent_decode("%zz").is_none());
        assert!(
            pem_to_der(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----").is_none()
        );
    }
}
