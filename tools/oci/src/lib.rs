//! # palisade-oci
//!
//! Distribution of the built Palisade modules (`dist/palisade_<filter>.wasm`)
//! to Istio, without a container daemon:
//!
//! - [`image`]: each module as a Wasm OCI image, in the *oci* variant
//!   (custom Wasm media types) and the *compat* variant (a tar+gzip layer
//!   holding `plugin.wasm`), built deterministically so that the image digest
//!   is known before anything is pushed;
//! - [`registry`]: push to / pull from an OCI distribution registry;
//! - [`wasmplugin`]: the `WasmPlugin` manifests, rendered from the templates
//!   in `envoy/istio/` with the URL, the digest and the filter's documented
//!   example configuration filled in;
//! - [`layout`]: the images as OCI image layouts on disk, for other tools.
//!
//! It works over whatever modules `dist/` holds, so a new filter is picked up
//! as soon as it is built (and refused until `envoy/istio/<filter>.yaml` says
//! where in the chain it runs).
//!
//! ```no_run
//! use palisade_oci::{image::Variant, registry::Registry, target::Target, Module};
//! let modules = Module::all_in(std::path::Path::new("dist"))?;
//! let registry = Registry::connect(Target::parse("127.0.0.1:5000/palisade")?, false)?;
//! for module in &modules {
//!     let image = module.image(Variant::Oci, "0.1.0")?;
//!     registry.push(&module.filter, "0.1.0", &image)?;
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

/// One built module of `dist/`.
#[derive(Debug, Clone)]
pub struct Module {
    /// The filter's short name (`audit` for `palisade_audit.wasm`).
    pub filter: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Module {
    /// Every `palisade_<filter>.wasm` in `dist`, sorted by filter name.
    pub fn all_in(dist: &Path) -> Result<Vec<Module>, Error> {
        let entries = std::fs::read_dir(dist)
            .map_err(|e| Error::io(e).context(format!("reading {}", dist.display())))?;
        let mut modules = Vec::new();
        for entry in entries {
            let path = entry.map_err(Error::io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(filter) = name
                .strip_prefix("palisade_")
                .and_then(|n| n.strip_suffix(".wasm"))
            else {
                continue;
            };
            if filter.is_empty()
                || !filter
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(Error::new(format!(
                    "{}: a filter name is lower-case letters, digits and `-`",
                    path.display()
                )));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::io(e).context(format!("reading {}", path.display())))?;
            modules.push(Module {
                filter: filter.to_string(),
                path,
                bytes,
            });
        }
        if modules.is_empty() {
            return Err(Error::new(format!(
                "no palisade_*.wasm in {}: run `make build` first",
                dist.display()
            )));
        }
        modules.sort_by(|a, b| a.filter.cmp(&b.filter));
        Ok(modules)
    }

    /// This module's image in `variant`, labelled `version`.
    pub fn image(&self, variant: Variant, version: &str) -> Result<WasmImage, Error> {
        WasmImage::build(variant, &self.filter, version, &self.bytes)
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
    /// `<base>/palisade_<filter>.wasm` over `https://`, `http://` or `file://`.
    UrlBase(String),
}

/// Renders `<out>/<filter>.yaml` for every module, from
/// `<templates>/<filter>.yaml` and `<filters>/<filter>/README.md`, plus
/// `<out>/kustomization.yaml`. Returns the files written.
pub fn write_manifests(
    modules: &[Module],
    source: &ModuleSource,
    templates: &Path,
    filters: &Path,
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out)
        .map_err(|e| Error::io(e).context(format!("creating {}", out.display())))?;
    let mut written = Vec::new();
    let mut names = Vec::new();
    for module in modules {
        let template_path = wasmplugin::template_path(templates, &module.filter);
        let template = std::fs::read_to_string(&template_path).map_err(|e| {
            Error::io(e).context(format!(
                "{}: every filter needs its WasmPlugin template (phase, priority, failStrategy)",
                template_path.display()
            ))
        })?;
        let readme_path = filters.join(&module.filter).join("README.md");
        let readme = std::fs::read_to_string(&readme_path)
            .map_err(|e| Error::io(e).context(readme_path.display()))?;
        let config =
            wasmplugin::readme_example(&readme).map_err(|e| e.context(readme_path.display()))?;
        let plugin_source = match source {
            ModuleSource::Registry { target, tag } => wasmplugin::Source::Oci {
                reference: target.tagged(&module.filter, tag),
                digest_hex: module.image(Variant::Oci, tag)?.digest_hex().to_string(),
            },
            ModuleSource::UrlBase(base) => wasmplugin::Source::Module {
                url: format!(
                    "{}/palisade_{}.wasm",
                    base.trim_end_matches('/'),
                    module.filter
                ),
                sha256_hex: module.sha256_hex(),
            },
        };
        let manifest = wasmplugin::render(&template, &plugin_source, &config)
            .map_err(|e| e.context(template_path.display()))?;
        let name = format!("{}.yaml", module.filter);
        let path = out.join(&name);
        let header = format!(
            "# Generated by palisade-oci from {} and the built module: edit the template.\n",
            template_path.display()
        );
        std::fs::write(&path, header + &manifest)
            .map_err(|e| Error::io(e).context(format!("writing {}", path.display())))?;
        written.push(path);
        names.push(name);
    }
    let path = out.join("kustomization.yaml");
    std::fs::write(&path, wasmplugin::kustomization(&names))
        .map_err(|e| Error::io(e).context(format!("writing {}", path.display())))?;
    written.push(path);
    Ok(written)
}
