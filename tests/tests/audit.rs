//! The audit filter in a real Envoy: one record per request in the access
//! log, in each schema, with every secret redacted.

use palisade_e2e::{EchoUpstream, Envoy, EnvoyConfig, Request};
use serde_json::{json, Value};

fn envoy_with(config: Value) -> (EchoUpstream, Envoy) {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("audit", config)
        .upstream(&upstream)
        .start();
    (upstream, envoy)
}

fn records(envoy: &Envoy, n: usize) -> Vec<Value> {
    let lines = envoy.wait_access_log(n);
    assert_eq!(lines.len(), n, "access log: {lines:?}");
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn palisade_record_describes_the_request_and_response() {
    let (_up, envoy) = envoy_with(json!({ "request_headers": ["x-tenant"] }));
    let response = envoy.request(
        Request::post("/orders/7?page=2", r#"{"qty":1}"#)
            .header("user-agent", "e2e/1.0")
            .header("x-tenant", "acme")
            .header("content-type", "application/json"),
    );
    assert_eq!(response.status, 200);
    let record = &records(&envoy, 1)[0];
    assert_eq!(record["schema"], "palisade/1");
    assert_eq!(record["outcome"], "allowed");
    assert_eq!(record["request"]["method"], "POST");
    assert_eq!(record["request"]["path"], "/orders/7");
    assert_eq!(record["request"]["query"], "page=2");
    assert_eq!(record["request"]["authority"], "localhost");
    assert_eq!(record["request"]["scheme"], "http");
    assert_eq!(record["request"]["protocol"], "HTTP/1.1");
    assert_eq!(record["request"]["user_agent"], "e2e/1.0");
    assert_eq!(record["request"]["headers"]["x-tenant"], "acme");
    assert_eq!(record["response"]["status"], 200);
    assert_eq!(record["response"]["code_details"], "via_upstream");
    assert!(record["response"]["bytes"].as_u64().unwrap() > 0);
    assert!(record["request"]["bytes"].as_u64().unwrap() > 9);
    assert_eq!(record["client"]["address"], "127.0.0.1");
    assert_eq!(record["upstream"]["cluster"], "upstream");
    assert!(record["upstream"]["host"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(record["duration_ms"].as_f64().unwrap() >= 0.0);
    let id = record["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID from Envoy: {id}");
    let time = record["time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.len() == 24, "{time}");
    assert_eq!(envoy.counter("palisade.audit.records_written"), Some(1));
}
