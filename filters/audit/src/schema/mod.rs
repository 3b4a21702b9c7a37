//! The record layouts: Palisade's own, Elastic Common Schema, OCSF.

mod ecs;
mod ocsf;

use serde_json::Value;

use crate::config::{AuditConfig, Schema};
use crate::record::AuditRecord;

/// The version tag of Palisade's own layout.
pub const PALISADE_SCHEMA: &str = "palisade/1";

/// Renders a record in the configured schema, as one line of JSON.
pub fn render(record: &AuditRecord, config: &AuditConfig) -> String {
    match config.schema {
        // Straight from the record's own layout: no intermediate tree.
        Schema::Palisade => serde_json::to_string(&Tagged {
            schema: PALISADE_SCHEMA,
            record,
        })
        .unwrap_or_default(),
        Schema::Ecs => ecs::render(record).to_string(),
        Schema::Ocsf => ocsf::render(record).to_string(),
    }
}

#[derive(serde::Serialize)]
struct Tagged<'a> {
    schema: &'static str,
    #[serde(flatten)]
    record: &'a AuditRecord,
}

/// The custom field set `palisade` of the standard schemas (ECS `palisade.*`,
/// OCSF `unmapped.palisade`): what those schemas have no field for. The
/// filters' decisions (`identity`, `mfa`, `mcp`, `llm`, `ratelimit`, `waf`, `denial`), the
/// forwarding header's hops as written (`client.forwarded_for`, any text)
/// and why the client address is not the trusted hop
/// (`client.address_fallback`); with `headers`, the logged request and
/// response headers (`request.headers.<name>`, `response.headers.<name>`).
pub(crate) fn custom_fields(record: &AuditRecord, headers: bool) -> Value {
    let mut fields = serde_json::to_value(&record.decisions).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut fields {
        let client = &record.client;
        map.insert(
            "client".into(),
            serde_json::json!({
                "forwarded_for": (!client.forwarded_for.is_empty()).then_some(&client.forwarded_for),
                "address_fallback": client.address_fallback,
            }),
        );
        if headers {
            let non_empty = |h: &std::collections::BTreeMap<String, String>| {
                (!h.is_empty()).then(|| serde_json::json!({ "headers": h }))
            };
            map.insert(
                "request".into(),
                serde_json::json!(non_empty(&record.request.headers)),
            );
            map.insert(
                "response".into(),
                serde_json::json!(non_empty(&record.response.headers)),
            );
        }
    }
    fields
}

/// Host and port of an authority (`Host` / `:authority`). An IPv6 literal
/// keeps its brackets: that is how a URL writes it, and what ECS `url.domain`
/// asks for.
pub(crate) fn authority_host_port(authority: Option<&str>) -> (Option<String>, Option<u16>) {
    let Some(a) = authority.filter(|a| !a.is_empty()) else {
        return (None, None);
    };
    let split = match a.strip_prefix('[') {
        Some(rest) => rest.find(']').and_then(|end| {
            let (host, tail) = a.split_at(end + 2);
            match tail {
                "" => Some((host, None)),
                _ => tail.strip_prefix(':').map(|p| (host, Some(p))),
            }
        }),
        // An unbracketed IPv6 address has no port.
        None => Some(match a.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (a, None),
        }),
    };
    match split {
        Some((host, None)) => (Some(host.to_string()), None),
        Some((host, Some(port))) => match port.parse::<u16>() {
            Ok(p) => (Some(host.to_string()), Some(p)),
            // `h:` or `h:x`: not a port; the authority is kept whole.
            Err(_) => (Some(a.to_string()), None),
        },
        None => (Some(a.to_string()), None),
    }
}

/// Removes nulls and empty objects, so absent facts are absent fields.
pub(crate) fn prune(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let pruned: serde_json::Map<String, Value> = map
                .into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !v.is_null() && !matches!(v, Value::Object(m) if m.is_empty()))
                .collect();
            Value::Object(pruned)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(prune).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestFacts;

    #[test]
    fn palisade_layout_is_tagged() {
        let config = AuditConfig::default();
        let record = AuditRecord::build(&RequestFacts::default(), &config);
        let v: Value = serde_json::from_str(&render(&record, &config)).unwrap();
        assert_eq!(v["schema"], PALISADE_SCHEMA);
        assert_eq!(v["outcome"], "allowed");
    }

    /// With the certificate Envoy forwards, both schemas carry its issuer and
    /// serial number; without it (or with one that is not the connection's),
    /// OCSF has no `tls.certificate` and ECS only the subject.
    #[test]
    fn the_forwarded_client_certificate_reaches_both_schemas() {
        use crate::certificate::fixture;
        let digest = fixture::sha256_hex();
        let facts = |xfcc: Option<String>| RequestFacts {
            method: Some("GET".into()),
            path: Some("/".into()),
            status: Some(200),
            source_address: Some("127.0.0.1:5000".into()),
            tls_version: Some("TLSv1.3".into()),
            peer_subject: Some("CN=client,O=Palisade Test".into()),
            peer_sha256: Some(digest.clone()),
            request_headers: xfcc
                .map(|x| vec![(crate::record::XFCC.to_string(), x)])
                .unwrap_or_default(),
            ..RequestFacts::default()
        };
        let render_as = |schema: &str, f: &RequestFacts| -> Value {
            let config =
                AuditConfig::from_json(format!(r#"{{"schema":"{schema}"}}"#).as_bytes()).unwrap();
            serde_json::from_str(&render(&AuditRecord::build(f, &config), &config)).unwrap()
        };
        let with = facts(Some(fixture::xfcc_for(fixture::PEM, &digest)));
        let issuer = r#"CN=client\, \"one\",O=Palisade Test"#;
        let ocsf = render_as("ocsf", &with);
        let cert = &ocsf["tls"]["certificate"];
        assert_eq!(cert["issuer"], issuer);
        assert_eq!(cert["serial_number"], "A1B2C3D4E5F60718");
        assert_eq!(cert["subject"], "CN=client,O=Palisade Test");
        assert_eq!(cert["fingerprints"][0]["value"], digest.as_str());
        assert!(cert["expiration_time"].as_i64() > cert["created_time"].as_i64());
        assert_eq!(ocsf["tls"]["version"], "TLSv1.3");
        let ecs = render_as("ecs", &with);
        assert_eq!(ecs["tls"]["client"]["issuer"], issuer);
        assert_eq!(
            ecs["tls"]["client"]["x509"]["serial_number"],
            "A1B2C3D4E5F60718"
        );
        assert_eq!(
            ecs["tls"]["client"]["hash"]["sha256"],
            digest.to_ascii_uppercase()
        );
        assert_eq!(ecs["tls"]["version"], "1.3");
        let palisade = render_as("palisade", &with);
        assert_eq!(palisade["tls"]["peer_issuer"], issuer);

        let forged = facts(Some(fixture::xfcc_for(fixture::PEM, &"0".repeat(64))));
        for without in [facts(None), forged] {
            let ocsf = render_as("ocsf", &without);
            assert!(ocsf["tls"].get("certificate").is_none(), "{ocsf}");
            assert_eq!(
                ocsf["unmapped"]["palisade"]["tls"]["peer_subject"],
                "CN=client,O=Palisade Test"
            );
            let ecs = render_as("ecs", &without);
            assert!(ecs["tls"]["client"].get("issuer").is_none());
            assert_eq!(ecs["tls"]["client"]["subject"], "CN=client,O=Palisade Test");
        }
    }

    #[test]
    fn authority_host_and_port() {
        let cases = [
            (Some("h:80"), (Some("h"), Some(80))),
            (Some("h"), (Some("h"), None)),
            (Some("[::1]:80"), (Some("[::1]"), Some(80))),
            (Some("[2001:db8::1]"), (Some("[2001:db8::1]"), None)),
            (Some("h:x"), (Some("h:x"), None)),
            (Some("h:99999"), (Some("h:99999"), None)),
            (Some("[::1"), (Some("[::1"), None)),
            (Some("[::1]x"), (Some("[::1]x"), None)),
            (Some("::1"), (Some("::1"), None)),
            (Some(""), (None, None)),
            (None, (None, None)),
        ];
        for (authority, (host, port)) in cases {
            assert_eq!(
                authority_host_port(authority),
                (host.map(str::to_string), port),
                "{authority:?}"
            );
        }
    }

    #[test]
    fn prune_drops_nulls_and_empty_objects() {
        let v =
            prune(serde_json::json!({"a": null, "b": {"c": null}, "d": [1, {"e": null}], "f": 0}));
        assert_eq!(v, serde_json::json!({"d": [1, {}], "f": 0}));
    }
}
