//! What the fuzz targets share: the request text format of the WAF targets,
//! and structure-aware request parts for the targets built on `arbitrary`.
//!
//! The targets themselves are in `fuzz_targets/`; `make fuzz` runs each for
//! `FUZZ_SECONDS`, `make test` for a few seconds (see the Makefile).

use arbitrary::Arbitrary;

/// A request written as text, as the WAF seeds are (`fuzz/seeds.py`):
///
/// ```text
/// METHOD /path?query
/// name: value
/// name: value
///
/// body
/// ```
///
/// Readable seeds mutate into readable requests; anything that does not
/// follow the format still makes a request (the whole first line is the
/// method and path, lines without `:` are headers with an empty value).
#[derive(Debug, Default)]
pub struct TextRequest {
    pub method: String,
    pub path: String,
    pub authority: String,
    /// Lower-case names, as Envoy gives them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TextRequest {
    pub fn parse(data: &[u8]) -> TextRequest {
        let (head, body) = match find(data, b"\n\n") {
            Some(at) => (&data[..at], &data[at + 2..]),
            None => (data, &data[data.len()..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split('\n');
        let first = lines.next().unwrap_or("");
        let (method, path) = first.split_once(' ').unwrap_or((first, "/"));
        let mut request = TextRequest {
            method: method.to_string(),
            path: path.to_string(),
            authority: "api.example.com".to_string(),
            headers: Vec::new(),
            body: body.to_vec(),
        };
        for line in lines {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            if name == "host" || name == ":authority" {
                request.authority = value;
            } else {
                request.headers.push((name, value));
            }
        }
        request
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Header names worth choosing often: the ones the policies read.
const HEADER_NAMES: &[&str] = &[
    "authorization",
    "cookie",
    "content-type",
    "origin",
    "referer",
    "user-agent",
    "x-forwarded-for",
    "forwarded",
    "x-forwarded-client-cert",
    "x-request-id",
    "x-api-key",
    "x-tenant",
    "dpop",
    "content-length",
    "transfer-encoding",
    "accept",
];

/// A header whose name is usually one the policies read.
#[derive(Debug, Clone)]
pub struct Header(pub String, pub String);

impl<'a> Arbitrary<'a> for Header {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let name = if u.ratio(7, 8)? {
            (*u.choose(HEADER_NAMES)?).to_string()
        } else {
            String::arbitrary(u)?.to_ascii_lowercase()
        };
        Ok(Header(name, String::arbitrary(u)?))
    }
}

/// Pairs of owned strings, as the cores take headers.
pub fn header_pairs(headers: &[Header]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|Header(n, v)| (n.clone(), v.clone()))
        .collect()
}
