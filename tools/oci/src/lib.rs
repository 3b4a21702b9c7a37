//! # palisade-oci
//!
//! Distribution of the built Palisade modules to Istio, without a container
//! daemon. A module is either one policy's own (`dist/palisade_<filter>.wasm`,
//! root id `palisade_<filter>`) or the bundle of every policy
//! (`dist/palisade.wasm`, root id `palisade`, named `bundle` like its
//! folder `filters/bundle`):
//!
//! - [`image`]: each module as a Wasm OCI image, in the *oci* variant
//!   (custom Wasm media types) and the *compat* variant (a tar+gzip layer
//!   holding `plugin.wasm`), built deterministically so that the image digest
//!   is known before anything is pushed;
//! - [`registry`]: push to / pull from an OCI distribution registry;
//! - [`wasmplugin`]: the `WasmPlugin` manifests, rendered from the templates
//!   in `envoy/istio/` with the URL, the digest and the module's documented
//!   example configuration filled in;
//! - [`layout`]: the images as OCI image layouts on disk, for other tools.
//!
//! It works over whatever modules `dist/` holds, so a new filter is picked up
//! as soon as it is built (and refused until `envoy/istio/<filter>.yaml` says
//! where in the chain it runs). The separate modules' manifests and the
//! bundle's go to two folders, each with its own kustomization, so that
//! applying one folder never installs a policy twice ([`ManifestDirs`]).
//!
//! ```no_run
//! use palisade_oci::{image::Variant, registry::Registry, target::Target, Module};
//! let modules = Module::all_in(std::path::Path::new("dist"))?;
//! let registry = Registry::connect(Target::parse("127.0.0.1:5000/palisade")?, false)?;
//! for module in &modules {
//!     let image = module.image(Variant::Oci, "0.1.0")?;
//!     registry.push(&module.name, "0.1.0", &image)?;
//! }
//! # Ok::<(), palisade_oci::Error>(())
//! ```

pub mod error;
pub mod image;
pub mod layout;
#[cfg(not(target_family = "wasm"))]
pub mod registry;
pub mod target;
pub mod wasmplugin;

use std::path::{Path, PathBuf};

pub use error::Error;
use image::{Variant, WasmImage};

/// Which of the two kinds of module a file of `dist/` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// One policy's own module, `palisade_<filter>.wasm`, root id
    /// `palisade_<filter>`: the five are chained, one `WasmPlugin` each.
    Filter,
    /// Every policy in one module, `palisade.wasm`, root id `palisade`: one
    /// `WasmPlugin` instead of the five.
    Bundle,
}

/// One built module of `dist/`.
#[derive(Debug, Clone)]
pub struct Module {
    /// The short name: the filter's (`audit` for `palisade_audit.wasm`), or
    /// [`Module::BUNDLE`] for `palisade.wasm`. It names the sources
    /// (`filters/<name>/`, whose README holds the example configuration),
    /// the template `envoy/istio/<name>.yaml` and the image repository
    /// `<registry>/<name>`.
    pub name: String,
    /// A filter's own module or the bundle.
    pub kind: ModuleKind,
    /// Where it was read from.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Module {
    /// The short name of the bundle, `palisade.wasm` (its crate is
    /// `filters/bundle`). No filter may take it.
    pub const BUNDLE: &'static str = "bundle";

    /// Every module in `dist`: each `palisade_<filter>.wasm`, sorted by
    /// filter name, then `palisade.wasm` if it is there.
    pub fn all_in(dist: &Path) -> Result<Vec<Module>, Error> {
        let entries = std::fs::read_dir(dist)
            .map_err(|e| Error::io(e).context(format!("reading {}", dist.display())))?;
        let mut modules = Vec::new();
        for entry in entries {
            let path = entry.map_err(Error::io)?.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let (name, kind) = if file_name == "palisade.wasm" {
                (Module::BUNDLE, ModuleKind::Bundle)
            } else if let Some(filter) = file_name
                .strip_prefix("palisade_")
                .and_then(|n| n.strip_suffix(".wasm"))
            {
                (filter, ModuleKind::Filter)
            } else {
                continue;
            };
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(Error::new(format!(
                    "{}: a filter name is lower-case letters, digits and `-`",
                    path.display()
                )));
            }
            if kind == ModuleKind::Filter && name == Module::BUNDLE {
                return Err(Error::new(format!(
                    "{}: `{}` names palisade.wasm (its image and manifest); a filter cannot take it",
                    path.display(),
                    Module::BUNDLE
                )));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::io(e).context(format!("reading {}", path.display())))?;
            modules.push(Module {
                name: name.to_string(),
                kind,
                path,
                bytes,
            });
        }
        if modules.is_empty() {
            return Err(Error::new(format!(
                "no palisade_*.wasm or palisade.wasm in {}: run `make build` first",
                dist.display()
            )));
        }
        // filters by name, the bundle last
        modules.sort_by(|a, b| {
            (a.kind == ModuleKind::Bundle, &a.name).cmp(&(b.kind == ModuleKind::Bundle, &b.name))
        });
        Ok(modules)
    }

    /// The module's file name in `dist/`, also the last segment of a plain
    /// URL to it: `palisade_<filter>.wasm` or `palisade.wasm`.
    pub fn file_name(&self) -> String {
        match self.kind {
            ModuleKind::Filter => format!("palisade_{}.wasm", self.name),
            ModuleKind::Bundle => "palisade.wasm".to_string(),
        }
    }

    /// The root id the module registers, a `WasmPlugin`'s `pluginName`:
    /// `palisade_<filter>` or `palisade`.
    pub fn root_id(&self) -> String {
        match self.kind {
            ModuleKind::Filter => format!("palisade_{}", self.name),
            ModuleKind::Bundle => "palisade".to_string(),
        }
    }

    /// This module's image in `variant`, labelled `version`.
    pub fn image(&self, variant: Variant, version: &str) -> Result<WasmImage, Error> {
        WasmImage::build(variant, &self.name, &self.root_id(), version, &self.bytes)
            .map_err(|e| e.context(self.path.display()))
    }

    /// SHA-256 of the module, hex.
    pub fn sha256_hex(&self) -> String {
        image::sha256_hex(&self.bytes)
    }
}

/// Where the rendered manifests fetch the modules from.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// The oci-variant images in this registry, tagged `tag`.
    Registry {
        /// Registry and repository prefix.
        target: target::Target,
        /// The release tag.
        tag: String,
    },
    /// `<base>/<file name>` (`palisade_<filter>.wasm`, `palisade.wasm`) over
    /// `https://`, `http://` or `file://`.
    UrlBase(String),
}

/// The two folders the manifests go to, each with its own
/// `kustomization.yaml`: the separate modules' (one `WasmPlugin` per
/// policy) and the bundle's (one `WasmPlugin` with every policy). They are
/// siblings, never one inside the other, so that no `kubectl apply` of one
/// folder (`-k`, or `-R -f`) installs both and runs each policy twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDirs {
    /// The separate modules' manifests (default `dist/istio`).
    pub modules: PathBuf,
    /// The bundle's manifest (default `dist/istio-bundle`).
    pub bundle: PathBuf,
}

impl ManifestDirs {
    /// `<dist>/istio` and `<dist>/istio-bundle`.
    pub fn in_dist(dist: &Path) -> ManifestDirs {
        ManifestDirs {
            modules: dist.join("istio"),
            bundle: dist.join("istio-bundle"),
        }
    }

    fn of(&self, kind: ModuleKind) -> &Path {
        match kind {
            ModuleKind::Filter => &self.modules,
            ModuleKind::Bundle => &self.bundle,
        }
    }

    /// The comment at the top of a folder's kustomization: what it installs
    /// and which folder must not be applied beside it.
    fn kustomization_header(&self, kind: ModuleKind) -> String {
        let modules = "the separate modules, one WasmPlugin per policy";
        let bundle = "the bundle palisade.wasm, every policy in one WasmPlugin";
        let (what, other, other_what) = match kind {
            ModuleKind::Filter => (modules, &self.bundle, bundle),
            ModuleKind::Bundle => (bundle, &self.modules, modules),
        };
        format!(
            "# Generated by palisade-oci: {what}.\n\
             # kubectl apply -k <this directory>  (add `namespace:` or patches in an overlay)\n\
             # Apply this or {} ({other_what}),\n\
             # never both on the same workloads: every policy would run twice.\n",
            other.display()
        )
    }
}

/// Renders `<dirs>/<name>.yaml` for every module, from
/// `<templates>/<name>.yaml` and `<filters>/<name>/README.md`, plus a
/// `kustomization.yaml` in each folder that got a manifest. The separate
/// modules go to `dirs.modules`, the bundle to `dirs.bundle`. Returns the
/// files written.
pub fn write_manifests(
    modules: &[Module],
    source: &ModuleSource,
    templates: &Path,
    filters: &Path,
    dirs: &ManifestDirs,
) -> Result<Vec<PathBuf>, Error> {
    if dirs.modules.starts_with(&dirs.bundle) || dirs.bundle.starts_with(&dirs.modules) {
        return Err(Error::new(format!(
            "the manifests of the modules ({}) and of the bundle ({}) need two folders, neither inside the other: `kubectl apply -R` on the outer one would install both",
            dirs.modules.display(),
            dirs.bundle.display()
        )));
    }
    let mut written = Vec::new();
    for kind in [ModuleKind::Filter, ModuleKind::Bundle] {
        let out = dirs.of(kind);
        let mut names = Vec::new();
        for module in modules.iter().filter(|m| m.kind == kind) {
            if names.is_empty() {
                std::fs::create_dir_all(out)
                    .map_err(|e| Error::io(e).context(format!("creating {}", out.display())))?;
            }
            let name = format!("{}.yaml", module.name);
            let path = out.join(&name);
            write_manifest(module, source, templates, filters, &path)?;
            written.push(path);
            names.push(name);
        }
        if !names.is_empty() {
            let path = out.join("kustomization.yaml");
            let text = wasmplugin::kustomization(&dirs.kustomization_header(kind), &names);
            std::fs::write(&path, text)
                .map_err(|e| Error::io(e).context(format!("writing {}", path.display())))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Renders the manifest of `module` into `path`.
fn write_manifest(
    module: &Module,
    source: &ModuleSource,
    templates: &Path,
    filters: &Path,
    path: &Path,
) -> Result<(), Error> {
    let template_path = wasmplugin::template_path(templates, &module.name);
    let template = std::fs::read_to_string(&template_path).map_err(|e| {
        Error::io(e).context(format!(
            "{}: every module needs its WasmPlugin template (phase, priority, failStrategy)",
            template_path.display()
        ))
    })?;
    let readme_path = filters.join(&module.name).join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .map_err(|e| Error::io(e).context(readme_path.display()))?;
    let config =
        wasmplugin::readme_example(&readme).map_err(|e| e.context(readme_path.display()))?;
    let plugin_source = match source {
        ModuleSource::Registry { target, tag } => wasmplugin::Source::Oci {
            reference: target.tagged(&module.name, tag),
            digest_hex: module.image(Variant::Oci, tag)?.digest_hex().to_string(),
        },
        ModuleSource::UrlBase(base) => wasmplugin::Source::Module {
            url: format!("{}/{}", base.trim_end_matches('/'), module.file_name()),
            sha256_hex: module.sha256_hex(),
        },
    };
    let manifest = wasmplugin::render(&template, &plugin_source, &module.root_id(), &config)
        .map_err(|e| e.context(template_path.display()))?;
    let header = format!(
        "# Generated by palisade-oci from {} and the built module: edit the template.\n",
        template_path.display()
    );
    std::fs::write(path, header + &manifest)
        .map_err(|e| Error::io(e).context(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const WASM: &[u8] = b"\0asm\x01\0\0\0 body";

    /// A scratch folder with `files` (path, text) in it.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(what: &str, files: &[(&str, &[u8])]) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("palisade-oci-{what}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for (path, bytes) in files {
                let path = dir.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            Scratch(dir)
        }

        /// `write_manifests` over the modules of `dist/`, the templates of
        /// `istio/` and the READMEs of `filters/` in this folder.
        fn write_manifests(
            &self,
            source: &ModuleSource,
            dirs: &ManifestDirs,
        ) -> Result<Vec<PathBuf>, Error> {
            let modules = Module::all_in(&self.0.join("dist")).unwrap();
            write_manifests(
                &modules,
                source,
                &self.0.join("istio"),
                &self.0.join("filters"),
                dirs,
            )
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn template(name: &str, plugin_name: &str) -> Vec<u8> {
        format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: palisade-{name}\nspec:\n  phase: AUTHN\n  pluginName: {plugin_name}\n"
        )
        .into_bytes()
    }

    #[test]
    fn all_in_finds_the_filters_then_the_bundle() {
        let dist = Scratch::new(
            "all-in",
            &[
                ("palisade.wasm", WASM),
                ("palisade_waf.wasm", WASM),
                ("palisade_audit.wasm", WASM),
                ("other.wasm", WASM),
                ("palisade_jwt.wasm.sha256", b"x"),
            ],
        );
        let modules = Module::all_in(&dist.0).unwrap();
        let seen: Vec<_> = modules
            .iter()
            .map(|m| (m.name.as_str(), m.kind, m.file_name(), m.root_id()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "audit",
                    ModuleKind::Filter,
                    "palisade_audit.wasm".into(),
                    "palisade_audit".into()
                ),
                (
                    "waf",
                    ModuleKind::Filter,
                    "palisade_waf.wasm".into(),
                    "palisade_waf".into()
                ),
                (
                    "bundle",
                    ModuleKind::Bundle,
                    "palisade.wasm".into(),
                    "palisade".into()
                ),
            ]
        );
        assert_eq!(modules[2].path, dist.0.join("palisade.wasm"));
    }

    #[test]
    fn all_in_refuses_a_filter_named_bundle_and_an_empty_dist() {
        let dist = Scratch::new("reserved", &[("palisade_bundle.wasm", WASM)]);
        let err = Module::all_in(&dist.0).unwrap_err().to_string();
        assert!(err.contains("names palisade.wasm"), "{err}");
        let dist = Scratch::new("empty", &[("README", b"")]);
        let err = Module::all_in(&dist.0).unwrap_err().to_string();
        assert!(err.contains("make build"), "{err}");
    }

    #[test]
    fn the_bundle_gets_its_own_folder_and_kustomization() {
        let readme = "## Configuration\n```json\n{\"waf\": {}}\n```\n".as_bytes();
        let tree = Scratch::new(
            "manifests",
            &[
                ("dist/palisade.wasm", WASM),
                ("dist/palisade_waf.wasm", WASM),
                ("istio/waf.yaml", &template("waf", "palisade_waf")),
                ("istio/bundle.yaml", &template("bundle", "palisade")),
                ("filters/waf/README.md", readme),
                ("filters/bundle/README.md", readme),
            ],
        );
        let dirs = ManifestDirs::in_dist(&tree.0.join("dist"));
        let source = ModuleSource::UrlBase("file:///opt/palisade/".into());
        let written = tree.write_manifests(&source, &dirs).unwrap();
        let expected = [
            dirs.modules.join("waf.yaml"),
            dirs.modules.join("kustomization.yaml"),
            dirs.bundle.join("bundle.yaml"),
            dirs.bundle.join("kustomization.yaml"),
        ];
        assert_eq!(written, expected);
        let read = |path: &Path| -> Value {
            serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        assert_eq!(read(&expected[1])["resources"], json!(["waf.yaml"]));
        assert_eq!(read(&expected[3])["resources"], json!(["bundle.yaml"]));
        let bundle = read(&expected[2]);
        assert_eq!(bundle["spec"]["url"], "file:///opt/palisade/palisade.wasm");
        assert_eq!(bundle["spec"]["pluginName"], "palisade");
        let waf = read(&expected[0]);
        assert_eq!(waf["spec"]["url"], "file:///opt/palisade/palisade_waf.wasm");
        // each kustomization warns against the other folder
        let modules_k = std::fs::read_to_string(&expected[1]).unwrap();
        assert!(
            modules_k.contains(&format!("or {} (the bundle", dirs.bundle.display())),
            "{modules_k}"
        );
        let bundle_k = std::fs::read_to_string(&expected[3]).unwrap();
        assert!(
            bundle_k.contains(&format!("or {} (the separate", dirs.modules.display())),
            "{bundle_k}"
        );

        // one folder inside the other is refused before anything is written
        for nested in [
            ManifestDirs {
                modules: tree.0.join("out"),
                bundle: tree.0.join("out/bundle"),
            },
            ManifestDirs {
                modules: tree.0.join("same"),
                bundle: tree.0.join("same"),
            },
        ] {
            let err = tree
                .write_manifests(&source, &nested)
                .unwrap_err()
                .to_string();
            assert!(err.contains("neither inside the other"), "{err}");
            assert!(!nested.modules.exists());
        }
    }

    #[test]
    fn only_the_folders_of_built_kinds_are_written() {
        let readme = "## Example\n```json\n{}\n```\n".as_bytes();
        let tree = Scratch::new(
            "bundle-only",
            &[
                ("dist/palisade.wasm", WASM),
                ("istio/bundle.yaml", &template("bundle", "palisade")),
                ("filters/bundle/README.md", readme),
            ],
        );
        let dirs = ManifestDirs::in_dist(&tree.0.join("dist"));
        let source = ModuleSource::UrlBase("https://example.com/p".into());
        let written = tree.write_manifests(&source, &dirs).unwrap();
        assert_eq!(written.len(), 2);
        assert!(!dirs.modules.exists());
    }
}
