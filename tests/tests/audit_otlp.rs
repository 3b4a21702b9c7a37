//! Audit records shipped over OTLP/gRPC with the shipped
//! `envoy/audit-otlp.yaml` (Envoy's own `envoy.access_loggers.open_telemetry`
//! and OpenTelemetry tracer), to a receiver built on the official
//! OpenTelemetry protobuf definitions (`palisade_e2e::OtlpReceiver`): every
//! record arrives, byte for byte the record Envoy's file access log writes
//! for the same request, parseable and conforming to its schema, with the
//! request id, the outcome and the request's trace id beside it.

use std::path::Path;

use palisade_e2e::audit_schemas::{check_line, schema_of, RecordSchema};
use palisade_e2e::{
    module_path, repo_root, run_dir, wasm_filter_json, EchoUpstream, Envoy, OtlpReceiver, Request,
    AUDIT_LOG_FORMAT,
};
use serde_json::{json, Value};

/// `envoy/audit-otlp.yaml` on free ports, with the audit filter in `schema`,
/// a rate limit of two requests in front (so some requests are denied),
/// and a file access log of the same records in `dir` to compare with.
fn shipped_config(schema: &str, dir: &Path, upstream: &EchoUpstream, collector: u16) -> Value {
    let yaml = std::fs::read_to_string(repo_root().join("envoy/audit-otlp.yaml")).unwrap();
    let mut v: Value = serde_norway::from_str(&yaml).unwrap();
    v["admin"]["address"]["socket_address"]["port_value"] = json!(0);
    let listener = &mut v["static_resources"]["listeners"][0];
    listener["address"]["socket_address"]["port_value"] = json!(0);
    let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["access_log"][0]["typed_config"]["common_config"]["buffer_flush_interval"] = json!("0.2s");
    hcm["access_log"].as_array_mut().unwrap().push(json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": dir.join("access.log").display().to_string(),
            "log_format": { "text_format_source": { "inline_string": AUDIT_LOG_FORMAT } }
        }
    }));
    let filters = hcm["http_filters"].as_array_mut().unwrap();
    let audit = &mut filters[0]["typed_config"]["config"];
    audit["vm_config"]["code"]["local"]["filename"] =
        json!(module_path("audit").display().to_string());
    let mut plugin: Value =
        serde_json::from_str(audit["configuration"]["value"].as_str().unwrap()).unwrap();
    plugin["schema"] = json!(schema);
    audit["configuration"]["value"] = json!(plugin.to_string());
    filters.insert(
        1,
        wasm_filter_json(
            "palisade_ratelimit",
            "palisade_ratelimit",
            &module_path("ratelimit"),
            &json!({"rules": [{"name": "two", "token_bucket": {"max_tokens": 2, "fill_interval": "3600s"}}]}),
        ),
    );
    for cluster in v["static_resources"]["clusters"].as_array_mut().unwrap() {
        let port = match cluster["name"].as_str() {
            Some("echo") => upstream.addr().port(),
            Some("otel_collector") => collector,
            other => panic!("unexpected cluster {other:?}"),
        };
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"] = json!(port);
    }
    v
}

const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";

#[test]
fn every_record_reaches_the_collector_intact_with_its_attributes() {
    for (schema, expected) in [("ocsf", RecordSchema::Ocsf), ("ecs", RecordSchema::Ecs)] {
        let receiver = OtlpReceiver::start();
        let upstream = EchoUpstream::start();
        let dir = run_dir();
        let config = shipped_config(schema, &dir, &upstream, receiver.port());
        let path = dir.join("audit-otlp.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut envoy = Envoy::run(&dir, &path, 1, &[]);
        envoy.audit_log_in_dir();

        let traced = |path: &str, trace: &str| {
            Request::get(path).header("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))
        };
        let statuses: Vec<u16> = [
            traced("/a?token=SECRET", TRACE_A),
            traced("/b", TRACE_B),
            Request::get("/c"),
            Request::new("PURGE", "/d"),
        ]
        .into_iter()
        .map(|r| envoy.request(r).status)
        .collect();
        assert_eq!(statuses, [200, 200, 429, 429], "{schema}");

        let lines = envoy.wait_access_log(4);
        let logs = receiver.wait_logs(4);
        assert_eq!(
            logs.len(),
            4,
            "{schema}: every record arrives once: {logs:?}"
        );
        let mut bodies: Vec<String> = logs
            .iter()
            .map(|l| {
                l["body"]
                    .as_str()
                    .expect("the body is the record, a string")
                    .to_string()
            })
            .collect();
        let mut written = lines.clone();
        bodies.sort();
        written.sort();
        assert_eq!(
            bodies, written,
            "{schema}: intact, as the file access log wrote them"
        );

        for log in &logs {
            let body = log["body"].as_str().unwrap();
            check_line(body).unwrap_or_else(|e| panic!("{schema}: {e}"));
            let record: Value = serde_json::from_str(body).unwrap();
            assert_eq!(schema_of(&record), Some(expected), "{body}");
            assert!(!body.contains("SECRET"));
            let (request_id, path, denied) = match expected {
                RecordSchema::Ocsf => (
                    &record["metadata"]["uid"],
                    &record["http_request"]["url"]["path"],
                    record["action_id"] == 2,
                ),
                _ => (
                    &record["http"]["request"]["id"],
                    &record["url"]["path"],
                    record["event"]["type"]
                        .as_array()
                        .unwrap()
                        .contains(&json!("denied")),
                ),
            };
            let attributes = &log["attributes"];
            assert_eq!(&attributes["request_id"], request_id, "{log}");
            assert_eq!(
                attributes["palisade.outcome"],
                if denied { "denied" } else { "allowed" },
                "{log}"
            );
            let trace = log["trace_id"].as_str().unwrap();
            match path.as_str().unwrap() {
                "/a" => assert_eq!(trace, TRACE_A, "the client's trace continues"),
                "/b" => assert_eq!(trace, TRACE_B),
                _ => assert!(
                    trace.len() == 32 && trace != TRACE_A && trace != TRACE_B,
                    "a trace of its own: {trace}"
                ),
            }
            assert_eq!(log["span_id"].as_str().unwrap().len(), 16, "{log}");
            assert_eq!(log["resource"]["service.name"], "palisade", "{log}");
            assert_eq!(log["resource"]["log_name"], "palisade.audit", "{log}");
        }
        let denied = logs
            .iter()
            .filter(|l| l["attributes"]["palisade.outcome"] == "denied")
            .count();
        assert_eq!(denied, 2, "{schema}");
        drop(envoy);
    }
}
