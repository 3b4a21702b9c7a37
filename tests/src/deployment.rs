//! How the end-to-end tests deploy Palisade: each policy as its own module
//! (the default), or every policy in the bundle, `palisade.wasm`
//! (`PALISADE_E2E_DEPLOYMENT=bundle`). Tests describe the chain once, with
//! [`crate::EnvoyConfig::wasm_filter`]; the harness turns it into either.

use serde_json::{json, Map, Value};

use crate::envoy::wasm_filter_json;
use crate::paths::{bundle_path, module_path};

/// The two ways to deploy the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One module per policy, chained (`palisade_<stage>.wasm`).
    Modules,
    /// Every policy in one VM (`palisade.wasm`).
    Bundle,
}

/// The deployment this test run uses: `PALISADE_E2E_DEPLOYMENT=bundle`, or
/// modules.
pub fn deployment() -> Deployment {
    match std::env::var("PALISADE_E2E_DEPLOYMENT").as_deref() {
        Ok("bundle") => Deployment::Bundle,
        _ => Deployment::Modules,
    }
}

/// Where a stage runs in the bundle (the audit stage may sit anywhere: it
/// acts when the request ends).
fn rank(stage: &str) -> Option<u8> {
    match stage {
        "audit" => Some(0),
        "waf" => Some(1),
        "transport" => Some(2),
        "jwt" => Some(3),
        "mfa" => Some(4),
        "mcp" => Some(5),
        "llm" => Some(6),
        "ratelimit" => Some(7),
        _ => None,
    }
}

/// One HTTP filter of a test's chain.
#[derive(Debug, Clone)]
pub(crate) enum ChainFilter {
    /// A Palisade policy and its configuration.
    Palisade { stage: String, config: Value },
    /// Any other filter, as Envoy JSON.
    Native(Value),
}

/// The Envoy filter entries for a chain. In the bundle deployment, each run
/// of consecutive policies that the bundle can run in its own order becomes
/// one `palisade.wasm` filter with a section per policy (a policy that
/// comes again, or out of order, starts another).
pub(crate) fn http_filters(chain: &[ChainFilter], deployment: Deployment) -> Vec<Value> {
    let mut out = Vec::new();
    let mut group: Vec<(&str, &Value)> = Vec::new();
    let mut bundles = 0;
    let mut flush = |group: &mut Vec<(&str, &Value)>, out: &mut Vec<Value>| {
        if group.is_empty() {
            return;
        }
        let sections: Map<String, Value> = group
            .drain(..)
            .map(|(stage, config)| (stage.to_string(), config.clone()))
            .collect();
        bundles += 1;
        let name = if bundles == 1 {
            "palisade".to_string()
        } else {
            format!("palisade-{bundles}")
        };
        out.push(wasm_filter_json(
            &name,
            "palisade",
            &bundle_path(),
            &json!(sections),
        ));
    };
    for filter in chain {
        match (filter, deployment) {
            (ChainFilter::Native(value), _) => {
                flush(&mut group, &mut out);
                out.push(value.clone());
            }
            (ChainFilter::Palisade { stage, config }, Deployment::Modules) => {
                let id = format!("palisade_{stage}");
                out.push(wasm_filter_json(&id, &id, &module_path(stage), config));
            }
            (ChainFilter::Palisade { stage, config }, Deployment::Bundle) => {
                let fits = group.iter().all(|(s, _)| {
                    *s != stage && (rank(s) < rank(stage) || *s == "audit" || stage == "audit")
                });
                if !fits {
                    flush(&mut group, &mut out);
                }
                group.push((stage, config));
            }
        }
    }
    flush(&mut group, &mut out);
    out
}

/// The path of a configuration field as Envoy's log names it: the field
/// itself for a policy's own module, under the policy's section in the bundle.
pub fn config_field(stage: &str, field: &str) -> String {
    match deployment() {
        Deployment::Modules => field.to_string(),
        Deployment::Bundle => format!("{stage}.{field}"),
    }
}

/// How Envoy's log reports a configuration a policy refuses: the start of
/// the line, up to and including the field.
pub fn config_error(stage: &str, field: &str) -> String {
    match deployment() {
        Deployment::Modules => format!("palisade.{stage}: invalid configuration at `{field}`"),
        Deployment::Bundle => format!("palisade: invalid configuration at `{stage}.{field}`"),
    }
}
