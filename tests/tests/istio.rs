//! The Istio `WasmPlugin` manifests, rendered by `palisade-oci` for every
//! module in `dist/` from the templates in `envoy/istio/`: the five separate
//! modules into one folder with its kustomization, the bundle
//! (`palisade.wasm`) into another with its own.
//!
//! - each is what the Kubernetes API server would admit: it validates
//!   against the `openAPIV3Schema` of the WasmPlugin CRD in
//!   `../shared/corpora/istio` (objects closed as `kubectl apply`'s strict
//!   field validation does), plus the CRD's CEL rules, checked by hand;
//! - the phases and priorities make Istio run WAF, transport, JWT, MFA, MCP, LLM, rate limit, and
//!   audit last in STATS; security filters fail closed, audit fails open;
//!   the bundle runs where the WAF would and fails closed;
//! - `sha256` is the digest of the image `make oci` pushes (or of the module
//!   for a plain URL), `pluginConfig` the README's example, and the module
//!   accepts that configuration (Envoy loads the whole chain, and the
//!   bundle, from the files the manifests' `file://` URLs name, with the
//!   manifests' root ids and plugin configs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use palisade_e2e::{dist_dir, envoy_bin, repo_root, shared_corpora, wasm_filter_json, EnvoyConfig};
use palisade_oci::image::Variant;
use palisade_oci::target::Target;
use palisade_oci::{wasmplugin, write_manifests, ManifestDirs, Module, ModuleKind, ModuleSource};
use serde_json::{json, Value};

/// The order Istio must run the separate modules in (those that are built).
const CHAIN: [&str; 8] = [
    "waf",
    "transport",
    "jwt",
    "mfa",
    "mcp",
    "llm",
    "ratelimit",
    "audit",
];
const TAG: &str = "0.1.0";

#[derive(Clone)]
struct Rendered {
    name: String,
    kind: ModuleKind,
    manifest: Value,
}

/// The kustomization in `dir`: the files it lists.
fn kustomization_resources(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("kustomization.yaml"))
        .unwrap_or_else(|e| panic!("{}/kustomization.yaml: {e}", dir.display()));
    let kustomization: Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(kustomization["kind"], "Kustomization");
    kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// Renders every module's manifest with `source` into fresh folders. Checks
/// that each kustomization lists exactly its kind's manifests: the separate
/// modules' never the bundle, the bundle's only the bundle.
fn render(source: &ModuleSource) -> (Vec<Module>, Vec<Rendered>) {
    let root = repo_root();
    let modules = Module::all_in(&dist_dir()).expect("built modules (make build)");
    assert!(
        modules.iter().any(|m| m.kind == ModuleKind::Bundle)
            && modules.iter().any(|m| m.kind == ModuleKind::Filter),
        "make build builds the separate modules and dist/palisade.wasm"
    );
    let out = palisade_e2e::run_dir();
    let dirs = ManifestDirs::in_dist(&out);
    let files = write_manifests(
        &modules,
        source,
        &root.join("envoy/istio"),
        &root.join("filters"),
        &dirs,
    )
    .unwrap_or_else(|e| panic!("rendering the WasmPlugin manifests: {e}"));
    assert_eq!(
        files.len(),
        modules.len() + 2,
        "one manifest per module + two kustomizations"
    );
    let names = |kind: ModuleKind| -> Vec<String> {
        modules
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| format!("{}.yaml", m.name))
            .collect()
    };
    assert_eq!(
        kustomization_resources(&dirs.modules),
        names(ModuleKind::Filter)
    );
    assert_eq!(kustomization_resources(&dirs.bundle), ["bundle.yaml"]);
    let rendered = modules
        .iter()
        .map(|m| {
            let dir = match m.kind {
                ModuleKind::Filter => &dirs.modules,
                ModuleKind::Bundle => &dirs.bundle,
            };
            let file = dir.join(format!("{}.yaml", m.name));
            let text = std::fs::read_to_string(&file).unwrap();
            Rendered {
                name: m.name.clone(),
                kind: m.kind,
                manifest: serde_norway::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not YAML: {e}\n{text}", file.display())),
            }
        })
        .collect();
    std::fs::remove_dir_all(&out).unwrap();
    (modules, rendered)
}

/// The rendered manifests of one kind.
fn of_kind(rendered: &[Rendered], kind: ModuleKind) -> Vec<&Rendered> {
    rendered.iter().filter(|r| r.kind == kind).collect()
}

fn registry_source() -> ModuleSource {
    ModuleSource::Registry {
        target: Target::parse("registry.example.com/palisade").unwrap(),
        tag: TAG.into(),
    }
}

/// The CRD's schema as a JSON schema a validator can apply to a whole
/// manifest: objects without `x-kubernetes-preserve-unknown-fields` are
/// closed (unknown fields are errors, as with `kubectl apply`'s default
/// strict field validation), and the object metadata the API server adds to
/// every CRD is declared.
fn wasmplugin_schema(crd_dir: &Path) -> Value {
    let crd: Value = serde_norway::from_str(
        &std::fs::read_to_string(crd_dir.join("wasmplugin-crd.yaml")).expect("read the CRD"),
    )
    .expect("the CRD is YAML");
    assert_eq!(crd["spec"]["names"]["kind"], "WasmPlugin");
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .expect("the CRD serves v1alpha1");
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    close_objects(&mut schema);
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert(
        "apiVersion".into(),
        json!({ "enum": ["extensions.istio.io/v1alpha1"] }),
    );
    props.insert("kind".into(), json!({ "enum": ["WasmPlugin"] }));
    props.insert(
        "metadata".into(),
        json!({
            "type": "object",
            "required": ["name"],
            "additionalProperties": false,
            "properties": {
                "name": {
                    "type": "string", "maxLength": 253,
                    "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
                },
                "namespace": { "type": "string" },
                "labels": { "type": "object", "additionalProperties": { "type": "string", "maxLength": 63 } },
                "annotations": { "type": "object", "additionalProperties": { "type": "string" } }
            }
        }),
    );
    schema["required"] = json!(["apiVersion", "kind", "metadata", "spec"]);
    schema
}

fn close_objects(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if obj.contains_key("properties") && !preserve && !obj.contains_key("additionalProperties") {
        obj.insert("additionalProperties".into(), json!(false));
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(close_objects);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            close_objects(sub);
        }
    }
    if let Some(Value::Array(any)) = obj.get_mut("anyOf") {
        any.iter_mut().for_each(close_objects);
    }
}

/// Every way `manifest` breaks the schema or the CRD's CEL rules.
fn violations(validator: &jsonschema::Validator, manifest: &Value) -> Vec<String> {
    let mut errors: Vec<String> = validator
        .iter_errors(manifest)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect();
    let spec = &manifest["spec"];
    // rule on `url`: scheme one of "", http, https, oci, file
    if let Some(url) = spec["url"].as_str() {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if !["", "http", "https", "oci", "file"].contains(&scheme) {
            errors.push(format!(
                "/spec/url: url must have schema one of [http, https, file, oci]: {url}"
            ));
        }
    }
    // rule on `spec`: at most one of selector, targetRef, targetRefs
    let set = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| !spec[**k].is_null())
        .count();
    if set > 1 {
        errors.push("/spec: only one of targetRefs or selector can be set".into());
    }
    // rules on `selector.matchLabels`: no wildcard, no empty key
    if let Some(labels) = spec["selector"]["matchLabels"].as_object() {
        for (k, v) in labels {
            if k.is_empty() || k.contains('*') || v.as_str().is_some_and(|v| v.contains('*')) {
                errors.push(format!("/spec/selector/matchLabels: invalid label {k}={v}"));
            }
        }
    }
    // rule on `vmConfig.env[]`: value only with valueFrom INLINE
    for env in spec["vmConfig"]["env"].as_array().into_iter().flatten() {
        if env["valueFrom"] == "HOST" && !env["value"].is_null() {
            errors
                .push("/spec/vmConfig/env: value may only be set when valueFrom is INLINE".into());
        }
    }
    errors
}

fn crd_validator() -> Option<jsonschema::Validator> {
    let dir = shared_corpora("istio")?;
    let schema = wasmplugin_schema(&dir);
    Some(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&schema)
            .expect("the CRD schema compiles"),
    )
}

#[test]
fn every_manifest_validates_against_the_wasmplugin_crd() {
    let Some(validator) = crd_validator() else {
        eprintln!("skipping: the WasmPlugin CRD (../shared/corpora/istio) is not present");
        return;
    };
    let https = ModuleSource::UrlBase("https://downloads.example.com/palisade/0.1.0".into());
    for source in [registry_source(), https] {
        let (_, rendered) = render(&source);
        for r in &rendered {
            let errors = violations(&validator, &r.manifest);
            assert!(
                errors.is_empty(),
                "{} breaks the CRD:\n{}",
                r.name,
                errors.join("\n")
            );
        }
        let names: Vec<_> = rendered.iter().map(|r| r.name.as_str()).collect();
        eprintln!("manifests {names:?} valid for {source:?}");
    }
}

/// The schema check above can fail: each of these mistakes is caught.
#[test]
fn the_crd_check_catches_broken_manifests() {
    let Some(validator) = crd_validator() else {
        eprintln!("skipping: the WasmPlugin CRD (../shared/corpora/istio) is not present");
        return;
    };
    let (_, rendered) = render(&registry_source());
    let good = &rendered[0].manifest;
    assert!(violations(&validator, good).is_empty());
    type Breakage = Box<dyn Fn(&mut Value)>;
    let breakages: Vec<(&str, Breakage)> = vec![
        (
            "misspelt enum",
            Box::new(|m| m["spec"]["failStrategy"] = json!("FAIL_CLOSED")),
        ),
        (
            "unknown field",
            Box::new(|m| m["spec"]["failstrategy"] = json!("FAIL_OPEN")),
        ),
        (
            "upper-case digest",
            Box::new(|m| m["spec"]["sha256"] = json!("AB".repeat(32))),
        ),
        (
            "short digest",
            Box::new(|m| m["spec"]["sha256"] = json!("abc")),
        ),
        (
            "no url",
            Box::new(|m| {
                m["spec"].as_object_mut().unwrap().remove("url");
            }),
        ),
        (
            "unknown phase",
            Box::new(|m| m["spec"]["phase"] = json!("AUTHENTICATION")),
        ),
        (
            "priority as text",
            Box::new(|m| m["spec"]["priority"] = json!("10")),
        ),
        (
            "bad url scheme",
            Box::new(|m| m["spec"]["url"] = json!("ftp://x/y.wasm")),
        ),
        (
            "selector and targetRefs",
            Box::new(|m| {
                m["spec"]["selector"] = json!({ "matchLabels": { "app": "api" } });
                m["spec"]["targetRefs"] = json!([{ "kind": "Gateway", "name": "gw", "group": "gateway.networking.k8s.io" }]);
            }),
        ),
        (
            "wildcard label",
            Box::new(|m| m["spec"]["selector"] = json!({ "matchLabels": { "app": "*" } })),
        ),
        (
            "upper-case name",
            Box::new(|m| m["metadata"]["name"] = json!("Palisade-WAF")),
        ),
        ("wrong kind", Box::new(|m| m["kind"] = json!("EnvoyFilter"))),
        (
            "port out of range",
            Box::new(|m| m["spec"]["match"] = json!([{ "ports": [{ "number": 70000 }] }])),
        ),
    ];
    for (what, breakage) in breakages {
        let mut broken = good.clone();
        breakage(&mut broken);
        assert!(
            !violations(&validator, &broken).is_empty(),
            "the check missed: {what}"
        );
    }
    // and what the CRD allows passes: a selector for a gateway with CLIENT mode
    let mut gateway = good.clone();
    gateway["spec"]["selector"] = json!({ "matchLabels": { "istio": "ingressgateway" } });
    gateway["spec"]["match"] = json!([{ "mode": "CLIENT", "ports": [{ "number": 8443 }] }]);
    let errors = violations(&validator, &gateway);
    assert!(errors.is_empty(), "{errors:?}");
}

/// Istio's order: AUTHN, then AUTHZ, then STATS (then unspecified, before
/// the router); within a phase, higher priority first; ties by name.
fn istio_order(rendered: &[&Rendered]) -> Vec<String> {
    let phase_rank = |p: &Value| match p.as_str() {
        Some("AUTHN") => 0,
        Some("AUTHZ") => 1,
        Some("STATS") => 2,
        _ => 3,
    };
    let mut plugins: Vec<_> = rendered
        .iter()
        .map(|r| {
            let spec = &r.manifest["spec"];
            (
                phase_rank(&spec["phase"]),
                -spec["priority"].as_i64().unwrap_or(0),
                r.manifest["metadata"]["name"].as_str().unwrap().to_string(),
                r.name.clone(),
            )
        })
        .collect();
    plugins.sort();
    plugins.into_iter().map(|p| p.3).collect()
}

#[test]
fn istio_runs_waf_jwt_mfa_ratelimit_then_audit_and_security_fails_closed() {
    let (_, rendered) = render(&registry_source());
    let modules = of_kind(&rendered, ModuleKind::Filter);
    for r in &modules {
        assert!(
            CHAIN.contains(&r.name.as_str()),
            "`{}` has no place in the expected chain {CHAIN:?}: decide it and add it here",
            r.name
        );
    }
    let expected: Vec<String> = CHAIN
        .iter()
        .filter(|f| modules.iter().any(|r| r.name == **f))
        .map(|f| f.to_string())
        .collect();
    assert_eq!(istio_order(&modules), expected);
    for r in &modules {
        let spec = &r.manifest["spec"];
        if r.name == "audit" {
            assert_eq!(spec["phase"], "STATS");
            assert_eq!(
                spec["failStrategy"], "FAIL_OPEN",
                "audit refuses nothing: it fails open"
            );
        } else {
            assert_ne!(
                spec["phase"], "STATS",
                "{} decides: it runs before STATS",
                r.name
            );
            assert_eq!(
                spec["failStrategy"], "FAIL_CLOSE",
                "{} must fail closed",
                r.name
            );
        }
        assert_eq!(spec["pluginName"], format!("palisade_{}", r.name));
        assert_eq!(spec["type"], "HTTP");
        assert_eq!(
            r.manifest["metadata"]["name"],
            format!("palisade-{}", r.name)
        );
    }
}

/// The bundle holds the WAF and the token checks: it runs where the WAF
/// runs among the separate modules (ahead of every one of them, in AUTHN,
/// before Istio's authentication), and fails closed.
#[test]
fn the_bundle_runs_where_the_waf_would_and_fails_closed() {
    let (_, rendered) = render(&registry_source());
    let bundle = of_kind(&rendered, ModuleKind::Bundle);
    let [bundle] = bundle.as_slice() else {
        panic!("one bundle manifest, got {}", bundle.len());
    };
    let waf = rendered
        .iter()
        .find(|r| r.kind == ModuleKind::Filter && r.name == "waf")
        .expect("the WAF's manifest");
    let spec = &bundle.manifest["spec"];
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["phase"], waf.manifest["spec"]["phase"]);
    assert_eq!(spec["priority"], waf.manifest["spec"]["priority"]);
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(spec["pluginName"], "palisade");
    assert_eq!(spec["type"], "HTTP");
    assert_eq!(spec["match"], waf.manifest["spec"]["match"]);
    assert_eq!(bundle.manifest["metadata"]["name"], "palisade-bundle");
}

#[test]
fn digests_and_plugin_configs_come_from_the_build_and_the_readmes() {
    let root = repo_root();
    let (modules, rendered) = render(&registry_source());
    for (module, r) in modules.iter().zip(&rendered) {
        let spec = &r.manifest["spec"];
        assert_eq!(
            spec["url"],
            format!("oci://registry.example.com/palisade/{}:{TAG}", r.name)
        );
        let image = module.image(Variant::Oci, TAG).unwrap();
        assert_eq!(
            spec["sha256"],
            image.digest_hex(),
            "{}: sha256 is the image digest",
            r.name
        );
        // the root id Istio asks for is the one the image declares
        let runtime: Value = serde_json::from_slice(&image.config.data).unwrap();
        assert_eq!(runtime["config"]["rootIds"], json!([spec["pluginName"]]));
        let readme =
            std::fs::read_to_string(root.join("filters").join(&r.name).join("README.md")).unwrap();
        assert_eq!(
            spec["pluginConfig"],
            wasmplugin::readme_example(&readme).unwrap()
        );
    }
    let base = "file:///opt/palisade";
    let (modules, rendered) = render(&ModuleSource::UrlBase(base.into()));
    for (module, r) in modules.iter().zip(&rendered) {
        let spec = &r.manifest["spec"];
        let file = match r.kind {
            ModuleKind::Filter => format!("palisade_{}.wasm", r.name),
            ModuleKind::Bundle => "palisade.wasm".to_string(),
        };
        assert_eq!(spec["url"], format!("{base}/{file}"));
        assert_eq!(module.path, dist_dir().join(&file));
        let bytes = std::fs::read(&module.path).unwrap();
        assert_eq!(spec["sha256"], palisade_oci::image::sha256_hex(&bytes));
    }
}

/// Every cluster name a plugin configuration mentions (`"cluster": "idp"`),
/// so the chain below can define them: in Istio they are
/// `outbound|<port>||<host>` names, which the README tells users to adapt.
fn clusters_named(config: &Value, out: &mut BTreeSet<String>) {
    match config {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("cluster", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    _ => clusters_named(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| clusters_named(v, out)),
        _ => {}
    }
}

/// Runs `envoy --mode validate` (which loads every module and configures
/// it) on a listener with `plugins`, in this order, each as its manifest
/// says: the module is the file its `file://` URL names (whose SHA-256 must
/// be the manifest's), the root id its `pluginName`, the configuration its
/// `pluginConfig`. Returns Envoy's output when it refuses the config.
fn envoy_validate(plugins: &[&Rendered], label: &str) -> Result<(), String> {
    let mut config = EnvoyConfig::new();
    let mut clusters = BTreeSet::new();
    for r in plugins {
        let spec = &r.manifest["spec"];
        let url = spec["url"].as_str().unwrap();
        let path = PathBuf::from(url.strip_prefix("file://").expect("a file:// URL"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            spec["sha256"],
            palisade_oci::image::sha256_hex(&bytes),
            "{url}"
        );
        let root_id = spec["pluginName"].as_str().unwrap();
        let plugin_config = &spec["pluginConfig"];
        clusters_named(plugin_config, &mut clusters);
        config = config.native_filter(wasm_filter_json(root_id, root_id, &path, plugin_config));
    }
    for (i, name) in clusters.iter().enumerate() {
        // Never contacted: validation does not connect.
        config = config.cluster(name, format!("127.0.0.1:{}", 9 + i).parse().unwrap());
    }
    let dir = palisade_e2e::run_dir();
    let path: PathBuf = dir.join(format!("istio-{label}.json"));
    let bootstrap = config.bootstrap(&dir.join("access.log"));
    std::fs::write(&path, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&path)
        .output()
        .expect("run envoy --mode validate");
    std::fs::remove_dir_all(&dir).unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The manifests, pointing at the built modules by `file://` URLs.
fn render_for_this_machine() -> Vec<Rendered> {
    let dist = dist_dir().canonicalize().expect("dist/ (make build)");
    let (_, rendered) = render(&ModuleSource::UrlBase(format!("file://{}", dist.display())));
    rendered
}

#[test]
fn envoy_loads_the_whole_istio_chain_with_the_manifests_plugin_configs() {
    let rendered = render_for_this_machine();
    let modules = of_kind(&rendered, ModuleKind::Filter);
    let order = istio_order(&modules);
    let chain: Vec<&Rendered> = order
        .iter()
        .map(|name| *modules.iter().find(|r| &r.name == name).unwrap())
        .collect();
    if let Err(log) = envoy_validate(&chain, "chain") {
        panic!("Envoy refused the chain {order:?} with the manifests' plugin configs:\n{log}");
    }
    eprintln!("Envoy loaded {order:?} with the manifests' plugin configs");
}

#[test]
fn envoy_loads_the_bundle_with_its_manifests_plugin_config() {
    let rendered = render_for_this_machine();
    let bundle = of_kind(&rendered, ModuleKind::Bundle);
    if let Err(log) = envoy_validate(&bundle, "bundle") {
        panic!("Envoy refused palisade.wasm with its manifest's plugin config:\n{log}");
    }
    let sections: Vec<_> = bundle[0].manifest["spec"]["pluginConfig"]
        .as_object()
        .expect("the bundle's configuration is an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        sections.len(),
        CHAIN.len(),
        "the README's example configures every stage: {sections:?}"
    );
    // Validation configures the module: one it refuses fails the check.
    let mut broken = bundle[0].clone();
    broken.manifest["spec"]["pluginConfig"]["waf"]["paranoia"] = json!(1);
    let log = envoy_validate(&[&broken], "bundle-broken")
        .expect_err("Envoy loads palisade.wasm with an unknown field in `waf`");
    assert!(
        log.contains("waf.paranoia"),
        "the refusal names the field:\n{log}"
    );
    eprintln!("Envoy loaded palisade.wasm with sections {sections:?}");
}
