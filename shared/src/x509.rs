//! X.509 certificates, read as far as the policies need them: subject and
//! issuer (RFC 4514, as Envoy prints them), serial number, validity, and the
//! DNS and URI subject alternative names.
//!
//! Envoy gives a module the peer certificate's subject, first SANs and
//! SHA-256 digest as `connection.*` attributes, and the whole certificate
//! as `connection.peer_certificate` (PEM); the issuer, the serial number and
//! every SAN are only in the certificate itself. Nothing here checks a
//! signature or a chain: Envoy validated the certificate during the
//! handshake; this only reads what it validated.
//!
//! ```
//! use palisade_shared::x509;
//! assert!(x509::parse(b"not a certificate").is_none());
//! assert_eq!(x509::pem_to_der(b"no PEM here"), None);
//! ```

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::time::unix_millis_from_civil;

/// What the policies read of a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Certificate {
    /// The subject's distinguished name, RFC 4514 (Envoy's format).
    pub subject: String,
    /// The issuer's distinguished name, RFC 4514.
    pub issuer: String,
    /// The serial number, upper-case hex without separators or sign padding.
    pub serial_number: String,
    /// `notBefore`, milliseconds since the epoch.
    pub not_before_ms: Option<i64>,
    /// `notAfter`, milliseconds since the epoch.
    pub not_after_ms: Option<i64>,
    /// The `dNSName` subject alternative names, in order.
    pub dns_sans: Vec<String>,
    /// The `uniformResourceIdentifier` subject alternative names (SPIFFE
    /// IDs), in order.
    pub uri_sans: Vec<String>,
}

/// The SHA-256 of a DER certificate, lower-case hex: what Envoy's
/// `connection.sha256_peer_certificate_digest` gives.
pub fn sha256_hex(der: &[u8]) -> String {
    hex(&Sha256::digest(der), false)
}

/// Bytes as hex, upper or lower case.
pub fn hex(bytes: &[u8], upper: bool) -> String {
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

/// Hex (either case) as bytes; `None` when it is not an even number of hex digits.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| {
            let digit = |b: u8| char::from(b).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// Decodes `%XX` escapes (a URL-encoded PEM, as Envoy forwards it).
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
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
pub fn pem_to_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let (_, rest) = text.split_once("-----BEGIN CERTIFICATE-----")?;
    let (body, _) = rest.split_once("-----END CERTIFICATE-----")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The certificate in a PEM text that may be URL-encoded (Envoy's
/// `connection.peer_certificate` and `x-forwarded-client-cert` write it so).
pub fn der_from_pem_text(text: &[u8]) -> Option<Vec<u8>> {
    if text.contains(&b'%') {
        pem_to_der(&percent_decode(std::str::from_utf8(text).ok()?)?)
    } else {
        pem_to_der(text)
    }
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

/// The parts of a DER certificate the policies read; `None` when it does
/// not parse.
pub fn parse(der: &[u8]) -> Option<Certificate> {
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
    let subject = fields.expect(SEQUENCE)?;
    let _key = fields.expect(SEQUENCE)?;
    let mut times = Der::new(validity.content);
    let not_before = times.next().and_then(|t| time_ms(&t));
    let not_after = times.next().and_then(|t| time_ms(&t));
    let mut certificate = Certificate {
        subject: distinguished_name(subject.content)?,
        issuer: distinguished_name(issuer.content)?,
        // Sign padding (a leading zero byte before a byte with its top bit
        // set) is not part of the number.
        serial_number: hex(
            match serial {
                [0, rest @ ..] if !rest.is_empty() => rest,
                all => all,
            },
            true,
        ),
        not_before_ms: not_before,
        not_after_ms: not_after,
        ..Certificate::default()
    };
    // issuerUniqueID [1], subjectUniqueID [2], extensions [3].
    while let Some(field) = fields.next() {
        if field.tag == EXTENSIONS_TAG {
            subject_alternative_names(field.content, &mut certificate)?;
        }
    }
    Some(certificate)
}

/// Reads the SAN extension (2.5.29.17) out of `[3] Extensions`.
fn subject_alternative_names(explicit: &[u8], out: &mut Certificate) -> Option<()> {
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
    let list = Der::new(explicit).expect(SEQUENCE)?;
    let mut extensions = Der::new(list.content);
    while !extensions.rest.is_empty() {
        let extension = extensions.expect(SEQUENCE)?;
        let mut parts = Der::new(extension.content);
        let oid = parts.expect(OID)?;
        let mut value = parts.next()?;
        if value.tag == BOOLEAN {
            value = parts.next()?;
        }
        if oid.content != SAN_OID || value.tag != OCTET_STRING {
            continue;
        }
        let names = Der::new(value.content).expect(SEQUENCE)?;
        let mut general = Der::new(names.content);
        while !general.rest.is_empty() {
            let name = general.next()?;
            // IA5String content: ASCII by definition; anything else is not
            // a name this module reports.
            let text = || {
                std::str::from_utf8(name.content)
                    .ok()
                    .filter(|t| t.is_ascii())
                    .map(str::to_string)
            };
            match name.tag {
                DNS_NAME => out.dns_sans.extend(text()),
                URI => out.uri_sans.extend(text()),
                _ => {}
            }
        }
    }
    Some(())
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION_TAG: u8 = 0xa0;
const EXTENSIONS_TAG: u8 = 0xa3;
/// `GeneralName` choices, context-specific and implicit: `[2] dNSName`,
/// `[6] uniformResourceIdentifier`.
const DNS_NAME: u8 = 0x82;
const URI: u8 = 0x86;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with openssl: a P-256 client certificate for `CN=checkout,O=Palisade
    /// Test`, serial 0x0BADC0DE, issued by `CN=Palisade Test CA,O=Palisade
    /// Test`, with URI, DNS, IP and email SANs mixed.
    const PEM: &str = include_str!("fixtures/x509-client.pem");
    const SHA256: &str = "26ea333a4f225183024d92c4cd54bc1cdc486c643896f3883b3b4beeecd6f350";

    fn der() -> Vec<u8> {
        pem_to_der(PEM.as_bytes()).unwrap()
    }

    #[test]
    fn reads_names_serial_validity_and_every_san() {
        let c = parse(&der()).unwrap();
        assert_eq!(c.subject, "CN=checkout,O=Palisade Test");
        assert_eq!(c.issuer, "CN=Palisade Test CA,O=Palisade Test");
        assert_eq!(c.serial_number, "0BADC0DE");
        assert_eq!(
            c.uri_sans,
            [
                "spiffe://cluster.local/ns/shop/sa/checkout",
                "https://second.example/id"
            ]
        );
        assert_eq!(c.dns_sans, ["checkout.shop.svc", "checkout.example"]);
        let (nb, na) = (c.not_before_ms.unwrap(), c.not_after_ms.unwrap());
        assert!(na - nb >= 3649 * 86_400_000, "{nb} {na}");
        assert_eq!(sha256_hex(&der()), SHA256);
    }

    #[test]
    fn pem_text_as_envoy_writes_it() {
        let encoded: String = PEM
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        assert_eq!(der_from_pem_text(encoded.as_bytes()).unwrap(), der());
        assert_eq!(der_from_pem_text(PEM.as_bytes()).unwrap(), der());
    }

    #[test]
    fn hex_both_ways() {
        assert_eq!(hex(&[0x0b, 0xad], true), "0BAD");
        assert_eq!(from_hex("0bAD"), Some(vec![0x0b, 0xad]));
        assert_eq!(from_hex("0ba"), None);
        assert_eq!(from_hex("zz"), None);
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
            let _ = parse(&der[..cut]);
        }
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
        ] {
            assert!(parse(bytes).is_none());
        }
        assert!(percent_decode("%4").is_none());
        assert!(percent_decode("%zz").is_none());
        assert!(
            pem_to_der(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----").is_none()
        );
    }
}
