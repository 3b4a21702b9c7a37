//! The audit filter's configuration.

use std::collections::BTreeSet;

use palisade_shared::config::{parse_json, ConfigError};
use palisade_shared::forwarded::{ForwardedHeader, TrustedProxies};
use serde::Deserialize;

/// Query parameters whose values are always replaced by `REDACTED`, unless
/// `redact_query_params` replaces the list.
pub const DEFAULT_REDACTED_PARAMS: &[&str] = &[
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "code",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "key",
    "sig",
    "signature",
    "X-Amz-Signature",
    "X-Goog-Signature",
];

/// Headers whose values are never logged, whatever the allowlists say.
pub const NEVER_LOGGED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    // Credentials by another name: API keys, session and access tokens, the
    // cloud providers' security tokens, DPoP proofs.
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "dpop",
];

/// The record layout.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    /// Palisade's own JSON (documented in the README).
    #[default]
    Palisade,
    /// Elastic Common Schema 8.
    Ecs,
    /// OCSF 1.7 HTTP Activity (class 4002).
    Ocsf,
}

/// The configuration as operators write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfigJson {
    schema: Schema,
    request_headers: Vec<String>,
    response_headers: Vec<String>,
    redact_query_params: Option<Vec<String>>,
    extra_redact_query_params: Vec<String>,
    xff_trusted_hops: u32,
    forwarded_header: ForwardedHeader,
    envoy_log: bool,
    publish_outcome: bool,
    service_name: Option<String>,
}

impl Default for AuditConfigJson {
    fn default() -> Self {
        AuditConfigJson {
            schema: Schema::Palisade,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            redact_query_params: None,
            extra_redact_query_params: Vec::new(),
            xff_trusted_hops: 0,
            forwarded_header: ForwardedHeader::default(),
            envoy_log: false,
            publish_outcome: false,
            service_name: None,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The record layout.
    pub schema: Schema,
    /// Request headers logged by value (lower case); never the secret ones.
    pub request_headers: Vec<String>,
    /// Response headers logged by value (lower case); never the secret ones.
    pub response_headers: Vec<String>,
    /// Query parameter names (lower case) whose values are redacted.
    pub redacted_params: BTreeSet<String>,
    /// Trusted proxies in front of Envoy and the header they write
    /// (`X-Forwarded-For` or `Forwarded`); with proxies, the record logs the
    /// header's hops and takes the client address from it.
    pub trusted: TrustedProxies,
    /// Also write each record to Envoy's log (info level).
    pub envoy_log: bool,
    /// Also publish the outcome (`allowed` / `denied`) as filter state
    /// `palisade.audit.outcome`, for access-log attributes (one more host
    /// call per request).
    pub publish_outcome: bool,
    /// The service name to put in the record, if any.
    pub service_name: Option<String>,
}

impl AuditConfig {
    /// Parses and validates a configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: AuditConfigJson = parse_json(bytes)?;
        let request_headers = header_allowlist(&raw.request_headers, "request_headers")?;
        let response_headers = header_allowlist(&raw.response_headers, "response_headers")?;
        let base: Vec<String> = match raw.redact_query_params {
            Some(list) => list,
            None => DEFAULT_REDACTED_PARAMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let mut redacted_params = BTreeSet::new();
        for (i, name) in base
            .iter()
            .chain(raw.extra_redact_query_params.iter())
            .enumerate()
        {
            if name.is_empty() {
                let field = if i < base.len() {
                    format!("redact_query_params[{i}]")
                } else {
                    format!("extra_redact_query_params[{}]", i - base.len())
                };
                return Err(ConfigError::invalid(field, "must not be empty"));
            }
            redacted_params.insert(name.to_ascii_lowercase());
        }
        if raw.xff_trusted_hops > 16 {
            return Err(ConfigError::invalid(
                "xff_trusted_hops",
                "must be at most 16",
            ));
        }
        Ok(AuditConfig {
            schema: raw.schema,
            request_headers,
            response_headers,
            redacted_params,
            trusted: TrustedProxies {
                hops: raw.xff_trusted_hops,
                header: raw.forwarded_header,
            },
            envoy_log: raw.envoy_log,
            publish_outcome: raw.publish_outcome,
            service_name: raw.service_name.filter(|s| !s.is_empty()),
        })
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        // The empty configuration is valid by construction.
        AuditConfig::from_json(b"{}").unwrap_or(AuditConfig {
            schema: Schema::Palisade,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            redacted_params: BTreeSet::new(),
            trusted: TrustedProxies::default(),
            envoy_log: false,
            publish_outcome: false,
            service_name: None,
        })
    }
}

fn header_allowlist(names: &[String], field: &str) -> Result<Vec<String>, ConfigError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let lower = name.to_ascii_lowercase();
            let token = |b: u8| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b);
            let valid = match lower.strip_prefix(':') {
                Some(pseudo) => !pseudo.is_empty() && pseudo.bytes().all(token),
                None => !lower.is_empty() && lower.bytes().all(token),
            };
            if !valid {
                return Err(ConfigError::invalid(
                    format!("{field}[{i}]"),
                    format!("`{name}` is not a header name"),
                ));
            }
            if NEVER_LOGGED_HEADERS.contains(&lower.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{field}[{i}]"),
                    format!("`{name}` carries credentials and is never logged"),
                ));
            }
            Ok(lower)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = AuditConfig::from_json(b"").unwrap();
        assert_eq!(c.schema, Schema::Palisade);
        assert!(c.redacted_params.contains("access_token"));
        assert!(c.redacted_params.contains("x-amz-signature"));
        assert_eq!(c.trusted, TrustedProxies::default());
    }

    #[test]
    fn schemas_and_lists() {
        let c = AuditConfig::from_json(
            br#"{"schema":"ocsf","request_headers":["X-Tenant"],"redact_query_params":["otp"],"extra_redact_query_params":["pin"]}"#,
        )
        .unwrap();
        assert_eq!(c.schema, Schema::Ocsf);
        let f = AuditConfig::from_json(br#"{"xff_trusted_hops":2,"forwarded_header":"forwarded"}"#)
            .unwrap();
        assert_eq!(
            f.trusted,
            TrustedProxies {
                hops: 2,
                header: ForwardedHeader::Forwarded
            }
        );
        assert_eq!(c.request_headers, vec!["x-tenant"]);
        assert_eq!(
            c.redacted_params.iter().collect::<Vec<_>>(),
            vec!["otp", "pin"]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = |json: &str| AuditConfig::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err(r#"{"schema":"cef"}"#).path, "schema");
        assert_eq!(err(r#"{"schemas":"ecs"}"#).path, "schemas");
        assert_eq!(
            err(r#"{"xff_trusted_hops":"two"}"#).path,
            "xff_trusted_hops"
        );
        let e = err(r#"{"request_headers":["x-a","Authorization"]}"#);
        assert_eq!(e.path, "request_headers[1]");
        assert!(e.message.contains("never logged"));
        assert_eq!(
            err(r#"{"response_headers":["set-cookie"]}"#).path,
            "response_headers[0]"
        );
        assert_eq!(
            err(r#"{"request_headers":["bad name"]}"#).path,
            "request_headers[0]"
        );
        assert_eq!(
            err(r#"{"extra_redact_query_params":[""]}"#).path,
            "extra_redact_query_params[0]"
        );
        assert_eq!(
            err(r#"{"forwarded_header":"x-real-ip"}"#).path,
            "forwarded_header"
        );
    }
}
