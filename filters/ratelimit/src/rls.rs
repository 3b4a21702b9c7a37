//! Envoy's rate-limit service API (`envoy.service.ratelimit.v3`), the
//! messages a global rule exchanges with the service: `RateLimitRequest`
//! encoded, `RateLimitResponse` decoded, in protobuf's wire format.
//!
//! Written by hand rather than generated: the stage needs five messages and a
//! few fields of each, and a protobuf runtime would grow every module that
//! carries this stage. Fields are numbered as in Envoy's
//! `api/envoy/service/ratelimit/v3/rls.proto` and
//! `api/envoy/extensions/common/ratelimit/v3/ratelimit.proto`; unknown fields
//! of a response are skipped, as protobuf requires, and a malformed response
//! is an error, never a panic.
//!
//! ```
//! use palisade_ratelimit::rls::{decode_response, encode_request, Code};
//! let request = encode_request("api", &[vec![("rule", "per_client"), ("client_address", "10.0.0.1")]], 1);
//! assert_eq!(&request[..5], b"\x0a\x03api");
//! // OK, one status: OK, 99 remaining.
//! let response = decode_response(b"\x08\x01\x12\x04\x08\x01\x18\x63").unwrap();
//! assert_eq!(response.overall, Code::Ok);
//! assert_eq!(response.statuses[0].limit_remaining, 99);
//! ```

/// The gRPC service.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// Its one method.
pub const METHOD: &str = "ShouldRateLimit";

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `UNKNOWN` (0), or a value this version does not know.
    Unknown,
    /// `OK` (1): within the limit.
    Ok,
    /// `OVER_LIMIT` (2).
    OverLimit,
}

impl Code {
    fn from_wire(value: u64) -> Code {
        match value {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// `RateLimitResponse.RateLimit`: the limit the service applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentLimit {
    /// `requests_per_unit`.
    pub requests_per_unit: u32,
    /// `unit`, as its length in seconds; `None` for `UNKNOWN`, a month or a
    /// year (no fixed length) or a value this version does not know.
    pub unit_seconds: Option<u64>,
}

/// `RateLimitResponse.DescriptorStatus`: the answer for one descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorStatus {
    /// `code`.
    pub code: Code,
    /// `current_limit`, when the service has a limit for the descriptor.
    pub current_limit: Option<CurrentLimit>,
    /// `limit_remaining`.
    pub limit_remaining: u32,
    /// `duration_until_reset`, in milliseconds (rounded up).
    pub reset_ms: Option<u64>,
}

impl Default for DescriptorStatus {
    fn default() -> Self {
        DescriptorStatus {
            code: Code::Unknown,
            current_limit: None,
            limit_remaining: 0,
            reset_ms: None,
        }
    }
}

/// `RateLimitResponse`: the overall answer and one status per descriptor,
/// in the order of the request's descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `overall_code`.
    pub overall: Code,
    /// `statuses`.
    pub statuses: Vec<DescriptorStatus>,
}

/// Why a response could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The message ends inside a field.
    Truncated,
    /// A varint longer than ten bytes.
    BadVarint,
    /// A wire type protobuf does not define (or a deprecated group).
    BadWireType,
}

// ------------------------------------------------------------------ encode

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // The low seven bits, with the continuation bit: always below 0x100.
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

/// A length-delimited field (wire type 2): `tag`, length, bytes.
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn entry_len(key: &str, value: &str) -> usize {
    1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(value.len() as u64) + value.len()
}

/// `RateLimitRequest { domain, descriptors, hits_addend }`, each descriptor
/// a list of `(key, value)` entries. `hits_addend` 0 is omitted (the service
/// then counts 1).
pub fn encode_request<K, V>(domain: &str, descriptors: &[Vec<(K, V)>], hits_addend: u32) -> Vec<u8>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = Vec::with_capacity(64);
    put_bytes(&mut out, 1, domain.as_bytes());
    for descriptor in descriptors {
        // RateLimitDescriptor { repeated Entry entries = 1 }, Entry { key = 1, value = 2 }.
        let len: usize = descriptor
            .iter()
            .map(|(k, v)| {
                let e = entry_len(k.as_ref(), v.as_ref());
                1 + varint_len(e as u64) + e
            })
            .sum();
        put_varint(&mut out, 2 << 3 | 2);
        put_varint(&mut out, len as u64);
        for (key, value) in descriptor {
            let (key, value) = (key.as_ref(), value.as_ref());
            put_varint(&mut out, 1 << 3 | 2);
            put_varint(&mut out, entry_len(key, value) as u64);
            put_bytes(&mut out, 1, key.as_bytes());
            put_bytes(&mut out, 2, value.as_bytes());
        }
    }
    if hits_addend > 0 {
        put_varint(&mut out, 3 << 3);
        put_varint(&mut out, u64::from(hits_addend));
    }
    out
}

// ------------------------------------------------------------------ decode

/// One field of a message, as read off the wire.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed 32- and 64-bit values: nothing here reads them.
    Fixed,
}

/// Reads the fields of one message, in order.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { rest: bytes }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&byte, rest) = self.rest.split_first().ok_or(DecodeError::Truncated)?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
        if n > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    /// The next field's number and value, `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError::BadWireType),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// `RateLimit.Unit` as seconds.
fn unit_seconds(unit: u64) -> Option<u64> {
    match unit {
        1 => Some(1),
        2 => Some(60),
        3 => Some(3600),
        4 => Some(86_400),
        7 => Some(604_800),
        _ => None,
    }
}

fn decode_limit(bytes: &[u8]) -> Result<CurrentLimit, DecodeError> {
    let mut limit = CurrentLimit::default();
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            (1, Value::Varint(v)) => limit.requests_per_unit = u32::try_from(v).unwrap_or(u32::MAX),
            (2, Value::Varint(v)) => limit.unit_seconds = unit_seconds(v),
            _ => {}
        }
    }
    Ok(limit)
}

/// `google.protobuf.Duration` in milliseconds, rounded up; negative is 0.
fn decode_duration_ms(bytes: &[u8]) -> Result<u64, DecodeError> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            // int64 and int32 are two's complement in a varint.
            (1, Value::Varint(v)) => seconds = v as i64,
            (2, Value::Varint(v)) => nanos = i64::from(v as i32),
            _ => {}
        }
    }
    let seconds = u64::try_from(seconds).unwrap_or(0);
    let nanos = u64::try_from(nanos).unwrap_or(0);
    Ok(seconds
        .saturating_mul(1000)
        .saturating_add(nanos.div_ceil(1_000_000)))
}

fn decode_status(bytes: &[u8]) -> Result<DescriptorStatus, DecodeError> {
    let mut status = DescriptorStatus::default();
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            (1, Value::Varint(v)) => status.code = Code::from_wire(v),
            (2, Value::Bytes(b)) => status.current_limit = Some(decode_limit(b)?),
            (3, Value::Varint(v)) => status.limit_remaining = u32::try_from(v).unwrap_or(u32::MAX),
            (4, Value::Bytes(b)) => status.reset_ms = Some(decode_duration_ms(b)?),
            _ => {}
        }
    }
    Ok(status)
}

/// Decodes a `RateLimitResponse`.
pub fn decode_response(bytes: &[u8]) -> Result<Response, DecodeError> {
    let mut response = Response {
        overall: Code::Unknown,
        statuses: Vec::new(),
    };
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            (1, Value::Varint(v)) => response.overall = Code::from_wire(v),
            (2, Value::Bytes(b)) => response.statuses.push(decode_status(b)?),
            _ => {}
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request as `protoc --encode=envoy.service.ratelimit.v3.RateLimitRequest`
    /// writes it for `domain: "api" descriptors { entries { key: "rule" value:
    /// "r" } entries { key: "k" value: "v" } } hits_addend: 300`.
    #[test]
    fn a_request_encodes_as_protoc_would() {
        let bytes = encode_request("api", &[vec![("rule", "r"), ("k", "v")]], 300);
        let expected: &[u8] = b"\x0a\x03api\
            \x12\x13\x0a\x09\x0a\x04rule\x12\x01r\x0a\x06\x0a\x01k\x12\x01v\
            \x18\xac\x02";
        assert_eq!(bytes, expected);
        // hits_addend 0 and no descriptors: only the domain.
        assert_eq!(encode_request::<&str, &str>("d", &[], 0), b"\x0a\x01d");
        // Two descriptors stay two, in order.
        let two = encode_request("d", &[vec![("a", "1")], vec![("b", "2")]], 1);
        assert_eq!(
            two,
            b"\x0a\x01d\x12\x08\x0a\x06\x0a\x01a\x12\x011\x12\x08\x0a\x06\x0a\x01b\x12\x012\x18\x01"
        );
    }

    #[test]
    fn long_values_get_multi_byte_lengths() {
        let value = "x".repeat(200);
        let bytes = encode_request("d", &[vec![("k", value.as_str())]], 1);
        // entry: 0x0a 0x01 'k' (3 bytes) + 0x12 0xc8 0x01 + 200 = 206 bytes.
        let entry = [&b"\x0a\x01k\x12\xc8\x01"[..], value.as_bytes()].concat();
        let descriptor = [&b"\x0a\xce\x01"[..], &entry].concat();
        let expected = [&b"\x0a\x01d\x12\xd1\x01"[..], &descriptor, b"\x18\x01"].concat();
        assert_eq!(bytes, expected);
    }

    /// A response as Envoy's reference service sends it: OVER_LIMIT, one
    /// status with a limit of 10 per minute, 0 remaining, reset in 12.001 s,
    /// and fields this decoder ignores (a response header, raw_body).
    #[test]
    fn a_response_decodes_with_unknown_fields_skipped() {
        let status: &[u8] =
            b"\x08\x02\x12\x04\x08\x0a\x10\x02\x18\x00\x22\x06\x08\x0c\x10\xc0\x84\x3d";
        let mut bytes = vec![0x08, 0x02, 0x12, status.len() as u8];
        bytes.extend_from_slice(status);
        bytes.extend_from_slice(b"\x1a\x05\x0a\x01a\x12\x00"); // response_headers_to_add
        bytes.extend_from_slice(b"\x2a\x02hi"); // raw_body
        bytes.extend_from_slice(b"\x3d\x01\x02\x03\x04"); // an unknown fixed32 field 7
        let response = decode_response(&bytes).unwrap();
        assert_eq!(response.overall, Code::OverLimit);
        assert_eq!(
            response.statuses,
            vec![DescriptorStatus {
                code: Code::OverLimit,
                current_limit: Some(CurrentLimit {
                    requests_per_unit: 10,
                    unit_seconds: Some(60)
                }),
                limit_remaining: 0,
                reset_ms: Some(12_001),
            }]
        );
    }

    #[test]
    fn statuses_keep_their_order_and_defaults() {
        // Two statuses: OK without a limit, and an empty one (all defaults).
        let response = decode_response(b"\x08\x01\x12\x02\x08\x01\x12\x00").unwrap();
        assert_eq!(response.statuses.len(), 2);
        assert_eq!(response.statuses[0].code, Code::Ok);
        assert_eq!(response.statuses[0].current_limit, None);
        assert_eq!(response.statuses[1], DescriptorStatus::default());
        // An empty message is a valid response: UNKNOWN, no statuses.
        let empty = decode_response(b"").unwrap();
        assert_eq!((empty.overall, empty.statuses.len()), (Code::Unknown, 0));
    }

    #[test]
    fn units_and_durations() {
        for (unit, seconds) in [
            (0, None),
            (1, Some(1)),
            (2, Some(60)),
            (3, Some(3600)),
            (4, Some(86_400)),
            (5, None),
            (6, None),
            (7, Some(604_800)),
            (99, None),
        ] {
            assert_eq!(unit_seconds(unit), seconds, "{unit}");
        }
        assert_eq!(decode_duration_ms(b"\x08\x05").unwrap(), 5000);
        assert_eq!(
            decode_duration_ms(b"\x10\x01").unwrap(),
            1,
            "1 ns rounds up"
        );
        assert_eq!(decode_duration_ms(b"").unwrap(), 0);
        // seconds = -1 (ten-byte varint): no time at all.
        let negative = b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
        assert_eq!(decode_duration_ms(negative).unwrap(), 0);
        // An unknown enum value is UNKNOWN, not an error.
        let r = decode_response(b"\x08\x07").unwrap();
        assert_eq!(r.overall, Code::Unknown);
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: [(&[u8], DecodeError); 6] = [
            (b"\x08", DecodeError::Truncated),
            (b"\x12\x05\x08\x01", DecodeError::Truncated),
            (b"\x12\x02\x12\x05", DecodeError::Truncated),
            (
                b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                DecodeError::BadVarint,
            ),
            (b"\x0b", DecodeError::BadWireType),
            (b"\x0e\x00", DecodeError::BadWireType),
        ];
        for (bytes, error) in cases {
            assert_eq!(decode_response(bytes), Err(error), "{bytes:?}");
        }
    }

    #[test]
    fn encode_then_decode_varints() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            assert_eq!(Fields::new(&out).varint().unwrap(), value);
        }
    }
}
