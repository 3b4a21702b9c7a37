//! Wasm OCI images, built byte for byte from a module, without a container
//! daemon.
//!
//! Two variants of the Wasm image specification (solo-io/wasm `spec/`), both
//! of which Istio's image fetcher (`pkg/wasm/imagefetcher.go`) accepts:
//!
//! - **oci**: the manifest's config has media type
//!   `application/vnd.module.wasm.config.v1+json`, and the module itself is
//!   stored raw in a layer of media type
//!   `application/vnd.module.wasm.content.layer.v1+wasm` (title `plugin.wasm`).
//!   Istio's fetcher insists on *exactly two* layers for this variant (it was
//!   written against images where the runtime config is also pushed as a
//!   layer), so the runtime config is repeated as the first layer: an image
//!   with the Wasm layer alone is refused with "number of layers must be 2".
//! - **compat**: one standard `application/vnd.oci.image.layer.v1.tar+gzip`
//!   layer holding `plugin.wasm`, a standard image config, and the manifest
//!   annotation `module.wasm.image/variant=compat`, for registries and tools
//!   that only know container images.
//!
//! Everything here is deterministic (no timestamps, fixed tar headers, gzip
//! without name or time), so the manifest digest, which is what Istio
//! compares the `WasmPlugin`'s `sha256` with, is known before anything is
//! pushed, and the same module always gives the same digest.

use std::io::Write;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Config (and runtime-config layer) media type of the *oci* variant.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// Layer media type of the raw module in the *oci* variant.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// Config media type of the *compat* variant (a standard image config).
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Layer media type of the *compat* variant.
pub const TAR_GZIP_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file name Istio looks for, in the layer title and in the compat tarball.
pub const PLUGIN_FILE_NAME: &str = "plugin.wasm";
/// Manifest annotation that names the variant.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";

/// Which layout of the Wasm image specification an image follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Custom Wasm media types, module stored raw.
    Oci,
    /// Standard tar+gzip layer holding `plugin.wasm`.
    Compat,
}

impl Variant {
    /// Both variants, the primary one first.
    pub const ALL: [Variant; 2] = [Variant::Oci, Variant::Compat];

    /// The name used in annotations and tag suffixes.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Oci => "oci",
            Variant::Compat => "compat",
        }
    }

    /// The tag an image of this variant gets for release `tag`: the oci
    /// variant takes the tag as is, the compat variant `<tag>-compat`.
    pub fn tag(self, tag: &str) -> String {
        match self {
            Variant::Oci => tag.to_string(),
            Variant::Compat => format!("{tag}-compat"),
        }
    }
}

/// A content-addressed blob: its bytes, media type and `sha256:` digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Media type in the descriptor that references it.
    pub media_type: &'static str,
    /// The exact bytes.
    pub data: Vec<u8>,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    /// Descriptor annotations (the layer title).
    pub title: Option<&'static str>,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>, title: Option<&'static str>) -> Blob {
        let digest = sha256_digest(&data);
        Blob {
            media_type,
            data,
            digest,
            title,
        }
    }

    fn descriptor(&self) -> Value {
        let mut descriptor = json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.data.len(),
        });
        if let Some(title) = self.title {
            descriptor["annotations"] = json!({ "org.opencontainers.image.title": title });
        }
        descriptor
    }
}

/// One image: config, layers and the manifest that ties them together.
#[derive(Debug, Clone)]
pub struct WasmImage {
    /// The layout it follows.
    pub variant: Variant,
    /// The config blob.
    pub config: Blob,
    /// The layers, in manifest order.
    pub layers: Vec<Blob>,
    /// The manifest, exactly as pushed.
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`: the image digest.
    pub digest: String,
}

impl WasmImage {
    /// The image of `module`, titled `palisade-<name>` (`name` such as
    /// `audit`, or `bundle`), registering the root id `root_id` (such as
    /// `palisade_audit`, or `palisade`), labelled with `version`.
    pub fn build(
        variant: Variant,
        name: &str,
        root_id: &str,
        version: &str,
        module: &[u8],
    ) -> Result<WasmImage, Error> {
        if module.len() < 8 || module[..4] != *b"\0asm" {
            return Err(Error::new(format!(
                "the module of `{name}` is not a WebAssembly binary (no \\0asm header)"
            )));
        }
        let (config, layers) = match variant {
            Variant::Oci => {
                // The runtime config of the Wasm image specification: which
                // runtime, which ABI, which root ids the module registers.
                let runtime = json!({
                    "type": "envoy_proxy",
                    "abiVersions": ["v0.2.1"],
                    "config": { "rootIds": [root_id] },
                });
                let runtime = serde_json::to_vec(&runtime).map_err(Error::json)?;
                let config = Blob::new(WASM_CONFIG_MEDIA_TYPE, runtime.clone(), None);
                let layers = vec![
                    Blob::new(WASM_CONFIG_MEDIA_TYPE, runtime, Some("runtime-config.json")),
                    Blob::new(
                        WASM_LAYER_MEDIA_TYPE,
                        module.to_vec(),
                        Some(PLUGIN_FILE_NAME),
                    ),
                ];
                (config, layers)
            }
            Variant::Compat => {
                let tar = plugin_tarball(module)?;
                let diff_id = sha256_digest(&tar);
                let layer = Blob::new(TAR_GZIP_LAYER_MEDIA_TYPE, gzip(&tar)?, None);
                let image_config = json!({
                    "architecture": "wasm",
                    "os": "wasip1",
                    "config": {},
                    "rootfs": { "type": "layers", "diff_ids": [diff_id] },
                });
                let image_config = serde_json::to_vec(&image_config).map_err(Error::json)?;
                (
                    Blob::new(IMAGE_CONFIG_MEDIA_TYPE, image_config, None),
                    vec![layer],
                )
            }
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            "annotations": {
                VARIANT_ANNOTATION: variant.name(),
                "org.opencontainers.image.title": format!("palisade-{name}"),
                "org.opencontainers.image.version": version,
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        });
        let manifest = serde_json::to_vec(&manifest).map_err(Error::json)?;
        let digest = sha256_digest(&manifest);
        Ok(WasmImage {
            variant,
            config,
            layers,
            manifest,
            digest,
        })
    }

    /// The image digest without its `sha256:` prefix: the value of a
    /// `WasmPlugin`'s `sha256` field for an `oci://` URL.
    pub fn digest_hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    /// Every blob the manifest references (config first), without repeats.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut blobs: Vec<&Blob> = vec![&self.config];
        for layer in &self.layers {
            if !blobs.iter().any(|b| b.digest == layer.digest) {
                blobs.push(layer);
            }
        }
        blobs
    }
}

/// Reads the module back out of an image's manifest and a blob fetcher, the
/// way Istio does: the raw Wasm layer of an oci-variant image, or
/// `plugin.wasm` inside the tar+gzip layer of a compat image.
pub fn extract_module(
    manifest: &[u8],
    mut blob: impl FnMut(&str) -> Result<Vec<u8>, Error>,
) -> Result<Vec<u8>, Error> {
    let manifest: Value = serde_json::from_slice(manifest).map_err(Error::json)?;
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| Error::new("the manifest has no `layers` array"))?;
    let layer_of = |media_type: &str| {
        layers
            .iter()
            .find(|l| l["mediaType"] == media_type)
            .and_then(|l| l["digest"].as_str())
            .map(str::to_string)
    };
    if let Some(digest) = layer_of(WASM_LAYER_MEDIA_TYPE) {
        if layers.len() != 2 {
            return Err(Error::new(format!(
                "an oci-variant image needs exactly 2 layers for Istio, this one has {}",
                layers.len()
            )));
        }
        return blob(&digest);
    }
    if let Some(digest) = layer_of(TAR_GZIP_LAYER_MEDIA_TYPE) {
        let compressed = blob(&digest)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&compressed[..]));
        for entry in archive.entries().map_err(Error::io)? {
            let mut entry = entry.map_err(Error::io)?;
            let is_plugin = entry
                .path()
                .map_err(Error::io)?
                .file_name()
                .is_some_and(|n| n == PLUGIN_FILE_NAME);
            if is_plugin {
                let mut module = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut module).map_err(Error::io)?;
                return Ok(module);
            }
        }
        return Err(Error::new("the compat layer holds no plugin.wasm"));
    }
    Err(Error::new(
        "the manifest has neither a Wasm layer nor a tar+gzip layer",
    ))
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tarball with the single entry `plugin.wasm`, with fixed metadata.
fn plugin_tarball(module: &[u8]) -> Result<Vec<u8>, Error> {
    let mut header = tar::Header::new_ustar();
    header.set_size(module.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, PLUGIN_FILE_NAME, module)
        .map_err(Error::io)?;
    builder.into_inner().map_err(Error::io)
}

/// Gzip without file name or timestamp, so equal input gives equal output.
fn gzip(data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).map_err(Error::io)?;
    encoder.finish().map_err(Error::io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 a tiny module body";

    fn fetch_from(image: &WasmImage) -> impl FnMut(&str) -> Result<Vec<u8>, Error> + '_ {
        |digest: &str| {
            image
                .blobs()
                .into_iter()
                .find(|b| b.digest == digest)
                .map(|b| b.data.clone())
                .ok_or_else(|| Error::new(format!("no blob {digest}")))
        }
    }

    #[test]
    fn oci_variant_has_istios_two_layers_and_raw_module() {
        let image =
            WasmImage::build(Variant::Oci, "audit", "palisade_audit", "0.1.0", MODULE).unwrap();
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[1]["mediaType"], WASM_LAYER_MEDIA_TYPE);
        assert_eq!(
            layers[1]["annotations"]["org.opencontainers.image.title"],
            "plugin.wasm"
        );
        assert_eq!(layers[1]["size"], MODULE.len());
        assert_eq!(layers[1]["digest"], sha256_digest(MODULE));
        assert_eq!(manifest["annotations"][VARIANT_ANNOTATION], "oci");
        // config and runtime layer are the same blob: pushed once
        assert_eq!(image.blobs().len(), 2);
        assert_eq!(
            extract_module(&image.manifest, fetch_from(&image)).unwrap(),
            MODULE
        );
    }

    #[test]
    fn oci_variant_names_the_modules_root_id_and_title() {
        let image = WasmImage::build(Variant::Oci, "bundle", "palisade", "0.1.0", MODULE).unwrap();
        let runtime: Value = serde_json::from_slice(&image.config.data).unwrap();
        assert_eq!(runtime["config"]["rootIds"], json!(["palisade"]));
        assert_eq!(runtime["type"], "envoy_proxy");
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.title"],
            "palisade-bundle"
        );
        // the runtime-config layer repeats the config
        assert_eq!(image.layers[0].data, image.config.data);
    }

    #[test]
    fn compat_variant_holds_plugin_wasm_in_tar_gzip() {
        let image =
            WasmImage::build(Variant::Compat, "waf", "palisade_waf", "0.1.0", MODULE).unwrap();
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["config"]["mediaType"], IMAGE_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            TAR_GZIP_LAYER_MEDIA_TYPE
        );
        assert_eq!(manifest["annotations"][VARIANT_ANNOTATION], "compat");
        let config: Value = serde_json::from_slice(&image.config.data).unwrap();
        let tar = plugin_tarball(MODULE).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(&tar));
        assert_eq!(
            extract_module(&image.manifest, fetch_from(&image)).unwrap(),
            MODULE
        );
    }

    #[test]
    fn images_are_reproducible_and_follow_the_module() {
        for variant in Variant::ALL {
            let a = WasmImage::build(variant, "jwt", "palisade_jwt", "0.1.0", MODULE).unwrap();
            let b = WasmImage::build(variant, "jwt", "palisade_jwt", "0.1.0", MODULE).unwrap();
            assert_eq!(a.manifest, b.manifest);
            assert_eq!(a.digest, b.digest);
            assert_eq!(a.digest, sha256_digest(&a.manifest));
            assert_eq!(a.digest_hex().len(), 64);
            let mut other = MODULE.to_vec();
            other.push(0);
            let c = WasmImage::build(variant, "jwt", "palisade_jwt", "0.1.0", &other).unwrap();
            assert_ne!(a.digest, c.digest);
        }
    }

    #[test]
    fn refuses_what_is_not_wasm() {
        let err = WasmImage::build(Variant::Oci, "jwt", "palisade_jwt", "0.1.0", b"ELF\x7f....")
            .unwrap_err();
        assert!(
            err.to_string().contains("not a WebAssembly binary"),
            "{err}"
        );
    }

    #[test]
    fn extract_refuses_an_oci_image_istio_would_refuse() {
        let image =
            WasmImage::build(Variant::Oci, "audit", "palisade_audit", "0.1.0", MODULE).unwrap();
        let mut manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        manifest["layers"].as_array_mut().unwrap().remove(0);
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let err = extract_module(&bytes, fetch_from(&image)).unwrap_err();
        assert!(err.to_string().contains("exactly 2 layers"), "{err}");
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
