//! Which requests are LLM calls, what their body asks for, and the body
//! rewritten to an output-token cap.

use std::ops::Range;

use serde::Deserialize;

use crate::json::{members, Member};

/// The API format a call is in, which is also the format of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI and every OpenAI-compatible server (vLLM, Mistral, Ollama, ...).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

impl Provider {
    /// As the audit record and the GenAI conventions (`gen_ai.system`) name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

/// The operation, as the OpenTelemetry GenAI conventions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Chat completions, the Responses API, Anthropic messages.
    Chat,
    /// Legacy text completions.
    TextCompletion,
    /// Embeddings: input tokens only.
    Embeddings,
}

impl Operation {
    /// `gen_ai.operation.name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::TextCompletion => "text_completion",
            Operation::Embeddings => "embeddings",
        }
    }
}

/// One LLM API endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    /// Its format.
    pub provider: Provider,
    /// What it does.
    pub operation: Operation,
    /// The body fields that limit the output tokens, as the API spells them.
    pub limit_fields: &'static [&'static str],
    /// The field a cap adds when the body has none of them.
    pub cap_field: Option<&'static str>,
}

const ENDPOINTS: [(&str, Api); 5] = [
    (
        "/v1/chat/completions",
        Api {
            provider: Provider::OpenAi,
            operation: Operation::Chat,
            limit_fields: &["max_tokens", "max_completion_tokens"],
            cap_field: Some("max_completion_tokens"),
        },
    ),
    (
        "/v1/completions",
        Api {
            provider: Provider::OpenAi,
            operation: Operation::TextCompletion,
            limit_fields: &["max_tokens"],
            cap_field: Some("max_tokens"),
        },
    ),
    (
        "/v1/embeddings",
        Api {
            provider: Provider::OpenAi,
            operation: Operation::Embeddings,
            limit_fields: &[],
            cap_field: None,
        },
    ),
    (
        "/v1/responses",
        Api {
            provider: Provider::OpenAi,
            operation: Operation::Chat,
            limit_fields: &["max_output_tokens"],
            cap_field: Some("max_output_tokens"),
        },
    ),
    (
        "/v1/messages",
        Api {
            provider: Provider::Anthropic,
            operation: Operation::Chat,
            limit_fields: &["max_tokens"],
            cap_field: Some("max_tokens"),
        },
    ),
];

/// The API a `POST` to `path` (with or without its query) calls: its path
/// ends with one of the endpoints (`/v1/chat/completions`, or behind a
/// prefix, `/openai/v1/chat/completions`).
pub fn recognize(path: &str) -> Option<Api> {
    let path = path.split('?').next().unwrap_or(path);
    ENDPOINTS
        .iter()
        .find(|(suffix, _)| path.ends_with(suffix))
        .map(|(_, api)| *api)
}

/// An output-token limit field of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Where its value is.
    pub span: Range<usize>,
    /// Its value; `None` for `null` (the provider's default).
    pub value: Option<u64>,
}

/// What a call's body asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Call {
    /// `model`.
    pub model: String,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage` (OpenAI chat and text completions):
    /// whether a stream ends with a usage chunk.
    pub include_usage: bool,
    /// The output-token limit fields present.
    pub limits: Vec<Limit>,
}

impl Call {
    /// The output-token limit the provider will apply: the lowest of the
    /// fields present, `None` when the body sets none.
    pub fn max_tokens(&self) -> Option<u64> {
        self.limits.iter().filter_map(|l| l.value).min()
    }
}

/// Why a body cannot be read as a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not a JSON object.
    NotJson,
    /// A field the stage reads has the wrong type (or `model` is missing).
    Field(&'static str),
    /// A field the stage reads is there twice: the provider would read
    /// another value than the stage.
    Duplicate(String),
}

impl BodyError {
    /// The message for the client.
    pub fn message(&self) -> String {
        match self {
            BodyError::NotJson => "the request body is not a JSON object".into(),
            BodyError::Field("model") => "`model` must be a non-empty string".into(),
            BodyError::Field("stream") => "`stream` must be a boolean".into(),
            BodyError::Field("stream_options") => {
                "`stream_options.include_usage` must be a boolean".into()
            }
            BodyError::Field(field) => format!("`{field}` must be a non-negative integer"),
            BodyError::Duplicate(field) => format!("`{field}` appears more than once"),
        }
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Reads the fields of a call's body.
pub fn read(api: &Api, body: &[u8]) -> Result<Call, BodyError> {
    let members = members(body).ok_or(BodyError::NotJson)?;
    let value = |m: &Member| body.get(m.value.clone()).unwrap_or_default();
    let mut call = Call::default();
    let mut seen: Vec<&str> = Vec::new();
    for m in &members {
        let key = m.key.as_str();
        let watched =
            ["model", "stream", "stream_options"].contains(&key) || api.limit_fields.contains(&key);
        if !watched {
            continue;
        }
        if seen.contains(&key) {
            return Err(BodyError::Duplicate(m.key.clone()));
        }
        seen.push(key);
        match key {
            "model" => {
                call.model = serde_json::from_slice::<String>(value(m))
                    .ok()
                    .filter(|s| !s.is_empty())
                    .ok_or(BodyError::Field("model"))?;
            }
            "stream" => {
                call.stream = serde_json::from_slice::<Option<bool>>(value(m))
                    .map_err(|_| BodyError::Field("stream"))?
                    .unwrap_or(false);
            }
            "stream_options" => {
                let options = serde_json::from_slice::<Option<StreamOptions>>(value(m))
                    .map_err(|_| BodyError::Field("stream_options"))?;
                call.include_usage = options.and_then(|o| o.include_usage).unwrap_or(false);
            }
            _ => {
                let field = api
                    .limit_fields
                    .iter()
                    .find(|f| **f == key)
                    .copied()
                    .unwrap_or("max_tokens");
                let limit = serde_json::from_slice::<Option<u64>>(value(m))
                    .map_err(|_| BodyError::Field(field))?;
                call.limits.push(Limit {
                    span: m.value.clone(),
                    value: limit,
                });
            }
        }
    }
    if call.model.is_empty() {
        return Err(BodyError::Field("model"));
    }
    Ok(call)
}

/// A call's body under an output-token cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capped {
    /// The body asks for no more than the cap.
    Within,
    /// The body asked for more (or set no limit): this one asks for the cap.
    Rewritten(Vec<u8>),
}

/// The body with every output-token limit above `cap` (or `null`) lowered
/// to it, and the API's limit field added when the body sets none. Only
/// the numbers change: every other byte stays as the client sent it.
pub fn cap(api: &Api, body: &[u8], call: &Call, cap: u64) -> Capped {
    let Some(field) = api.cap_field else {
        return Capped::Within;
    };
    let number = cap.to_string();
    if call.limits.is_empty() {
        // A limit added right after the opening brace.
        let Some(open) = body.iter().position(|b| *b == b'{') else {
            return Capped::Within;
        };
        let empty = body
            .get(open + 1..)
            .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()))
            == Some(&b'}');
        let mut out = Vec::with_capacity(body.len() + field.len() + number.len() + 4);
        out.extend_from_slice(body.get(..=open).unwrap_or_default());
        out.extend_from_slice(format!("\"{field}\":{number}").as_bytes());
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(body.get(open + 1..).unwrap_or_default());
        return Capped::Rewritten(out);
    }
    let mut over: Vec<&Range<usize>> = call
        .limits
        .iter()
        .filter(|l| l.value.is_none_or(|v| v > cap))
        .map(|l| &l.span)
        .collect();
    if over.is_empty() {
        return Capped::Within;
    }
    over.sort_by_key(|span| span.start);
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for span in over {
        out.extend_from_slice(body.get(at..span.start).unwrap_or_default());
        out.extend_from_slice(number.as_bytes());
        at = span.end;
    }
    out.extend_from_slice(body.get(at..).unwrap_or_default());
    Capped::Rewritten(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(path: &str) -> Api {
        recognize(path).unwrap()
    }

    #[test]
    fn endpoints_are_recognized_by_their_path() {
        let chat = api("/v1/chat/completions");
        assert_eq!(
            (chat.provider, chat.operation),
            (Provider::OpenAi, Operation::Chat)
        );
        assert_eq!(api("/openai/v1/chat/completions?x=1"), chat);
        assert_eq!(api("/v1/completions").operation, Operation::TextCompletion);
        assert_eq!(api("/v1/embeddings").operation, Operation::Embeddings);
        assert_eq!(api("/v1/responses").cap_field, Some("max_output_tokens"));
        assert_eq!(api("/v1/messages").provider, Provider::Anthropic);
        for other in [
            "/v1/models",
            "/v1/chat/completions/x",
            "/",
            "/v1/messages/count_tokens",
        ] {
            assert!(recognize(other).is_none(), "{other}");
        }
    }

    #[test]
    fn reads_the_fields_of_every_api() {
        let c = read(
            &api("/v1/chat/completions"),
            br#"{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":true},"max_tokens":50,"max_completion_tokens":80}"#,
        )
        .unwrap();
        assert_eq!(c.model, "gpt-4o");
        assert!(c.stream && c.include_usage);
        assert_eq!(c.max_tokens(), Some(50));
        let c = read(
            &api("/v1/responses"),
            br#"{"model":"o3","input":"hi","max_output_tokens":null}"#,
        )
        .unwrap();
        assert_eq!((c.max_tokens(), c.limits.len()), (None, 1));
        let c = read(
            &api("/v1/messages"),
            br#"{"model":"claude-x","max_tokens":1024,"stream":null}"#,
        )
        .unwrap();
        assert_eq!(c.max_tokens(), Some(1024));
        assert!(!c.stream);
        // `max_tokens` is not a limit of the Responses API: not read there.
        let c = read(&api("/v1/responses"), br#"{"model":"o3","max_tokens":"x"}"#).unwrap();
        assert!(c.limits.is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_read_for_sure() {
        let chat = api("/v1/chat/completions");
        let cases: [(&[u8], BodyError); 8] = [
            (b"not json", BodyError::NotJson),
            (b"[]", BodyError::NotJson),
            (br#"{"messages":[]}"#, BodyError::Field("model")),
            (br#"{"model":""}"#, BodyError::Field("model")),
            (br#"{"model":7}"#, BodyError::Field("model")),
            (
                br#"{"model":"m","stream":"yes"}"#,
                BodyError::Field("stream"),
            ),
            (
                br#"{"model":"m","max_tokens":-1}"#,
                BodyError::Field("max_tokens"),
            ),
            (
                br#"{"model":"m","max_tokens":1,"max\u005ftokens":99999}"#,
                BodyError::Duplicate("max_tokens".into()),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                read(&chat, body),
                Err(expected),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(BodyError::Field("max_completion_tokens")
            .message()
            .contains("max_completion_tokens"));
    }

    fn capped(path: &str, body: &str, limit: u64) -> Option<String> {
        let api = api(path);
        let call = read(&api, body.as_bytes()).unwrap();
        match cap(&api, body.as_bytes(), &call, limit) {
            Capped::Within => None,
            Capped::Rewritten(b) => {
                let text = String::from_utf8(b).unwrap();
                // Still JSON, and the provider now reads the cap.
                let again = read(&api, text.as_bytes()).unwrap();
                assert!(again.max_tokens().is_some_and(|m| m <= limit), "{text}");
                Some(text)
            }
        }
    }

    #[test]
    fn caps_rewrite_only_the_numbers() {
        let chat = "/v1/chat/completions";
        assert_eq!(capped(chat, r#"{"model":"m","max_tokens":100}"#, 100), None);
        assert_eq!(
            capped(chat, r#"{"model":"m", "max_tokens" : 5000 ,"messages":[{"content":"max_tokens: 5000"}]}"#, 256).unwrap(),
            r#"{"model":"m", "max_tokens" : 256 ,"messages":[{"content":"max_tokens: 5000"}]}"#
        );
        assert_eq!(
            capped(
                chat,
                r#"{"max_completion_tokens":null,"model":"m","max_tokens":9000}"#,
                10
            )
            .unwrap(),
            r#"{"max_completion_tokens":10,"model":"m","max_tokens":10}"#
        );
        assert_eq!(
            capped(
                chat,
                r#"{"max_completion_tokens":5,"model":"m","max_tokens":9000}"#,
                10
            )
            .unwrap(),
            r#"{"max_completion_tokens":5,"model":"m","max_tokens":10}"#
        );
        // No limit set: one is added.
        assert_eq!(
            capped(chat, r#" {"model":"m"}"#, 64).unwrap(),
            r#" {"max_completion_tokens":64,"model":"m"}"#
        );
        assert_eq!(
            capped("/v1/completions", r#"{"model":"m","prompt":"x"}"#, 8).unwrap(),
            r#"{"max_tokens":8,"model":"m","prompt":"x"}"#
        );
        assert_eq!(
            capped(
                "/v1/responses",
                r#"{"model":"m","max_output_tokens":900}"#,
                300
            )
            .unwrap(),
            r#"{"model":"m","max_output_tokens":300}"#
        );
        // Embeddings produce no output tokens: nothing to cap.
        assert_eq!(
            capped("/v1/embeddings", r#"{"model":"e","input":"x"}"#, 1),
            None
        );
    }
}
