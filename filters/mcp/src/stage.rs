//! MCP governance as a stage of the engine: picks the route, decides on the
//! headers, reads the POST body and decides on its message(s) with the
//! identity the JWT stage verified (in memory, or from filter state when it
//! runs as its own module), and holds and filters the answer to a listing.

use palisade_shared::config::ConfigError;
use palisade_shared::contract::{self, McpDecision};
use palisade_shared::engine::{
    self, BodyStep, Counter, DecisionKind, DecisionSet, Exchange, Host, LogLevel, Module, Needs,
    Refusal, ResponseBodyStep, ResponseStep, Stage, Step,
};
use serde_json::{json, Value};

use crate::config::{Config, Route};
use crate::decide::{self, Counted, Head, HeadVerdict, Reason, Refused};
use crate::listing::{self, ListKind};
use crate::reply::{self, ChallengeSettings};

/// The methods counted by name; any other counts as `other`.
const METHODS: [&str; 23] = [
    "initialize",
    "ping",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/cancel",
    "tasks/result",
    "server/discover",
    "response",
];

/// The reasons a parsed message can be refused for, counted per method
/// and per tool.
const MESSAGE_REASONS: [Reason; 9] = [
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

/// `allowed` and one counter per message reason.
#[derive(Clone, Copy)]
struct Outcomes {
    allowed: Counter,
    refused: [Counter; MESSAGE_REASONS.len()],
}

impl Outcomes {
    fn define(host: &dyn Host, prefix: &str) -> Self {
        Outcomes {
            allowed: Counter::define(host, &format!("{prefix}.allowed")),
            refused: MESSAGE_REASONS
                .map(|r| Counter::define(host, &format!("{prefix}.refused.{}", r.as_str()))),
        }
    }

    fn count(&self, host: &dyn Host, refused: Option<Reason>) {
        match refused {
            None => self.allowed.inc(host),
            Some(reason) => {
                if let Some(i) = MESSAGE_REASONS.iter().position(|r| *r == reason) {
                    if let Some(c) = self.refused.get(i) {
                        c.inc(host);
                    }
                }
            }
        }
    }
}

/// A metric name part: letters, digits, `_` and `-`; anything else `_`.
fn metric_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Metrics {
    allowed: Counter,
    refused: [Counter; Reason::ALL.len()],
    methods: Vec<Outcomes>,
    tools: Vec<Outcomes>,
    listings_filtered: Counter,
    listings_too_large: Counter,
}

impl Metrics {
    fn define(host: &dyn Host, config: &Config) -> Self {
        let c = |name: &str| Counter::define(host, &format!("palisade.mcp.{name}"));
        Metrics {
            allowed: c("allowed"),
            refused: Reason::ALL.map(|r| c(&format!("refused.{}", r.as_str()))),
            methods: METHODS
                .iter()
                .chain(["other"].iter())
                .map(|m| Outcomes::define(host, &format!("palisade.mcp.method.{}", metric_part(m))))
                .collect(),
            tools: config
                .tool_names
                .iter()
                .map(|t| Outcomes::define(host, &format!("palisade.mcp.tool.{}", metric_part(t))))
                .chain([Outcomes::define(host, "palisade.mcp.tool_other")])
                .collect(),
            listings_filtered: c("listing.filtered"),
            listings_too_large: c("listing.too_large"),
        }
    }

    fn count(
        &self,
        host: &dyn Host,
        config: &Config,
        counted: &[Counted],
        refused: Option<Reason>,
    ) {
        match refused {
            None => self.allowed.inc(host),
            Some(reason) => {
                if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
                    if let Some(c) = self.refused.get(i) {
                        c.inc(host);
                    }
                }
            }
        }
        for m in counted
            .iter()
            .filter(|m| !m.method.is_empty() || m.refused.is_none())
        {
            let method = if m.method.is_empty() {
                "response"
            } else {
                &m.method
            };
            let i = METHODS
                .iter()
                .position(|k| *k == method)
                .unwrap_or(METHODS.len());
            if let Some(o) = self.methods.get(i) {
                o.count(host, m.refused);
            }
            if let Some(tool) = &m.tool {
                let i = config
                    .tool_names
                    .iter()
                    .position(|t| t == tool)
                    .unwrap_or(config.tool_names.len());
                if let Some(o) = self.tools.get(i) {
                    o.count(host, m.refused);
                }
            }
        }
    }
}

/// The MCP stage.
pub struct McpStage {
    config: Config,
    metrics: Metrics,
}

/// The standalone module `palisade_mcp.wasm`.
pub struct McpModule;

impl Module for McpModule {
    type Stage = McpStage;
    const NAME: &'static str = "mcp";

    fn configure(config: &[u8], host: &dyn Host) -> Result<McpStage, ConfigError> {
        McpStage::configure(config, host)
    }
}

/// How a listing answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Json,
    Sse,
}

/// What the stage keeps for one request.
#[derive(Debug, Default)]
pub struct McpRequest {
    /// The route, for an MCP request.
    route: Option<usize>,
    /// The listings asked for, by id.
    listings: Vec<(Value, ListKind)>,
    /// How the answer to hold is framed.
    framing: Option<Framing>,
}

fn head<'a>(cx: &'a Exchange<'_>) -> Head<'a> {
    let h = |name: &str| cx.request.header(name);
    Head {
        http_method: cx.request.method(),
        accept: h("accept"),
        content_type: h("content-type"),
        origin: h("origin"),
        protocol_version: h("mcp-protocol-version"),
        session_id: h("mcp-session-id"),
        mcp_method: h("mcp-method"),
        mcp_name: h("mcp-name"),
    }
}

impl McpStage {
    /// The stage for a configuration, its metrics defined.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        let config = Config::from_json(config)?;
        let metrics = Metrics::define(host, &config);
        Ok(McpStage { config, metrics })
    }

    fn log(host: &dyn Host, level: LogLevel, message: &str) {
        engine::log(host, McpModule::NAME, level, message);
    }

    fn settings(route: &Route) -> ChallengeSettings<'_> {
        ChallengeSettings {
            realm: &route.realm,
            resource_metadata: route.resource_metadata.as_deref(),
        }
    }

    fn publish(cx: &mut Exchange<'_>, decision: McpDecision) {
        engine::publish_json(cx.host, McpModule::NAME, contract::MCP, &decision);
        cx.decisions.set_mcp(decision);
    }

    fn refuse(route: &Route, refused: &Refused, cx: &Exchange<'_>) -> Refusal {
        Self::log(
            cx.host,
            LogLevel::Debug,
            &format!("refused ({}, {})", refused.reason.as_str(), refused.status),
        );
        Refusal {
            filter: McpModule::NAME,
            reason: refused.reason.as_str().to_string(),
            reply: reply::reply(
                refused.status,
                &refused.errors,
                refused.batch,
                &refused.challenge,
                Self::settings(route),
            ),
        }
    }
}

impl Stage for McpStage {
    type Request = McpRequest;

    fn needs(&self) -> Needs {
        // The whole map: the route match and the MCP headers are several.
        Needs {
            whole_request_map: true,
            request_body: true,
            provides: DecisionSet::of(&[DecisionKind::Mcp, DecisionKind::Denial]),
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, request: &mut McpRequest, cx: &mut Exchange<'_>) -> Step {
        let route_name = if self.config.needs_route_name {
            cx.attributes.route_name(cx.host).to_string()
        } else {
            String::new()
        };
        let view = cx.request.view(&route_name);
        let Some(index) = self
            .config
            .routes
            .iter()
            .position(|r| r.matcher.matches(&view))
        else {
            return Step::Continue;
        };
        let Some(route) = self.config.routes.get(index) else {
            return Step::Continue;
        };
        request.route = Some(index);
        match decide::decide_head(route, &head(cx), cx.end_of_stream) {
            HeadVerdict::ReadBody { max_bytes } => Step::ReadBody { max_bytes },
            HeadVerdict::Pass => Step::Continue,
            HeadVerdict::Refuse(refused) => {
                self.metrics
                    .count(cx.host, &self.config, &[], Some(refused.reason));
                let refusal = Self::refuse(route, &refused, cx);
                Self::publish(
                    cx,
                    McpDecision {
                        decision: if refused.reason.is_malformed() {
                            "invalid"
                        } else {
                            "denied"
                        }
                        .into(),
                        reason: Some(refused.reason.as_str().into()),
                        ..McpDecision::default()
                    },
                );
                Step::Refuse(refusal)
            }
        }
    }

    fn on_request_body(
        &self,
        request: &mut McpRequest,
        cx: &mut Exchange<'_>,
        body: &[u8],
    ) -> BodyStep {
        let Some(route) = request.route.and_then(|i| self.config.routes.get(i)) else {
            return BodyStep::Continue;
        };
        let host = cx.host;
        let identity = cx.decisions.identity(host).cloned();
        let complete = body.len() <= route.max_message_bytes;
        let verdict = decide::decide_body(route, &head(cx), body, complete, identity.as_deref());
        let refused_reason = verdict.refused.as_ref().map(|r| r.reason);
        self.metrics
            .count(host, &self.config, &verdict.counted, refused_reason);
        Self::publish(cx, verdict.decision);
        match verdict.refused {
            Some(refused) => BodyStep::Refuse(Self::refuse(route, &refused, cx)),
            None => {
                request.listings = verdict.listings;
                BodyStep::Continue
            }
        }
    }

    fn on_response_headers(&self, request: &mut McpRequest, cx: &mut Exchange<'_>) -> ResponseStep {
        let Some(route) = request.route.and_then(|i| self.config.routes.get(i)) else {
            return ResponseStep::Continue;
        };
        if request.listings.is_empty()
            || cx.response.header(cx.host, ":status").as_deref() != Some("200")
        {
            return ResponseStep::Continue;
        }
        let content_type = cx
            .response
            .header(cx.host, "content-type")
            .unwrap_or_default();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        request.framing = match media.as_str() {
            "application/json" => Some(Framing::Json),
            "text/event-stream" => Some(Framing::Sse),
            _ => None,
        };
        if request.framing.is_none() {
            return ResponseStep::Continue;
        }
        // The answer may change length: it goes on without one.
        cx.response.remove(cx.host, "content-length");
        ResponseStep::ReadBody {
            max_bytes: route.max_list_response_bytes,
        }
    }

    fn on_response_body(
        &self,
        request: &mut McpRequest,
        cx: &mut Exchange<'_>,
        body: &[u8],
        complete: bool,
    ) -> ResponseBodyStep {
        let (Some(route), Some(framing)) = (
            request.route.and_then(|i| self.config.routes.get(i)),
            request.framing,
        ) else {
            return ResponseBodyStep::Continue;
        };
        let host = cx.host;
        if !complete {
            // A listing that cannot be seen whole is not shown at all.
            self.metrics.listings_too_large.inc(host);
            Self::log(
                host,
                LogLevel::Warn,
                "a listing answer is too large to filter; replaced by an error",
            );
            let errors: Vec<Value> = request
                .listings
                .iter()
                .map(|(id, _)| {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "the listing is too large to filter", "data": {"reason": "listing_too_large"}}})
                })
                .collect();
            let text = if errors.len() == 1 {
                errors.first().map(Value::to_string).unwrap_or_default()
            } else {
                Value::Array(errors).to_string()
            };
            return ResponseBodyStep::Replace(match framing {
                Framing::Json => text.into_bytes(),
                Framing::Sse => format!("event: message\ndata: {text}\n\n").into_bytes(),
            });
        }
        let identity = cx.decisions.identity(host).cloned();
        let keep =
            |kind: ListKind, name: &str| decide::may_list(route, kind, name, identity.as_deref());
        let rewritten = match framing {
            Framing::Json => listing::rewrite_json(body, &request.listings, &keep),
            Framing::Sse => listing::rewrite_sse(body, &request.listings, &keep),
        };
        match rewritten {
            Some(new_body) => {
                self.metrics.listings_filtered.inc(host);
                ResponseBodyStep::Replace(new_body)
            }
            None => ResponseBodyStep::Continue,
        }
    }
}

#[cfg(test)]
mod tests;
