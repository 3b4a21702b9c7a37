//! JSON-RPC 2.0 messages as MCP uses them: a POST body is one request,
//! notification or response (or, in the 2025-03-26 revision, a batch of
//! them). Each field is checked; a message that breaks a rule gets the
//! JSON-RPC error it deserves, with its `id` when it has a valid one.

use serde_json::{Map, Value};

use crate::json;

/// `-32700`: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// `-32600`: the JSON is not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// `-32602`: the parameters are not valid.
pub const INVALID_PARAMS: i64 = -32602;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request: a method and an id; it gets a response.
    Request,
    /// A notification: a method and no id.
    Notification,
    /// A response to a request the server sent: an id and a result or error.
    Response,
}

/// One valid message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// What it is.
    pub kind: Kind,
    /// Its id (a string or an integer), for requests and responses.
    pub id: Option<Value>,
    /// Its method (empty for a response).
    pub method: String,
    /// Its `params` object, when it has one.
    pub params: Option<Map<String, Value>>,
}

impl Message {
    /// The string parameter `name`.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        self.params.as_ref()?.get(name)?.as_str()
    }

    /// The parameter `name`.
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.as_ref()?.get(name)
    }
}

/// A message that breaks a rule, and what to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The JSON-RPC error code.
    pub code: i64,
    /// What is wrong, for the client (never echoes its input).
    pub message: &'static str,
    /// The id to answer with (`null` when the message had no valid one).
    pub id: Value,
}

impl Invalid {
    fn request(message: &'static str, id: Value) -> Self {
        Invalid {
            code: INVALID_REQUEST,
            message,
            id,
        }
    }
}

/// A POST body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One message.
    Single(Message),
    /// A JSON array of messages (each checked).
    Batch(Vec<Result<Message, Invalid>>),
}

/// Whether a JSON value is a valid JSON-RPC id for MCP: a string or an
/// integer (MCP forbids `null`; fractions are not ids).
fn valid_id(value: &Value) -> bool {
    value.is_string() || value.is_i64() || value.is_u64()
}

/// Checks one message.
pub fn classify(value: Value) -> Result<Message, Invalid> {
    let Value::Object(mut object) = value else {
        return Err(Invalid::request(
            "a message must be a JSON object",
            Value::Null,
        ));
    };
    let id = object.remove("id");
    let answer_id = id.clone().filter(valid_id).unwrap_or(Value::Null);
    if let Some(id) = &id {
        if !valid_id(id) {
            return Err(Invalid::request(
                "`id` must be a string or an integer",
                Value::Null,
            ));
        }
    }
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Invalid::request("`jsonrpc` must be \"2.0\"", answer_id));
    }
    let params = match object.remove("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(Invalid::request("`params` must be an object", answer_id)),
    };
    match object.remove("method") {
        Some(Value::String(method)) => {
            if object.contains_key("result") || object.contains_key("error") {
                return Err(Invalid::request(
                    "a request has no `result` or `error`",
                    answer_id,
                ));
            }
            if method.is_empty() {
                return Err(Invalid::request("`method` must not be empty", answer_id));
            }
            let kind = if id.is_some() {
                Kind::Request
            } else {
                Kind::Notification
            };
            Ok(Message {
                kind,
                id,
                method,
                params,
            })
        }
        Some(_) => Err(Invalid::request("`method` must be a string", answer_id)),
        None => {
            let result = object.contains_key("result");
            let error = object.get("error");
            if id.is_none() {
                return Err(Invalid::request(
                    "a message needs a `method`, or an `id` and a `result` or `error`",
                    Value::Null,
                ));
            }
            match (result, error) {
                (true, None) => {}
                (false, Some(Value::Object(e)))
                    if e.get("code").is_some_and(|c| c.is_i64())
                        && e.get("message").is_some_and(Value::is_string) => {}
                (false, Some(_)) => {
                    return Err(Invalid::request(
                        "`error` needs an integer `code` and a string `message`",
                        answer_id,
                    ))
                }
                _ => {
                    return Err(Invalid::request(
                        "a response has exactly one of `result` and `error`",
                        answer_id,
                    ))
                }
            }
            if params.is_some() {
                return Err(Invalid::request("a response has no `params`", answer_id));
            }
            Ok(Message {
                kind: Kind::Response,
                id,
                method: String::new(),
                params: None,
            })
        }
    }
}

/// Parses a POST body (at most `max_depth` levels of nesting).
pub fn parse_body(body: &[u8], max_depth: usize) -> Result<Body, Invalid> {
    if json::depth_exceeds(body, max_depth) {
        return Err(Invalid::request(
            "the message nests too deeply",
            Value::Null,
        ));
    }
    let value = json::parse_strict(body).map_err(|_| Invalid {
        code: PARSE_ERROR,
        message: "the body is not valid JSON (or an object repeats a key)",
        id: Value::Null,
    })?;
    match value {
        Value::Array(items) if items.is_empty() => {
            Err(Invalid::request("an empty batch", Value::Null))
        }
        Value::Array(items) => Ok(Body::Batch(items.into_iter().map(classify).collect())),
        other => classify(other).map(Body::Single),
    }
}

/// An id as text for logs and the decision: a string as is, an integer in
/// decimal.
pub fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.chars().take(128).collect()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Result<Message, Invalid> {
        match parse_body(text.as_bytes(), 8)? {
            Body::Single(m) => Ok(m),
            Body::Batch(_) => panic!("a batch"),
        }
    }

    #[test]
    fn valid_messages() {
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}"#)
            .unwrap();
        assert_eq!(
            (m.kind, m.id.clone(), m.method.as_str()),
            (Kind::Request, Some(json!(1)), "tools/call")
        );
        assert_eq!(m.param_str("name"), Some("search"));
        let n = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!((n.kind, n.id), (Kind::Notification, None));
        let r = one(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!((r.kind, r.method.as_str()), (Kind::Response, ""));
        let e = one(r#"{"jsonrpc":"2.0","id":"a","error":{"code":-1,"message":"no"}}"#).unwrap();
        assert_eq!(e.kind, Kind::Response);
        assert!(one(r#"{"jsonrpc":"2.0","id":-5,"method":"ping"}"#).is_ok());
    }

    #[test]
    fn each_field_wrong() {
        let cases: &[(&str, i64, Value)] = &[
            ("", PARSE_ERROR, Value::Null),
            ("{", PARSE_ERROR, Value::Null),
            ("not json", PARSE_ERROR, Value::Null),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
                PARSE_ERROR,
                Value::Null,
            ),
            ("[]", INVALID_REQUEST, Value::Null),
            ("5", INVALID_REQUEST, Value::Null),
            (r#""x""#, INVALID_REQUEST, Value::Null),
            (r#"{"id":1,"method":"ping"}"#, INVALID_REQUEST, json!(1)),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                INVALID_REQUEST,
                json!(1),
            ),
            (
                r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
                INVALID_REQUEST,
                json!(1),
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":5}"#,
                INVALID_REQUEST,
                json!("x"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":""}"#,
                INVALID_REQUEST,
                json!("x"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"a","params":[1]}"#,
                INVALID_REQUEST,
                json!("x"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"a","result":{}}"#,
                INVALID_REQUEST,
                json!("x"),
            ),
            (r#"{"jsonrpc":"2.0"}"#, INVALID_REQUEST, Value::Null),
            (
                r#"{"jsonrpc":"2.0","result":{}}"#,
                INVALID_REQUEST,
                Value::Null,
            ),
            (r#"{"jsonrpc":"2.0","id":2}"#, INVALID_REQUEST, json!(2)),
            (
                r#"{"jsonrpc":"2.0","id":2,"result":1,"error":{"code":1,"message":"m"}}"#,
                INVALID_REQUEST,
                json!(2),
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"error":{"code":"1","message":"m"}}"#,
                INVALID_REQUEST,
                json!(2),
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"error":"boom"}"#,
                INVALID_REQUEST,
                json!(2),
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"result":{},"params":{}}"#,
                INVALID_REQUEST,
                json!(2),
            ),
            (r#"[[[[[[[[[1]]]]]]]]]"#, INVALID_REQUEST, Value::Null),
        ];
        for (text, code, id) in cases {
            let err = parse_body(text.as_bytes(), 8).unwrap_err();
            assert_eq!((err.code, &err.id), (*code, id), "{text}: {}", err.message);
        }
    }

    #[test]
    fn batches_check_each_member() {
        let Body::Batch(items) = parse_body(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2},7]"#,
            8,
        )
        .unwrap() else {
            panic!()
        };
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().id, json!(2));
        assert!(items[2].is_err());
    }

    #[test]
    fn ids_as_text() {
        assert_eq!(id_text(&json!(7)).as_deref(), Some("7"));
        assert_eq!(id_text(&json!("abc")).as_deref(), Some("abc"));
        assert_eq!(id_text(&Value::Null), None);
    }
}
