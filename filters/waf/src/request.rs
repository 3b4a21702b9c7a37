//! Turning a request into the named values that rules inspect.
//!
//! Query and form arguments are split and decoded once (`+` and `%XX`), JSON
//! bodies are walked (every key and every string, nested), multipart bodies
//! give their field names, values and file names, XML gives its text and
//! attribute values, and any other body is inspected as raw text.

use std::borrow::Cow;

use crate::json;
use crate::rules::Targets;
use crate::transform::{self, form_decode, Transform, TransformSet};

/// The parts of a request the WAF sees before the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, with its query string, as sent.
    pub path: &'a str,
    /// `:authority` (or `Host`).
    pub authority: &'a str,
    /// Envoy's route name, empty when unknown.
    pub route_name: &'a str,
    /// Every request header (names in lower case, as Envoy gives them),
    /// pseudo-headers included or not.
    pub headers: &'a [(String, String)],
}

impl<'a> RequestHead<'a> {
    /// The first header with this name (any case).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        palisade_shared::headers::first_value(self.headers, name)
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &'a str {
        self.path.split_once('?').map_or(self.path, |(p, _)| p)
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.path.split_once('?').map(|(_, q)| q)
    }
}

/// Where a value is, for the decision. Spelled out only when a rule
/// matches: most values match nothing, and a string per value would cost
/// an allocation each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location<'a> {
    /// Spelled as is: `path`, `json.a.b[0]`.
    Is(&'a str),
    /// A kind of place followed by the field's name: `args` gives `args:q`.
    Named(&'static str),
    /// A key or string of a JSON body, by the offset of its opening quote:
    /// its path is spelled from the body only when a rule matched it
    /// ([`crate::json::paths`], which the inspection calls once the body's
    /// walk is over). [`Field::location`] alone can only say `json`.
    JsonAt(usize),
}

/// One value to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// Which kind of request part it is.
    pub target: Targets,
    /// The parameter, header or cookie name it belongs to (for exclusions).
    pub name: Cow<'a, str>,
    /// Where it is (see [`Field::location`]).
    pub location: Location<'a>,
    /// The value.
    pub value: Cow<'a, str>,
    /// The transformations that could change the value, when the parser
    /// worked them out while finding it (`None`: the scan does).
    pub transforms: Option<TransformSet>,
}

impl Field<'_> {
    /// Where the value is, for the decision: `args:q`, `header:user-agent`,
    /// ...; `json` for a JSON body's value, whose path needs the body
    /// ([`Location::JsonAt`]).
    pub fn location(&self) -> String {
        match self.location {
            Location::Is(s) => bounded_location(s.to_string()),
            Location::Named(kind) => bounded_location(format!("{kind}:{}", self.name)),
            Location::JsonAt(_) => "json".to_string(),
        }
    }
}

/// The longest location reported, in bytes: names and JSON paths come from
/// the client, and the decision carries one location per matched rule into
/// the access log and the filter state.
pub const MAX_LOCATION_BYTES: usize = 128;

/// `location`, cut to [`MAX_LOCATION_BYTES`] (at a character boundary) and
/// marked with `...` when it is longer.
pub fn bounded_location(mut location: String) -> String {
    if location.len() > MAX_LOCATION_BYTES {
        let mut end = MAX_LOCATION_BYTES;
        while !location.is_char_boundary(end) {
            end -= 1;
        }
        location.truncate(end);
        location.push_str("...");
    }
    location
}

/// Headers that are never inspected as `other_headers`: credentials (their
/// values must not reach a log, and are opaque), cookies (parsed apart),
/// and pseudo-headers or framing that Envoy itself produces or validates.
const SKIPPED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "x-request-id",
    "x-forwarded-proto",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-internal",
];

/// Collects the fields of the request head: method, path, query arguments,
/// cookies and headers. `selected` are the lower-case header names
/// inspected as [`Targets::HEADERS`].
pub fn head_fields<'a>(head: &RequestHead<'a>, selected: &[String], out: &mut Vec<Field<'a>>) {
    out.push(Field {
        target: Targets::METHOD,
        name: Cow::Borrowed("method"),
        location: Location::Is("method"),
        value: Cow::Borrowed(head.method),
        transforms: None,
    });
    out.push(Field {
        target: Targets::PATH,
        name: Cow::Borrowed("path"),
        location: Location::Is("path"),
        value: Cow::Borrowed(head.path_only()),
        transforms: None,
    });
    if let Some(q) = head.query() {
        out.push(Field {
            target: Targets::QUERY,
            name: Cow::Borrowed("query"),
            location: Location::Is("query"),
            value: Cow::Borrowed(q),
            transforms: None,
        });
        form_fields(q, FormSource::Query, out);
    }
    for (name, value) in head.headers {
        if name.starts_with(':') {
            continue;
        }
        if name.eq_ignore_ascii_case("cookie") {
            cookie_fields(value, out);
            continue;
        }
        // Envoy gives header names in lower case already.
        let lower: Cow<'a, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name.as_str())
        };
        let target = if selected.iter().any(|s| *s == lower) {
            Targets::HEADERS
        } else if SKIPPED_HEADERS.contains(&lower.as_ref()) {
            continue;
        } else {
            Targets::OTHER_HEADERS
        };
        out.push(Field {
            target,
            location: Location::Named("header"),
            name: lower,
            value: Cow::Borrowed(value.as_str()),
            transforms: None,
        });
    }
}

fn cookie_fields<'a>(header: &'a str, out: &mut Vec<Field<'a>>) {
    for pair in header.split(';') {
        let pair = pair.trim_start();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = name.trim();
        out.push(Field {
            target: Targets::COOKIE_NAMES,
            name: Cow::Borrowed(name),
            location: Location::Named("cookie_names"),
            value: Cow::Borrowed(name),
            transforms: None,
        });
        if !value.is_empty() {
            out.push(Field {
                target: Targets::COOKIES,
                name: Cow::Borrowed(name),
                location: Location::Named("cookie"),
                value: form_decode(value),
                transforms: None,
            });
        }
    }
}

/// Where form arguments come from: the query string or a form body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormSource {
    /// `args:name`, `args_names:name`.
    Query,
    /// `body:name`, `body_names:name`.
    Body,
}

/// Splits `a=1&b=2` into argument names and values (decoded once).
pub fn form_fields<'a>(query: &'a str, source: FormSource, out: &mut Vec<Field<'a>>) {
    let (names, values) = match source {
        FormSource::Query => ("args_names", "args"),
        FormSource::Body => ("body_names", "body"),
    };
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(raw_name);
        out.push(Field {
            target: Targets::ARG_NAMES,
            location: Location::Named(names),
            name: name.clone(),
            value: name.clone(),
            transforms: None,
        });
        if !raw_value.is_empty() {
            out.push(Field {
                target: Targets::ARGS,
                location: Location::Named(values),
                name,
                value: form_decode(raw_value),
                transforms: None,
            });
        }
    }
}

/// How a body is read, from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json` and `+json` types.
    Json,
    /// `multipart/form-data` with this boundary.
    Multipart(String),
    /// `application/xml`, `text/xml` and `+xml` types.
    Xml,
    /// Anything else, or no content type: raw text (and form arguments when
    /// it parses as a form).
    Raw,
}

impl BodyKind {
    /// Chooses the parser for a content type.
    pub fn from_content_type(content_type: Option<&str>) -> BodyKind {
        let Some(ct) = content_type else {
            return BodyKind::Raw;
        };
        let lower = ct.to_ascii_lowercase();
        let essence = lower.split(';').next().unwrap_or("").trim();
        if essence == "application/x-www-form-urlencoded" {
            BodyKind::Form
        } else if essence == "application/json" || essence.ends_with("+json") {
            BodyKind::Json
        } else if essence == "multipart/form-data" || essence == "multipart/mixed" {
            match boundary(ct) {
                Some(b) => BodyKind::Multipart(b),
                None => BodyKind::Raw,
            }
        } else if essence == "application/xml" || essence == "text/xml" || essence.ends_with("+xml")
        {
            BodyKind::Xml
        } else {
            BodyKind::Raw
        }
    }
}

fn boundary(content_type: &str) -> Option<String> {
    for param in content_type.split(';').skip(1) {
        let (k, v) = param.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim().trim_matches('"');
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Calls `emit` with each field of a body. A JSON body is walked in place
/// (no tree is built, strings without escapes are not copied); one that does
/// not parse is also inspected as raw text.
pub fn body_fields(kind: &BodyKind, body: &str, emit: &mut dyn FnMut(&Field<'_>)) {
    let mut out = Vec::new();
    match kind {
        BodyKind::Form => form_fields(body, FormSource::Body, &mut out),
        BodyKind::Json => {
            let parsed = json::walk(body, &mut |found, stack| {
                let text: &str = &found.text;
                let (target, name) = if found.is_key {
                    (Targets::ARG_NAMES, text)
                } else {
                    (Targets::ARGS, json::key_of(stack))
                };
                emit(&Field {
                    target,
                    name: Cow::Borrowed(name),
                    location: Location::JsonAt(found.at),
                    value: Cow::Borrowed(text),
                    transforms: Some(found.transforms),
                });
            });
            if !parsed {
                // Not JSON after all: inspect what was sent.
                raw_fields(body, &mut out);
            }
        }
        BodyKind::Multipart(b) => multipart_fields(body, b, &mut out),
        BodyKind::Xml => {
            xml_fields(body, &mut out);
            out.push(Field {
                target: Targets::BODY,
                name: Cow::Borrowed("body"),
                location: Location::Is("body"),
                value: Cow::Borrowed(body),
                transforms: None,
            });
        }
        BodyKind::Raw => raw_fields(body, &mut out),
    }
    for field in &out {
        emit(field);
    }
}

fn raw_fields<'a>(body: &'a str, out: &mut Vec<Field<'a>>) {
    // Clients that omit the content type often still send a form.
    let trimmed = body.trim();
    let looks_like_form = trimmed.contains('=')
        && !trimmed.contains('\n')
        && !trimmed.starts_with('{')
        && !trimmed.starts_with('<')
        && trimmed.split('&').all(|p| {
            p.split_once('=')
                .is_some_and(|(n, _)| !n.is_empty() && !n.contains(' '))
        });
    if looks_like_form {
        form_fields(trimmed, FormSource::Body, out);
    } else if trimmed.starts_with('<') {
        xml_fields(body, out);
    }
    out.push(Field {
        target: Targets::BODY,
        name: Cow::Borrowed("body"),
        location: Location::Is("body"),
        value: Cow::Borrowed(body),
        transforms: None,
    });
}

fn multipart_fields<'a>(body: &'a str, boundary: &str, out: &mut Vec<Field<'a>>) {
    let delimiter = format!("--{boundary}");
    for part in body.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'))
            .unwrap_or(part);
        let (head, content) = match part.find("\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => match part.find("\n\n") {
                Some(i) => (&part[..i], &part[i + 2..]),
                None => (part, ""),
            },
        };
        let content = content
            .strip_suffix("\r\n")
            .or_else(|| content.strip_suffix('\n'))
            .unwrap_or(content);
        let mut name: Option<&str> = None;
        let mut filename: Option<&str> = None;
        for line in head.lines() {
            let Some((h, v)) = line.split_once(':') else {
                continue;
            };
            if !h.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for param in v.split(';').skip(1) {
                let Some((k, val)) = param.split_once('=') else {
                    continue;
                };
                let val = val.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "name" => name = Some(val),
                    "filename" | "filename*" => filename = Some(val),
                    _ => {}
                }
            }
        }
        let field = name.unwrap_or("");
        out.push(Field {
            target: Targets::ARG_NAMES,
            name: Cow::Borrowed(field),
            location: Location::Named("multipart_names"),
            value: Cow::Borrowed(field),
            transforms: None,
        });
        match filename {
            Some(f) => out.push(Field {
                target: Targets::FILES,
                name: Cow::Borrowed(field),
                location: Location::Named("files"),
                value: Cow::Borrowed(f),
                transforms: None,
            }),
            None => out.push(Field {
                target: Targets::ARGS,
                name: Cow::Borrowed(field),
                location: Location::Named("multipart"),
                value: Cow::Borrowed(content),
                transforms: None,
            }),
        }
    }
}

/// XML text and attribute values (a tolerant scanner, not a validating
/// parser: a malformed document is still inspected).
fn xml_fields<'a>(body: &'a str, out: &mut Vec<Field<'a>>) {
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let end = body[i..].find('>').map_or(bytes.len(), |e| i + e);
            let tag = &body[i + 1..end];
            if !tag.starts_with('!') && !tag.starts_with('?') {
                let mut rest = tag;
                while let Some(eq) = rest.find('=') {
                    let after = rest[eq + 1..].trim_start();
                    let quote = after.chars().next();
                    if let Some(q @ ('"' | '\'')) = quote {
                        let inner = &after[1..];
                        let close = inner.find(q).unwrap_or(inner.len());
                        push_xml(&inner[..close], out);
                        rest = &inner[(close + 1).min(inner.len())..];
                    } else {
                        rest = after;
                    }
                }
            }
            i = end + 1;
        } else {
            let end = body[i..].find('<').map_or(bytes.len(), |e| i + e);
            let text = body[i..end].trim();
            if !text.is_empty() {
                push_xml(text, out);
            }
            i = end;
        }
    }
}

/// An XML text or attribute value as the application reads it: the XML
/// parser has resolved its entity and character references (`&amp;lt;`
/// reaches the application as `&lt;`, which a page then shows as `<`).
fn push_xml<'a>(value: &'a str, out: &mut Vec<Field<'a>>) {
    if value.is_empty() {
        return;
    }
    out.push(Field {
        target: Targets::ARGS,
        name: Cow::Borrowed("xml"),
        location: Location::Is("xml"),
        value: transform::apply_one(value, Transform::HtmlEntityDecode),
        transforms: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field as the tests compare it: target, location, value.
    type Seen = (Targets, String, String);

    fn seen(f: &Field<'_>) -> Seen {
        (f.target, f.location(), f.value.to_string())
    }

    /// The fields of a body.
    fn body(kind: &BodyKind, text: &str) -> Vec<Seen> {
        let mut out = Vec::new();
        body_fields(kind, text, &mut |f| out.push(seen(f)));
        out
    }

    fn values(fields: &[Seen], target: Targets) -> Vec<(String, String)> {
        fields
            .iter()
            .filter(|f| f.0 == target)
            .map(|f| (f.1.clone(), f.2.clone()))
            .collect()
    }

    #[test]
    fn head_gives_path_args_cookies_headers() {
        let headers = vec![
            (":path".to_string(), "/x".to_string()),
            ("user-agent".to_string(), "curl/8".to_string()),
            ("x-custom".to_string(), "v".to_string()),
            ("authorization".to_string(), "Bearer secret".to_string()),
            ("cookie".to_string(), "sid=a%20b; theme=dark".to_string()),
        ];
        let head = RequestHead {
            method: "GET",
            path: "/a%2fb?q=hello+world&flag&x=%27",
            authority: "h",
            route_name: "",
            headers: &headers,
        };
        let mut f = Vec::new();
        head_fields(&head, &["user-agent".to_string()], &mut f);
        let f: Vec<Seen> = f.iter().map(seen).collect();
        assert_eq!(
            values(&f, Targets::PATH),
            vec![("path".into(), "/a%2fb".into())]
        );
        assert_eq!(
            values(&f, Targets::ARGS),
            vec![
                ("args:q".into(), "hello world".into()),
                ("args:x".into(), "'".into())
            ]
        );
        assert_eq!(values(&f, Targets::ARG_NAMES).len(), 3);
        assert_eq!(
            values(&f, Targets::HEADERS),
            vec![("header:user-agent".into(), "curl/8".into())]
        );
        assert_eq!(
            values(&f, Targets::OTHER_HEADERS),
            vec![("header:x-custom".into(), "v".into())]
        );
        assert_eq!(
            values(&f, Targets::COOKIES),
            vec![
                ("cookie:sid".into(), "a b".into()),
                ("cookie:theme".into(), "dark".into())
            ]
        );
        assert!(f.iter().all(|x| !x.2.contains("secret")));
    }

    #[test]
    fn json_gives_every_key_and_string_named_after_its_key() {
        // Paths and parsing details: json.rs.
        let mut f = Vec::new();
        body_fields(
            &BodyKind::Json,
            r#"{"a":{"b":["x%41",{"c":"y"}],"n":1},"d":"z"}"#,
            &mut |x| {
                f.push((
                    x.target,
                    x.name.to_string(),
                    x.value.to_string(),
                    match x.location {
                        Location::JsonAt(at) => Some(at),
                        _ => None,
                    },
                    x.transforms,
                ))
            },
        );
        let args: Vec<_> = f.iter().filter(|x| x.0 == Targets::ARGS).collect();
        assert_eq!(
            args.iter()
                .map(|x| (x.1.as_str(), x.2.as_str()))
                .collect::<Vec<_>>(),
            vec![("b", "x%41"), ("c", "y"), ("d", "z")]
        );
        assert_eq!(args[0].3, Some(11));
        assert_eq!(args[0].4, Some(crate::transform::applicable(b"x%41")));
        let names: Vec<_> = f
            .iter()
            .filter(|x| x.0 == Targets::ARG_NAMES)
            .map(|x| (x.1.as_str(), x.2.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("a", "a"), ("b", "b"), ("c", "c"), ("n", "n"), ("d", "d")]
        );
        // Not JSON after all: inspected as raw text.
        let f = body(&BodyKind::Json, "{not json");
        assert_eq!(
            values(&f, Targets::BODY),
            vec![("body".into(), "{not json".into())]
        );
    }

    #[test]
    fn locations_are_bounded() {
        let name = format!("{}\u{e9}", "n".repeat(MAX_LOCATION_BYTES - 6));
        let field = Field {
            target: Targets::ARGS,
            name: Cow::Borrowed(&name),
            location: Location::Named("args"),
            value: Cow::Borrowed("v"),
            transforms: None,
        };
        let location = field.location();
        assert!(location.starts_with("args:nnn") && location.ends_with("n..."));
        assert_eq!(location.len(), MAX_LOCATION_BYTES - 1 + 3);
        assert_eq!(bounded_location("args:q".into()), "args:q");
    }

    #[test]
    fn multipart_gives_fields_and_file_names() {
        let kind = BodyKind::from_content_type(Some("multipart/form-data; boundary=\"XyZ\""));
        assert_eq!(kind, BodyKind::Multipart("XyZ".into()));
        let text = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../a.php\"\r\nContent-Type: text/plain\r\n\r\n<?php ?>\r\n--XyZ--\r\n";
        let f = body(&kind, text);
        assert_eq!(
            values(&f, Targets::ARGS),
            vec![("multipart:title".into(), "hello".into())]
        );
        assert_eq!(
            values(&f, Targets::FILES),
            vec![("files:file".into(), "../a.php".into())]
        );
    }

    #[test]
    fn xml_gives_text_and_attributes() {
        let f = body(
            &BodyKind::from_content_type(Some("application/soap+xml; charset=utf-8")),
            "<?xml version=\"1.0\"?><a x=\"1\" y='two'><b>text</b></a>",
        );
        let args: Vec<String> = values(&f, Targets::ARGS).into_iter().map(|v| v.1).collect();
        assert_eq!(args, vec!["1", "two", "text"]);
        assert_eq!(values(&f, Targets::BODY).len(), 1);
    }

    #[test]
    fn raw_bodies_that_look_like_forms_give_arguments() {
        let f = body(&BodyKind::from_content_type(None), "var=1%27");
        assert_eq!(
            values(&f, Targets::ARGS),
            vec![("body:var".into(), "1'".into())]
        );
        let f = body(
            &BodyKind::from_content_type(Some("text/plain")),
            "just some text",
        );
        assert!(values(&f, Targets::ARGS).is_empty());
        assert_eq!(values(&f, Targets::BODY).len(), 1);
    }
}
