//! The whole decision for one request to an MCP endpoint: first on its
//! headers (Origin, HTTP method, `Accept`, `Content-Type`, and for `GET`
//! and `DELETE` the protocol version and session), then on its body (the
//! message, the version and session rules that depend on whether it is
//! `initialize`, the `Mcp-Method`/`Mcp-Name` headers against the body, and
//! the policy rules of each message).
//!
//! Everything comes in as arguments; a verdict comes out.

use palisade_shared::contract::{Identity, McpDecision};
use serde_json::{json, Value};

use crate::access::{Access, Denied};
use crate::config::{Route, BATCH_VERSION, HANDSHAKE_VERSIONS};
use crate::listing::ListKind;
use crate::message::{self, Body, Invalid, Kind, Message, INVALID_PARAMS, INVALID_REQUEST};
use crate::reply::{
    Challenge, RpcError, FORBIDDEN, HEADER_MISMATCH, UNAUTHENTICATED, UNSUPPORTED_PROTOCOL_VERSION,
};
use crate::resource;

/// Why a request was refused: `palisade.denial`'s reason and the metrics'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `Origin` is present and not allowed (403).
    OriginNotAllowed,
    /// Not `GET`, `POST`, `DELETE` or `OPTIONS` (405).
    HttpMethodNotAllowed,
    /// `Accept` does not allow what the transport answers with (406).
    NotAcceptable,
    /// A POST that is not `application/json` (415).
    UnsupportedMediaType,
    /// The body is larger than the route allows (413).
    TooLarge,
    /// The body is not JSON (400).
    ParseError,
    /// The JSON is not a valid message (400).
    InvalidRequest,
    /// A batch where the route does not allow the 2025-03-26 revision (400).
    BatchNotAllowed,
    /// `MCP-Protocol-Version` missing or not accepted (400).
    ProtocolVersion,
    /// `Mcp-Session-Id` missing after initialization (400).
    SessionRequired,
    /// `Mcp-Method` or `Mcp-Name` disagrees with the body (400).
    HeaderMismatch,
    /// The method's rule refuses it (403).
    MethodDenied,
    /// The tool's rule refuses it, or no rule names it (403).
    ToolDenied,
    /// The resource's rule refuses it, no rule matches, or the URI is not
    /// in normal form (403).
    ResourceDenied,
    /// The prompt's rule refuses it, or no rule names it (403).
    PromptDenied,
    /// The rule needs a verified identity and there is none (401).
    Unauthenticated,
    /// The identity lacks a scope the rule needs (403).
    InsufficientScope,
    /// A claim of the identity lacks a value the rule needs (403).
    ClaimMismatch,
    /// The tool's arguments break its rule (400).
    InvalidArguments,
    /// The message lacks a parameter its method needs (400).
    InvalidParams,
}

impl Reason {
    /// Every reason, in metric order.
    pub const ALL: [Reason; 20] = [
        Reason::OriginNotAllowed,
        Reason::HttpMethodNotAllowed,
        Reason::NotAcceptable,
        Reason::UnsupportedMediaType,
        Reason::TooLarge,
        Reason::ParseError,
        Reason::InvalidRequest,
        Reason::BatchNotAllowed,
        Reason::ProtocolVersion,
        Reason::SessionRequired,
        Reason::HeaderMismatch,
        Reason::MethodDenied,
        Reason::ToolDenied,
        Reason::ResourceDenied,
        Reason::PromptDenied,
        Reason::Unauthenticated,
        Reason::InsufficientScope,
        Reason::ClaimMismatch,
        Reason::InvalidArguments,
        Reason::InvalidParams,
    ];

    /// The name in `palisade.denial`, `palisade.mcp` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OriginNotAllowed => "origin_not_allowed",
            Reason::HttpMethodNotAllowed => "http_method_not_allowed",
            Reason::NotAcceptable => "not_acceptable",
            Reason::UnsupportedMediaType => "unsupported_media_type",
            Reason::TooLarge => "too_large",
            Reason::ParseError => "parse_error",
            Reason::InvalidRequest => "invalid_request",
            Reason::BatchNotAllowed => "batch_not_allowed",
            Reason::ProtocolVersion => "protocol_version",
            Reason::SessionRequired => "session_required",
            Reason::HeaderMismatch => "header_mismatch",
            Reason::MethodDenied => "method_denied",
            Reason::ToolDenied => "tool_denied",
            Reason::ResourceDenied => "resource_denied",
            Reason::PromptDenied => "prompt_denied",
            Reason::Unauthenticated => "unauthenticated",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::ClaimMismatch => "claim_mismatch",
            Reason::InvalidArguments => "invalid_arguments",
            Reason::InvalidParams => "invalid_params",
        }
    }

    /// Whether the request was malformed (`invalid`) rather than refused by
    /// a rule (`denied`).
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            Reason::ParseError
                | Reason::InvalidRequest
                | Reason::TooLarge
                | Reason::ProtocolVersion
                | Reason::SessionRequired
                | Reason::HeaderMismatch
                | Reason::BatchNotAllowed
                | Reason::InvalidParams
                | Reason::NotAcceptable
                | Reason::UnsupportedMediaType
                | Reason::HttpMethodNotAllowed
        )
    }
}

/// A refusal: status, the errors to send, the challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    /// Why.
    pub reason: Reason,
    /// One error per message (one for a single message).
    pub errors: Vec<RpcError>,
    /// Whether the reply is a batch (an array).
    pub batch: bool,
    /// The challenge.
    pub challenge: Challenge,
}

impl Refused {
    fn one(status: u16, reason: Reason, code: i64, message: impl Into<String>, id: Value) -> Self {
        Refused {
            status,
            reason,
            errors: vec![RpcError {
                id,
                code,
                message: message.into(),
                data: json!({"reason": reason.as_str()}),
            }],
            batch: false,
            challenge: Challenge::None,
        }
    }

    fn invalid(reason: Reason, invalid: Invalid) -> Self {
        Refused::one(400, reason, invalid.code, invalid.message, invalid.id)
    }
}

/// The request headers the decision reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Head<'a> {
    /// `:method`.
    pub http_method: &'a str,
    /// `Accept`.
    pub accept: Option<&'a str>,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<&'a str>,
    /// `Mcp-Session-Id`.
    pub session_id: Option<&'a str>,
    /// `Mcp-Method` (later revisions mirror the method in a header).
    pub mcp_method: Option<&'a str>,
    /// `Mcp-Name` (the tool, prompt or resource URI, mirrored).
    pub mcp_name: Option<&'a str>,
}

/// What to do after the headers.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadVerdict {
    /// A POST: decide on its body, at most this large.
    ReadBody {
        /// The route's `max_message_bytes`.
        max_bytes: usize,
    },
    /// Nothing more to check.
    Pass,
    /// Refuse it.
    Refuse(Refused),
}

/// Whether an `Accept` value allows `wanted` (`type/subtype`).
fn accepts(accept: &str, wanted: &str) -> bool {
    let major = wanted.split('/').next().unwrap_or("");
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("q")
                    && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            })
        });
        !refused
            && (media == wanted
                || media == "*/*"
                || media.strip_suffix("/*").is_some_and(|m| m == major))
    })
}

/// The revision a request speaks: its header, or without one the
/// 2025-03-26 revision (which had no header) where the route accepts it.
fn effective_version<'a>(route: &Route, head: &Head<'a>) -> Option<&'a str> {
    match head.protocol_version {
        Some(v) => Some(v),
        None if route.allows_batches() => Some(BATCH_VERSION),
        None => None,
    }
}

/// The version and session rules for a request that is not `initialize`.
fn check_version_and_session(route: &Route, head: &Head<'_>, id: &Value) -> Result<(), Refused> {
    let version = effective_version(route, head);
    let accepted = version.is_some_and(|v| route.protocol_versions.iter().any(|a| a == v));
    if !accepted {
        let mut refused = Refused::one(
            400,
            Reason::ProtocolVersion,
            UNSUPPORTED_PROTOCOL_VERSION,
            match version {
                None => "MCP-Protocol-Version is required after initialization",
                Some(_) => "this MCP-Protocol-Version is not accepted here",
            },
            id.clone(),
        );
        if let Some(e) = refused.errors.first_mut() {
            e.data = json!({
                "reason": Reason::ProtocolVersion.as_str(),
                "supported": route.protocol_versions,
                "requested": version,
            });
        }
        return Err(refused);
    }
    let handshake_era = version.is_some_and(|v| HANDSHAKE_VERSIONS.contains(&v));
    let session_ok = head
        .session_id
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    if route.require_session && handshake_era && !session_ok {
        return Err(Refused::one(
            400,
            Reason::SessionRequired,
            INVALID_REQUEST,
            "Mcp-Session-Id is required after initialization",
            id.clone(),
        ));
    }
    Ok(())
}

/// Decides on the request headers.
pub fn decide_head(route: &Route, head: &Head<'_>, end_of_stream: bool) -> HeadVerdict {
    if let Some(origin) = head.origin.filter(|o| !o.is_empty()) {
        if !route
            .allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin.trim()))
        {
            return HeadVerdict::Refuse(Refused::one(
                403,
                Reason::OriginNotAllowed,
                FORBIDDEN,
                "this Origin is not allowed",
                Value::Null,
            ));
        }
    }
    let accept = head.accept.unwrap_or("");
    let not_acceptable = |what: &str| {
        HeadVerdict::Refuse(Refused::one(
            406,
            Reason::NotAcceptable,
            INVALID_REQUEST,
            format!("Accept must allow {what}"),
            Value::Null,
        ))
    };
    match head.http_method {
        "POST" => {
            if !(accepts(accept, "application/json") && accepts(accept, "text/event-stream")) {
                return not_acceptable("application/json and text/event-stream");
            }
            let json = head.content_type.is_some_and(|c| {
                c.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
            if !json {
                return HeadVerdict::Refuse(Refused::one(
                    415,
                    Reason::UnsupportedMediaType,
                    INVALID_REQUEST,
                    "Content-Type must be application/json",
                    Value::Null,
                ));
            }
            if end_of_stream {
                return HeadVerdict::Refuse(Refused::one(
                    400,
                    Reason::ParseError,
                    message::PARSE_ERROR,
                    "the body is empty",
                    Value::Null,
                ));
            }
            HeadVerdict::ReadBody {
                max_bytes: route.max_message_bytes,
            }
        }
        "GET" => {
            if !accepts(accept, "text/event-stream") {
                return not_acceptable("text/event-stream");
            }
            match check_version_and_session(route, head, &Value::Null) {
                Ok(()) => HeadVerdict::Pass,
                Err(r) => HeadVerdict::Refuse(r),
            }
        }
        "DELETE" => {
            if head.session_id.is_none() {
                return HeadVerdict::Refuse(Refused::one(
                    400,
                    Reason::SessionRequired,
                    INVALID_REQUEST,
                    "DELETE ends a session: Mcp-Session-Id is required",
                    Value::Null,
                ));
            }
            match check_version_and_session(route, head, &Value::Null) {
                Ok(()) => HeadVerdict::Pass,
                Err(r) => HeadVerdict::Refuse(r),
            }
        }
        "OPTIONS" => HeadVerdict::Pass,
        _ => HeadVerdict::Refuse(Refused::one(
            405,
            Reason::HttpMethodNotAllowed,
            INVALID_REQUEST,
            "an MCP endpoint takes GET, POST and DELETE",
            Value::Null,
        )),
    }
}

/// One message's verdict, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The JSON-RPC method (empty for a response).
    pub method: String,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
    /// `None` when allowed.
    pub refused: Option<Reason>,
}

/// The verdict on a POST body.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyVerdict {
    /// The refusal, if refused.
    pub refused: Option<Refused>,
    /// What to publish as `palisade.mcp`.
    pub decision: McpDecision,
    /// The listings to filter in the answer.
    pub listings: Vec<(Value, ListKind)>,
    /// Each message, for metrics.
    pub counted: Vec<Counted>,
}

/// What a message names, for the decision and the metrics.
#[derive(Debug, Clone, Default)]
struct Target {
    tool: Option<String>,
    resource: Option<String>,
    prompt: Option<String>,
    arguments: Vec<(String, String)>,
}

/// A message's refusal by a rule.
struct Refusal {
    status: u16,
    reason: Reason,
    code: i64,
    message: String,
    challenge: Challenge,
}

fn refusal(status: u16, reason: Reason, code: i64, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason,
        code,
        message: message.into(),
        challenge: Challenge::None,
    }
}

/// Applies an access rule; `denied` is the reason when the rule refuses everyone.
fn apply(
    access: &Access,
    identity: Option<&Identity>,
    denied: Reason,
    what: &str,
) -> Result<(), Refusal> {
    access.check(identity).map_err(|d| match d {
        Denied::Rule => refusal(403, denied, FORBIDDEN, format!("{what} is not allowed")),
        Denied::Unauthenticated { scope } => Refusal {
            challenge: Challenge::Unauthenticated { scope },
            ..refusal(
                401,
                Reason::Unauthenticated,
                UNAUTHENTICATED,
                format!("{what} needs a verified identity"),
            )
        },
        Denied::Scope(scope) => Refusal {
            message: format!("{what} needs the scope {scope}"),
            challenge: Challenge::InsufficientScope(scope),
            ..refusal(403, Reason::InsufficientScope, FORBIDDEN, "")
        },
        Denied::Claim => refusal(
            403,
            Reason::ClaimMismatch,
            FORBIDDEN,
            format!("{what} is not allowed for this identity"),
        ),
    })
}

fn check_resource(route: &Route, uri: &str, identity: Option<&Identity>) -> Result<(), Refusal> {
    let denied = || {
        refusal(
            403,
            Reason::ResourceDenied,
            FORBIDDEN,
            "this resource is not allowed",
        )
    };
    let normal = resource::normalize(uri).ok_or_else(denied)?;
    let rule = resource::rule_for(&route.resources, &normal).ok_or_else(denied)?;
    apply(
        &rule.access,
        identity,
        Reason::ResourceDenied,
        "this resource",
    )
}

fn check_prompt(route: &Route, name: &str, identity: Option<&Identity>) -> Result<(), Refusal> {
    match route.prompts.lookup(name) {
        Some(access) => apply(access, identity, Reason::PromptDenied, "this prompt"),
        None => Err(refusal(
            403,
            Reason::PromptDenied,
            FORBIDDEN,
            "this prompt is not allowed",
        )),
    }
}

fn missing(what: &str) -> Refusal {
    refusal(
        400,
        Reason::InvalidParams,
        INVALID_PARAMS,
        format!("params.{what} is required"),
    )
}

/// The rules for one message.
fn judge(
    route: &Route,
    m: &Message,
    identity: Option<&Identity>,
    target: &mut Target,
) -> Result<(), Refusal> {
    if m.kind == Kind::Response {
        return Ok(());
    }
    if let Some(methods) = &route.methods {
        match methods.lookup(&m.method) {
            Some(access) => apply(access, identity, Reason::MethodDenied, "this method")?,
            None => {
                return Err(refusal(
                    403,
                    Reason::MethodDenied,
                    FORBIDDEN,
                    "this method is not allowed",
                ))
            }
        }
    }
    match m.method.as_str() {
        "tools/call" => {
            let name = m.param_str("name").ok_or_else(|| missing("name"))?;
            target.tool = Some(name.chars().take(128).collect());
            let Some(rule) = route.tools.lookup(name) else {
                return Err(refusal(
                    403,
                    Reason::ToolDenied,
                    FORBIDDEN,
                    "this tool is not allowed",
                ));
            };
            let arguments = m.param("arguments");
            target.arguments = rule.arguments.logged(arguments);
            apply(&rule.access, identity, Reason::ToolDenied, "this tool")?;
            rule.arguments
                .check(arguments)
                .map_err(|e| refusal(400, Reason::InvalidArguments, INVALID_PARAMS, e.to_string()))
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = m.param_str("uri").ok_or_else(|| missing("uri"))?;
            target.resource = Some(uri.chars().take(512).collect());
            check_resource(route, uri, identity)
        }
        "prompts/get" => {
            let name = m.param_str("name").ok_or_else(|| missing("name"))?;
            target.prompt = Some(name.chars().take(128).collect());
            check_prompt(route, name, identity)
        }
        "completion/complete" => {
            let reference = m.param("ref").ok_or_else(|| missing("ref"))?;
            let field = |f: &str| reference.get(f).and_then(Value::as_str);
            match field("type") {
                Some("ref/prompt") => {
                    let name = field("name").ok_or_else(|| missing("ref.name"))?;
                    target.prompt = Some(name.chars().take(128).collect());
                    check_prompt(route, name, identity)
                }
                Some("ref/resource") => {
                    let uri = field("uri").ok_or_else(|| missing("ref.uri"))?;
                    target.resource = Some(uri.chars().take(512).collect());
                    check_resource(route, uri, identity)
                }
                _ => Err(missing("ref.type")),
            }
        }
        _ => Ok(()),
    }
}

/// The name a message mirrors in `Mcp-Name`.
fn mirrored_name(m: &Message) -> Option<&str> {
    match m.method.as_str() {
        "tools/call" | "prompts/get" => m.param_str("name"),
        "resources/read" => m.param_str("uri"),
        _ => None,
    }
}

fn record(
    m: Option<&Message>,
    target: &Target,
    refused: Option<Reason>,
    batch: Option<u32>,
) -> McpDecision {
    McpDecision {
        method: m.map(|m| m.method.clone()).unwrap_or_default(),
        tool: target.tool.clone(),
        resource: target.resource.clone(),
        prompt: target.prompt.clone(),
        id: m.and_then(|m| m.id.as_ref()).and_then(message::id_text),
        decision: match refused {
            None => "allowed",
            Some(r) if r.is_malformed() => "invalid",
            Some(_) => "denied",
        }
        .to_string(),
        reason: refused.map(|r| r.as_str().to_string()),
        batch,
        arguments: target.arguments.iter().cloned().collect(),
    }
}

fn refused_verdict(refused: Refused, batch: Option<u32>) -> BodyVerdict {
    let id = refused.errors.first().and_then(|e| message::id_text(&e.id));
    BodyVerdict {
        decision: McpDecision {
            id,
            ..record(None, &Target::default(), Some(refused.reason), batch)
        },
        counted: vec![Counted {
            method: String::new(),
            tool: None,
            refused: Some(refused.reason),
        }],
        refused: Some(refused),
        listings: Vec::new(),
    }
}

/// Decides on a POST body. `complete` is false when the body passed the
/// route's `max_message_bytes`.
pub fn decide_body(
    route: &Route,
    head: &Head<'_>,
    body: &[u8],
    complete: bool,
    identity: Option<&Identity>,
) -> BodyVerdict {
    if !complete || body.len() > route.max_message_bytes {
        return refused_verdict(
            Refused::one(
                413,
                Reason::TooLarge,
                INVALID_REQUEST,
                "the message is too large",
                Value::Null,
            ),
            None,
        );
    }
    let parsed = match message::parse_body(body, route.max_depth) {
        Ok(parsed) => parsed,
        Err(invalid) => {
            let reason = if invalid.code == message::PARSE_ERROR {
                Reason::ParseError
            } else {
                Reason::InvalidRequest
            };
            return refused_verdict(Refused::invalid(reason, invalid), None);
        }
    };
    let (messages, batch) = match parsed {
        Body::Single(m) => (vec![m], None),
        Body::Batch(items) => {
            let size = u32::try_from(items.len()).unwrap_or(u32::MAX);
            let version = effective_version(route, head);
            if !(route.allows_batches() && version == Some(BATCH_VERSION)) {
                return refused_verdict(
                    Refused::one(
                        400,
                        Reason::BatchNotAllowed,
                        INVALID_REQUEST,
                        "batches are not accepted: send one message per request",
                        Value::Null,
                    ),
                    Some(size),
                );
            }
            let mut messages = Vec::with_capacity(items.len());
            let mut invalid = Vec::new();
            for item in items {
                match item {
                    Ok(m) if m.method == "initialize" => invalid.push(Invalid {
                        code: INVALID_REQUEST,
                        message: "initialize must not be part of a batch",
                        id: m.id.unwrap_or(Value::Null),
                    }),
                    Ok(m) => messages.push(m),
                    Err(e) => invalid.push(e),
                }
            }
            if !invalid.is_empty() {
                let errors = invalid
                    .into_iter()
                    .map(|i| RpcError {
                        id: i.id,
                        code: i.code,
                        message: i.message.to_string(),
                        data: json!({"reason": Reason::InvalidRequest.as_str()}),
                    })
                    .collect();
                return refused_verdict(
                    Refused {
                        status: 400,
                        reason: Reason::InvalidRequest,
                        errors,
                        batch: true,
                        challenge: Challenge::None,
                    },
                    Some(size),
                );
            }
            (messages, Some(size))
        }
    };
    let initialize = batch.is_none() && messages.first().is_some_and(|m| m.method == "initialize");
    let first_id = messages
        .first()
        .and_then(|m| m.id.clone())
        .unwrap_or(Value::Null);
    if !initialize {
        if let Err(refused) = check_version_and_session(route, head, &first_id) {
            return refused_verdict(refused, batch);
        }
    }
    if head.mcp_method.is_some() || head.mcp_name.is_some() {
        let agrees = match messages.as_slice() {
            [m] if batch.is_none() => {
                head.mcp_method.is_none_or(|h| h == m.method)
                    && head.mcp_name.is_none_or(|h| mirrored_name(m) == Some(h))
            }
            _ => false,
        };
        if !agrees {
            return refused_verdict(
                Refused::one(
                    400,
                    Reason::HeaderMismatch,
                    HEADER_MISMATCH,
                    "Mcp-Method or Mcp-Name does not match the message",
                    first_id,
                ),
                batch,
            );
        }
    }
    let mut counted = Vec::with_capacity(messages.len());
    let mut errors: Vec<(Value, Result<(), Refusal>)> = Vec::new();
    let mut first_refused: Option<(usize, Target, u16, Reason, Challenge)> = None;
    let mut first_target: Option<Target> = None;
    let mut listings = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let mut target = Target::default();
        let verdict = judge(route, m, identity, &mut target);
        counted.push(Counted {
            method: m.method.clone(),
            tool: target.tool.clone(),
            refused: verdict.as_ref().err().map(|r| r.reason),
        });
        match &verdict {
            Ok(()) => {
                if let (Kind::Request, Some(kind), Some(id)) =
                    (m.kind, ListKind::of_method(&m.method), &m.id)
                {
                    listings.push((id.clone(), kind));
                }
            }
            Err(r) if first_refused.is_none() => {
                first_refused = Some((i, target.clone(), r.status, r.reason, r.challenge.clone()));
            }
            Err(_) => {}
        }
        if first_target.is_none() {
            first_target = Some(target);
        }
        errors.push((m.id.clone().unwrap_or(Value::Null), verdict));
    }
    let Some((index, target, status, reason, challenge)) = first_refused else {
        return BodyVerdict {
            refused: None,
            decision: record(
                messages.first(),
                &first_target.unwrap_or_default(),
                None,
                batch,
            ),
            listings,
            counted,
        };
    };
    let rpc_errors: Vec<RpcError> = errors
        .into_iter()
        .zip(&messages)
        .filter(|(_, m)| batch.is_none() || m.kind == Kind::Request)
        .map(|((id, verdict), _)| match verdict {
            Err(r) => RpcError {
                id,
                code: r.code,
                message: r.message,
                data: json!({"reason": r.reason.as_str()}),
            },
            Ok(()) => RpcError {
                id,
                code: INVALID_REQUEST,
                message: "not processed: another message of the batch was refused".into(),
                data: json!({"reason": "batch_refused"}),
            },
        })
        .collect();
    let rpc_errors = if rpc_errors.is_empty() {
        // A batch of notifications: one error, without an id.
        vec![RpcError {
            id: Value::Null,
            code: FORBIDDEN,
            message: "a message of the batch was refused".into(),
            data: json!({"reason": reason.as_str()}),
        }]
    } else {
        rpc_errors
    };
    BodyVerdict {
        refused: Some(Refused {
            status,
            reason,
            errors: rpc_errors,
            batch: batch.is_some(),
            challenge,
        }),
        decision: record(messages.get(index), &target, Some(reason), batch),
        listings: Vec::new(),
        counted,
    }
}

/// Whether a listed item may be shown to `identity`: the same rules as
/// calling it (a method rule that refuses `tools/call` hides every tool).
pub fn may_list(route: &Route, kind: ListKind, name: &str, identity: Option<&Identity>) -> bool {
    let method = match kind {
        ListKind::Tools => "tools/call",
        ListKind::Resources => "resources/read",
        ListKind::Prompts => "prompts/get",
    };
    if let Some(methods) = &route.methods {
        if methods
            .lookup(method)
            .is_none_or(|a| a.check(identity).is_err())
        {
            return false;
        }
    }
    match kind {
        ListKind::Tools => route
            .tools
            .lookup(name)
            .is_some_and(|rule| rule.access.check(identity).is_ok()),
        ListKind::Resources => check_resource(route, name, identity).is_ok(),
        ListKind::Prompts => check_prompt(route, name, identity).is_ok(),
    }
}

#[cfg(test)]
mod tests;
