//! The cross-filter contract: what each filter publishes as Envoy filter state.
//!
//! A filter publishes its decision with `set_property(<name>, json)`; Envoy
//! stores it as filter state `wasm.<name>`, later filters in the chain read it
//! with `get_property`, and Envoy's access log can print it with
//! `%FILTER_STATE(wasm.<name>:PLAIN)%`. Clients cannot write filter state, so
//! nothing here can be forged by a request header.
//!
//! | property | written by | type |
//! |---|---|---|
//! | `palisade.identity` | jwt, only for a verified token | [`Identity`] |
//! | `palisade.identities` | jwt, when a rule required several tokens (`all`) | array of [`Identity`], in the rule's provider order; the first is `palisade.identity` |
//! | `palisade.mfa` | mfa | [`MfaDecision`] |
//! | `palisade.ratelimit` | ratelimit | [`RateLimitDecision`] |
//! | `palisade.waf` | waf | [`WafDecision`] |
//! | `palisade.mcp` | mcp | [`McpDecision`] |
//! | `palisade.llm` | llm, for a recognized LLM API call (updated with the usage when the response ends) | [`LlmDecision`] |
//! | `palisade.tls` | transport | [`TlsDecision`] |
//! | `palisade.denial` | whichever filter refuses the request | [`Denial`] |
//! | `palisade.audit` | audit | the finished audit record |
//! | `palisade.audit.outcome` | audit, with `publish_outcome` | `allowed` or `denied` (plain text, for access-log attributes) |

use serde::{Deserialize, Serialize};

/// Property name of the verified identity.
pub const IDENTITY: &str = "palisade.identity";
/// Property name of every verified identity, when a rule required a token
/// from each of several providers: a JSON array of [`Identity`].
pub const IDENTITIES: &str = "palisade.identities";
/// Property name of the MFA step-up decision.
pub const MFA: &str = "palisade.mfa";
/// Property name of the rate-limit decision.
pub const RATELIMIT: &str = "palisade.ratelimit";
/// Property name of the WAF decision.
pub const WAF: &str = "palisade.waf";
/// Property name of the MCP decision.
pub const MCP: &str = "palisade.mcp";
/// Property name of the LLM gateway decision: model, tokens, budget.
pub const LLM: &str = "palisade.llm";
/// Property name of the transport filter's view of the connection.
pub const TLS: &str = "palisade.tls";
/// Property name of the refusal, written by the filter that refused.
pub const DENIAL: &str = "palisade.denial";
/// Property name of the finished audit record.
pub const AUDIT: &str = "palisade.audit";
/// Property name of the audit record's outcome, `allowed` or `denied`, as
/// plain text: an access logger can send it as an attribute (for instance
/// the OpenTelemetry one, `envoy/audit-otlp.yaml`) without parsing the record.
pub const AUDIT_OUTCOME: &str = "palisade.audit.outcome";

/// The identity of a verified bearer token. Written only after the token's
/// signature, issuer, audience and times have been checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The configured provider that verified the token.
    pub provider: String,
    /// `iss`.
    pub iss: String,
    /// `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `aud`, always as a list.
    pub aud: Vec<String>,
    /// `client_id` (RFC 9068) or `azp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Scopes, from `scope` (space separated) or `scp` (array).
    pub scope: Vec<String>,
    /// `acr`: the authentication context class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// `amr`: the authentication methods (RFC 8176).
    pub amr: Vec<String>,
    /// `auth_time`, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// `exp`, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// A claim of [`Identity`] a configuration can name: a value a rule requires
/// (MCP, LLM) or a rate-limit key. One list, so every policy accepts the
/// same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityClaim {
    /// The provider that verified the token.
    Provider,
    /// `iss`.
    Iss,
    /// `sub`.
    Sub,
    /// `client_id` / `azp`.
    ClientId,
    /// `acr`.
    Acr,
    /// `jti`.
    Jti,
    /// `aud` (a list).
    Aud,
    /// `amr` (a list).
    Amr,
    /// The scopes (a list).
    Scope,
}

impl IdentityClaim {
    /// Every claim, single values first.
    pub const ALL: [IdentityClaim; 9] = [
        IdentityClaim::Provider,
        IdentityClaim::Iss,
        IdentityClaim::Sub,
        IdentityClaim::ClientId,
        IdentityClaim::Acr,
        IdentityClaim::Jti,
        IdentityClaim::Aud,
        IdentityClaim::Amr,
        IdentityClaim::Scope,
    ];

    /// Its name in configurations.
    pub fn name(self) -> &'static str {
        match self {
            IdentityClaim::Provider => "provider",
            IdentityClaim::Iss => "iss",
            IdentityClaim::Sub => "sub",
            IdentityClaim::ClientId => "client_id",
            IdentityClaim::Acr => "acr",
            IdentityClaim::Jti => "jti",
            IdentityClaim::Aud => "aud",
            IdentityClaim::Amr => "amr",
            IdentityClaim::Scope => "scope",
        }
    }

    /// The claim named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The names of the claims `keep` accepts, for error messages.
    pub fn names(keep: impl Fn(IdentityClaim) -> bool) -> String {
        let names: Vec<&str> = Self::ALL
            .into_iter()
            .filter(|c| keep(*c))
            .map(Self::name)
            .collect();
        names.join(", ")
    }

    /// Whether the claim holds a list (`aud`, `amr`, scopes).
    pub fn is_list(self) -> bool {
        matches!(
            self,
            IdentityClaim::Aud | IdentityClaim::Amr | IdentityClaim::Scope
        )
    }

    /// The value of a single-valued claim; `None` when it is absent or
    /// empty, or a list.
    pub fn value(self, identity: &Identity) -> Option<&str> {
        let value = match self {
            IdentityClaim::Provider => Some(identity.provider.as_str()),
            IdentityClaim::Iss => Some(identity.iss.as_str()),
            IdentityClaim::Sub => identity.sub.as_deref(),
            IdentityClaim::ClientId => identity.client_id.as_deref(),
            IdentityClaim::Acr => identity.acr.as_deref(),
            IdentityClaim::Jti => identity.jti.as_deref(),
            IdentityClaim::Aud | IdentityClaim::Amr | IdentityClaim::Scope => None,
        };
        value.filter(|v| !v.is_empty())
    }

    /// Whether the identity holds one of `wanted` for this claim (any of a
    /// list's values). An absent or empty claim holds nothing.
    pub fn holds_one_of(self, identity: &Identity, wanted: &[String]) -> bool {
        let list = match self {
            IdentityClaim::Aud => &identity.aud,
            IdentityClaim::Amr => &identity.amr,
            IdentityClaim::Scope => &identity.scope,
            single => {
                return single
                    .value(identity)
                    .is_some_and(|v| wanted.iter().any(|w| w == v))
            }
        };
        list.iter().any(|v| !v.is_empty() && wanted.contains(v))
    }
}

/// The MFA step-up filter's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MfaDecision {
    /// The policy that applied.
    pub policy: String,
    /// `passed`, `challenged` or `unauthenticated`.
    pub outcome: String,
    /// The acr values the policy asked for.
    pub required_acr: Vec<String>,
    /// The policy's `max_age` in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

/// The rate-limit filter's decision: the most restrictive matching rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitDecision {
    /// The rule's name.
    pub rule: String,
    /// Whether the request was (or, in shadow mode, would have been) refused.
    pub limited: bool,
    /// Whether the rule is in shadow mode (counted, never refused).
    pub shadow: bool,
    /// Tokens left in the bucket.
    pub remaining: u64,
    /// Seconds until the bucket is full again (or has a token, when limited).
    pub reset: u64,
}

/// One signature that matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WafMatch {
    /// The rule id.
    pub rule_id: u32,
    /// The rule family (`sqli`, `xss`, ...).
    pub family: String,
    /// Where it matched, such as `args:q` or `header:user-agent`.
    pub location: String,
}

/// The WAF's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WafDecision {
    /// The inbound anomaly score.
    pub score: u32,
    /// The signatures that matched.
    pub matches: Vec<WafMatch>,
    /// `allowed`, `blocked`, `detected` (detect-only mode) or `csrf_blocked`.
    pub action: String,
    /// Whether the request body was inspected (up to the WAF's
    /// `max_body_bytes`). `false` when there is no body, when a route
    /// exclusion turned body inspection off, when the decision was made at
    /// the headers (a refusal of the head), or when the body was refused
    /// for its size. Absent in decisions written before this field existed.
    pub body_inspected: bool,
}

/// The MCP filter's decision on one JSON-RPC message (for a batch, on its
/// first refused message, else its first message).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct McpDecision {
    /// The JSON-RPC method (`tools/call`, ...); empty for a response the
    /// client sent, or for a GET or DELETE of the endpoint.
    pub method: String,
    /// The tool of a `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The resource URI of a `resources/read` (or subscribe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The prompt of a `prompts/get`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The JSON-RPC id, as text (a string id as is, an integer in decimal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `allowed`, `denied` or `invalid` (a malformed message).
    pub decision: String,
    /// Why it was denied or invalid, such as `tool_denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many messages the body held, when it was a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    /// The tool arguments the route lists for logging, by name, as text
    /// (truncated); every other argument is left out.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub arguments: std::collections::BTreeMap<String, String>,
}

/// The LLM gateway's decision on one LLM API call: the model asked for,
/// the tokens it used and what its budget has left. Published when the
/// request is decided and again, with the usage, when the response ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmDecision {
    /// The API's provider format: `openai` (OpenAI-compatible) or `anthropic`.
    pub provider: String,
    /// The operation, as the OpenTelemetry GenAI conventions name it:
    /// `chat`, `text_completion` or `embeddings`.
    pub operation: String,
    /// The model the request asked for (`gen_ai.request.model`).
    pub model: String,
    /// The model the response named, when it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// Whether the response was asked for as a stream (SSE).
    pub stream: bool,
    /// The output-token limit sent upstream (after any cap), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Whether the stage lowered (or set) the request's output-token limit.
    pub capped: bool,
    /// `allowed`, or why the call was refused: `model_not_allowed`,
    /// `max_tokens_exceeded`, `budget_exceeded`, `invalid_request`, ...
    pub outcome: String,
    /// Input (prompt) tokens, as the provider reported them (or estimated).
    pub input_tokens: u64,
    /// Output (completion) tokens, as the provider reported them (or estimated).
    pub output_tokens: u64,
    /// Where the token counts come from: `reported` (the provider's
    /// `usage`), `estimated` (no usage in the response: the configured
    /// estimate was charged) or `pending` (the response has not ended, or
    /// the call never reached the provider).
    pub usage: String,
    /// Tokens charged to the budgets (input and output weighted per model).
    pub charged: u64,
    /// The budget rule with the fewest tokens left, when one applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// What that budget is keyed on, as `descriptor=value` pairs (header
    /// values as a hash: they may be credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_key: Option<String>,
    /// Tokens that budget has left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
}

/// The downstream connection as the transport filter saw it, and what its
/// policy made of it. Every field comes from Envoy's attributes of the
/// connection it terminated (or from the certificate Envoy forwarded, only
/// when its digest is the connection's), never from a client header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsDecision {
    /// The policy that applied, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `passed`, `refused`, `redirected` or `no_policy`.
    pub outcome: String,
    /// The requirement that failed, when refused or redirected (`tls`,
    /// `min_version`, `cipher`, `client_certificate`,
    /// `client_certificate.uri_san`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// The TLS version (`TLSv1.3`); absent on a plaintext connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The cipher suite (IANA or OpenSSL name, as Envoy reports it), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// The server name the client asked for (SNI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Whether the client presented a certificate.
    pub peer_certificate_presented: bool,
    /// Whether Envoy validated it (the listener has a validation context
    /// and completed the handshake with it).
    pub peer_certificate_validated: bool,
    /// Its subject, RFC 2253 as Envoy prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_subject: Option<String>,
    /// Its issuer, when known (the full certificate was available).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_issuer: Option<String>,
    /// Its DNS subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_dns_sans: Vec<String>,
    /// Its URI subject alternative names (SPIFFE IDs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_uri_sans: Vec<String>,
    /// The SHA-256 of its DER encoding, lower-case hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_sha256: Option<String>,
    /// Its serial number, upper-case hex, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_serial_number: Option<String>,
    /// Its `notBefore`, seconds since the epoch, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_not_before: Option<i64>,
    /// Its `notAfter`, seconds since the epoch, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_not_after: Option<i64>,
}

/// A request refused by a filter: which one, with what status, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Denial {
    /// The filter that refused: `jwt`, `mfa`, `ratelimit`, `waf`.
    pub filter: String,
    /// The HTTP status it answered with.
    pub status: u16,
    /// A short machine-readable reason, such as `token_expired`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_skips_absent_claims() {
        let id = Identity {
            provider: "corp".into(),
            iss: "https://idp".into(),
            sub: Some("alice".into()),
            aud: vec!["api".into()],
            ..Identity::default()
        };
        let json = serde_json::to_string(&id).unwrap();
        assert!(!json.contains("acr"), "{json}");
        let back: Identity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn identity_claims_read_the_right_field() {
        let id = Identity {
            provider: "corp".into(),
            iss: "https://idp".into(),
            sub: Some("alice".into()),
            client_id: Some("app".into()),
            acr: Some("mfa".into()),
            jti: Some("t-1".into()),
            aud: vec!["api".into(), "mcp".into()],
            amr: vec!["pwd".into(), "otp".into()],
            scope: vec!["read".into()],
            ..Identity::default()
        };
        let single = [
            ("provider", "corp"),
            ("iss", "https://idp"),
            ("sub", "alice"),
            ("client_id", "app"),
            ("acr", "mfa"),
            ("jti", "t-1"),
        ];
        for (name, want) in single {
            let claim = IdentityClaim::parse(name).unwrap();
            assert_eq!(claim.name(), name);
            assert_eq!(claim.value(&id), Some(want));
            assert!(claim.holds_one_of(&id, &["x".into(), want.into()]));
            assert!(!claim.holds_one_of(&id, &["x".into()]));
        }
        for (name, member) in [("aud", "mcp"), ("amr", "otp"), ("scope", "read")] {
            let claim = IdentityClaim::parse(name).unwrap();
            assert!(claim.is_list() && claim.value(&id).is_none());
            assert!(claim.holds_one_of(&id, &[member.into()]));
            assert!(!claim.holds_one_of(&id, &["write".into()]));
        }
        assert!(IdentityClaim::parse("email").is_none());
        // An absent or empty claim holds nothing, not even "".
        let empty = Identity::default();
        assert_eq!(IdentityClaim::Provider.value(&empty), None);
        assert!(!IdentityClaim::Sub.holds_one_of(&empty, &["".into()]));
        assert!(!IdentityClaim::Provider.holds_one_of(&empty, &["".into()]));
        assert_eq!(
            IdentityClaim::names(|c| !c.is_list()),
            "provider, iss, sub, client_id, acr, jti"
        );
    }

    #[test]
    fn tls_decision_round_trips() {
        let tls = TlsDecision {
            outcome: "passed".into(),
            version: Some("TLSv1.3".into()),
            peer_uri_sans: vec!["spiffe://cluster.local/ns/shop/sa/checkout".into()],
            ..TlsDecision::default()
        };
        let json = serde_json::to_string(&tls).unwrap();
        assert!(!json.contains("peer_dns_sans"), "{json}");
        assert_eq!(serde_json::from_str::<TlsDecision>(&json).unwrap(), tls);
        let plaintext: TlsDecision = serde_json::from_str(r#"{"outcome":"refused"}"#).unwrap();
        assert!(plaintext.version.is_none() && !plaintext.peer_certificate_presented);
    }

    #[test]
    fn decisions_tolerate_missing_fields() {
        let d: Denial = serde_json::from_str(r#"{"filter":"waf"}"#).unwrap();
        assert_eq!(d.filter, "waf");
        assert_eq!(d.status, 0);
    }
}
