//! Istio `WasmPlugin` manifests, rendered from the templates in
//! `envoy/istio/<name>.yaml` (`<filter>.yaml`, or `bundle.yaml`) and the
//! build.
//!
//! A template holds what a person decides (phase, priority, failStrategy,
//! traffic match, `pluginName`) with comments saying why; the build adds what
//! only the build knows, so it can never go stale in git:
//!
//! - `url`: `oci://<registry>/<name>:<tag>` (or a plain `https://` /
//!   `file://` base plus the module's file name, `palisade_<filter>.wasm`
//!   or `palisade.wasm`);
//! - `sha256`: for `oci://`, the digest of the image manifest (what Istio's
//!   fetcher compares); for any other URL, the SHA-256 of the module;
//! - `pluginConfig`: the module's documented example, the first
//!   ```` ```json ```` block under the first "Configuration" or "Example"
//!   heading of `filters/<name>/README.md`.
//!
//! The output keeps the template's text and comments and appends these fields
//! to its `spec:` block, which must therefore be the template's last key; the
//! result is parsed back and checked before it is written.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::Error;

/// Where a rendered plugin fetches its module from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `oci://<repository>:<tag>`, verified against the image digest.
    Oci {
        /// The image reference without scheme, such as `127.0.0.1:5000/palisade/audit:0.1.0`.
        reference: String,
        /// The image manifest digest, hex.
        digest_hex: String,
    },
    /// An `http(s)://` or `file://` URL of the `.wasm` itself, verified
    /// against the module's SHA-256.
    Module {
        /// The URL.
        url: String,
        /// SHA-256 of the module, hex.
        sha256_hex: String,
    },
}

impl Source {
    fn url(&self) -> String {
        match self {
            Source::Oci { reference, .. } => format!("oci://{reference}"),
            Source::Module { url, .. } => url.clone(),
        }
    }

    fn sha256(&self) -> &str {
        match self {
            Source::Oci { digest_hex, .. } => digest_hex,
            Source::Module { sha256_hex, .. } => sha256_hex,
        }
    }
}

/// The template of the module `name`: `<istio_dir>/<name>.yaml`.
pub fn template_path(istio_dir: &Path, name: &str) -> PathBuf {
    istio_dir.join(format!("{name}.yaml"))
}

/// The documented example configuration of a filter: the first ```` ```json ````
/// block after the README's first heading titled "Configuration…" or
/// "Example…" (any level, any case), which must be a JSON object. Blocks
/// before that heading (a problem body, a log record) are not configurations.
pub fn readme_example(readme: &str) -> Result<Value, Error> {
    let is_config_heading = |line: &str| {
        let title = line.trim_start_matches('#');
        line.starts_with('#') && title.starts_with(' ') && {
            let title = title.trim().to_ascii_lowercase();
            title.starts_with("configuration") || title.starts_with("example")
        }
    };
    let mut lines = readme.lines().skip_while(|l| !is_config_heading(l));
    if lines.next().is_none() {
        return Err(Error::new(
            "it has no heading titled `Configuration` or `Example`, under which the first ```json block is the documented example",
        ));
    }
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("```json") {
            let mut block = String::new();
            for line in lines.by_ref() {
                if line.trim_start().starts_with("```") {
                    let value: Value = serde_json::from_str(&block).map_err(|e| {
                        Error::new(format!("its example ```json block is not JSON: {e}"))
                    })?;
                    if !value.is_object() {
                        return Err(Error::new("its example ```json block is not a JSON object"));
                    }
                    return Ok(value);
                }
                block.push_str(line);
                block.push('\n');
            }
            return Err(Error::new("its example ```json block is not closed"));
        }
    }
    Err(Error::new(
        "it has no ```json block after its `Configuration` / `Example` heading",
    ))
}

/// Renders the manifest of one module from its template text. `root_id` is
/// the root id the module registers, which the template's `pluginName` must
/// name.
pub fn render(
    template: &str,
    source: &Source,
    root_id: &str,
    plugin_config: &Value,
) -> Result<String, Error> {
    let parsed: Value = serde_norway::from_str(template).map_err(Error::yaml)?;
    check_template(&parsed, root_id)?;
    let last_key = template
        .lines()
        .rfind(|l| !l.starts_with([' ', '#', '-']) && !l.trim().is_empty());
    if last_key != Some("spec:") {
        return Err(Error::new(
            "`spec:` must be the template's last top-level key (the build appends to it)",
        ));
    }
    let config_yaml = serde_norway::to_string(plugin_config).map_err(Error::yaml)?;
    let mut out = String::with_capacity(template.len() + config_yaml.len() + 256);
    out.push_str(template.trim_end());
    out.push_str("\n  # Filled in by the build (palisade-oci) from the built module:\n");
    out.push_str(&format!("  url: {}\n", yaml_string(&source.url())));
    out.push_str(&format!("  sha256: {}\n", yaml_string(source.sha256())));
    out.push_str("  # The documented example of the module's README; adapt it to your service.\n");
    out.push_str("  pluginConfig:\n");
    for line in config_yaml.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    // Parse the result back: it must be the template plus exactly these fields.
    let rendered: Value = serde_norway::from_str(&out)
        .map_err(|e| Error::new(format!("the rendered manifest does not parse: {e}")))?;
    if rendered["spec"]["pluginConfig"] != *plugin_config
        || rendered["spec"]["url"] != source.url()
        || rendered["spec"]["sha256"] != source.sha256()
    {
        return Err(Error::new(
            "the rendered manifest does not read back as written",
        ));
    }
    Ok(out)
}

/// A kustomization that applies `files`, under the comment `header` (whole
/// `#` lines).
pub fn kustomization(header: &str, files: &[String]) -> String {
    let mut out = String::from(header);
    out.push_str(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         resources:\n",
    );
    for file in files {
        out.push_str(&format!("- {file}\n"));
    }
    out
}

/// What the build must not find in a template (it fills these in itself),
/// and the root id it must name.
fn check_template(template: &Value, root_id: &str) -> Result<(), Error> {
    if template["apiVersion"] != "extensions.istio.io/v1alpha1" || template["kind"] != "WasmPlugin"
    {
        return Err(Error::new("not an extensions.istio.io/v1alpha1 WasmPlugin"));
    }
    if template["spec"]["pluginName"] != root_id {
        return Err(Error::new(format!(
            "`spec.pluginName` must be `{root_id}`, the root id the module registers (found {})",
            template["spec"]["pluginName"]
        )));
    }
    for field in ["url", "sha256", "pluginConfig"] {
        if !template["spec"][field].is_null() {
            return Err(Error::new(format!(
                "`spec.{field}` comes from the build and must not be in the template"
            )));
        }
    }
    Ok(())
}

/// A YAML double-quoted string (JSON's escaping is valid YAML).
fn yaml_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEMPLATE: &str = "\
# why this phase
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: palisade-audit
spec:
  phase: STATS
  # why this strategy
  failStrategy: FAIL_OPEN
  pluginName: palisade_audit
";

    const ROOT_ID: &str = "palisade_audit";

    fn oci() -> Source {
        Source::Oci {
            reference: "127.0.0.1:5000/palisade/audit:0.1.0".into(),
            digest_hex: "ab".repeat(32),
        }
    }

    #[test]
    fn example_is_the_first_json_block_under_configuration_or_example() {
        let readme = "# x\n```json\n{\"type\": \"problem\"}\n```\n## Configuration reference\n\ntext\n\n```json\n{\n  \"schema\": \"ecs\"\n}\n```\n```json\n{\"later\": 1}\n```\n";
        assert_eq!(readme_example(readme).unwrap(), json!({"schema": "ecs"}));
        let example =
            "# x\n## Decision\n```json\n{\"a\": 1}\n```\n### Example\n```json\n{\"b\": 2}\n```\n";
        assert_eq!(readme_example(example).unwrap(), json!({"b": 2}));
        // a heading that merely mentions the word is not it
        let mentions = "# x\n## Metrics configuration\n```json\n{\"a\": 1}\n```\n## Example\n```json\n{\"b\": 2}\n```\n";
        assert_eq!(readme_example(mentions).unwrap(), json!({"b": 2}));
    }

    #[test]
    fn example_errors_name_the_problem() {
        let none = readme_example("# nothing\n```json\n{}\n```\n")
            .unwrap_err()
            .to_string();
        assert!(none.contains("no heading titled"), "{none}");
        let empty = readme_example("## Configuration\ntext\n")
            .unwrap_err()
            .to_string();
        assert!(empty.contains("no ```json block"), "{empty}");
        let bad = readme_example("## Example\n```json\n{nope\n```\n")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not JSON"), "{bad}");
        let array = readme_example("## Example\n```json\n[1]\n```\n")
            .unwrap_err()
            .to_string();
        assert!(array.contains("not a JSON object"), "{array}");
        let open = readme_example("## Example\n```json\n{}\n")
            .unwrap_err()
            .to_string();
        assert!(open.contains("not closed"), "{open}");
    }

    #[test]
    fn render_appends_build_fields_and_keeps_comments() {
        let config = json!({"schema": "ecs", "request_headers": ["x-tenant"], "n": 3});
        let out = render(TEMPLATE, &oci(), ROOT_ID, &config).unwrap();
        assert!(out.starts_with("# why this phase\n"));
        assert!(out.contains("  # why this strategy\n"));
        let v: Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(
            v["spec"]["url"],
            "oci://127.0.0.1:5000/palisade/audit:0.1.0"
        );
        assert_eq!(v["spec"]["sha256"], "ab".repeat(32));
        assert_eq!(v["spec"]["pluginConfig"], config);
        assert_eq!(v["spec"]["phase"], "STATS");
        assert_eq!(v["metadata"]["name"], "palisade-audit");
    }

    #[test]
    fn render_keeps_strings_that_look_like_other_yaml_types() {
        let config =
            json!({"a": "yes", "b": "0123", "c": "null", "d": "1e3", "e": "x: y", "f": ""});
        let out = render(TEMPLATE, &oci(), ROOT_ID, &config).unwrap();
        let v: Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(v["spec"]["pluginConfig"], config);
    }

    #[test]
    fn module_urls_use_the_module_hash() {
        let source = Source::Module {
            url: "https://example.com/palisade_audit.wasm".into(),
            sha256_hex: "cd".repeat(32),
        };
        let out = render(TEMPLATE, &source, ROOT_ID, &json!({})).unwrap();
        let v: Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(v["spec"]["url"], "https://example.com/palisade_audit.wasm");
        assert_eq!(v["spec"]["sha256"], "cd".repeat(32));
    }

    #[test]
    fn templates_must_leave_build_fields_out_and_end_with_spec() {
        let with_url = format!("{TEMPLATE}  url: oci://x/y:1\n");
        let err = render(&with_url, &oci(), ROOT_ID, &json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.url"), "{err}");
        let spec_first = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nspec:\n  phase: STATS\n  pluginName: palisade_audit\nmetadata:\n  name: x\n";
        let err = render(spec_first, &oci(), ROOT_ID, &json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("last top-level key"), "{err}");
        let wrong_kind = TEMPLATE.replace("WasmPlugin", "EnvoyFilter");
        let err = render(&wrong_kind, &oci(), ROOT_ID, &json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("WasmPlugin"), "{err}");
        // a template naming another module's root id, or none
        let err = render(TEMPLATE, &oci(), "palisade", &json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`spec.pluginName` must be `palisade`"),
            "{err}"
        );
        let unnamed = TEMPLATE.replace("  pluginName: palisade_audit\n", "");
        let err = render(&unnamed, &oci(), ROOT_ID, &json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pluginName"), "{err}");
    }

    #[test]
    fn kustomization_lists_every_file() {
        let k = kustomization("# the modules\n", &["waf.yaml".into(), "audit.yaml".into()]);
        assert!(k.starts_with("# the modules\napiVersion:"), "{k}");
        let v: Value = serde_norway::from_str(&k).unwrap();
        assert_eq!(v["kind"], "Kustomization");
        assert_eq!(v["resources"], json!(["waf.yaml", "audit.yaml"]));
    }
}
