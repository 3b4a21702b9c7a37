//! `make oci` against a real registry: the CNCF distribution registry (Debian
//! package `docker-registry`) on a free loopback port with storage in a
//! temporary folder. Every built module (the five separate ones and the
//! bundle, `palisade.wasm`) is pushed in both Wasm image variants, pulled
//! back *by digest*, and must come back byte for byte; the digests the
//! registry reports must be the ones the WasmPlugin manifests pin.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::{dist_dir, send, Request};
use palisade_oci::image::{
    extract_module, Variant, PLUGIN_FILE_NAME, TAR_GZIP_LAYER_MEDIA_TYPE, VARIANT_ANNOTATION,
    WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};
use palisade_oci::registry::Registry;
use palisade_oci::target::Target;
use palisade_oci::{Module, ModuleKind};
use serde_json::Value;

/// The registry binary: `$PALISADE_REGISTRY_BIN`, else `docker-registry` on
/// PATH (the Debian package installs `/usr/bin/docker-registry`).
fn registry_bin() -> PathBuf {
    match std::env::var_os("PALISADE_REGISTRY_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => PathBuf::from("docker-registry"),
    }
}

/// A registry process on loopback. Dropping it kills the process (also when
/// the test panics) and removes its storage; its log is printed on failure.
struct LocalRegistry {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl LocalRegistry {
    fn start() -> LocalRegistry {
        let dir = palisade_e2e::run_dir();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            dir.join("storage").display()
        );
        let config_path = dir.join("registry.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(registry_bin())
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): install the CNCF distribution registry with \
                     `apt-get install -y docker-registry` (or set PALISADE_REGISTRY_BIN)",
                    registry_bin().display()
                )
            });
        let mut registry = LocalRegistry { child, dir, addr };
        registry.wait_ready();
        registry
    }

    /// Waits until `GET /v2/` answers 200 (the distribution API is up).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the registry exited ({status}):\n{}", self.log());
            }
            if let Ok(response) = send(self.addr, &Request::get("/v2/").header("host", "registry"))
            {
                if response.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the registry is not up after 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    fn storage(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- registry log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn push_every_image_and_pull_it_back_by_digest() {
    let modules = Module::all_in(&dist_dir()).expect("built modules (make build)");
    assert!(
        modules
            .iter()
            .any(|m| m.kind == ModuleKind::Bundle && m.path.ends_with("palisade.wasm")),
        "make build builds dist/palisade.wasm, whose image is pushed as `bundle`"
    );
    let server = LocalRegistry::start();
    let target = Target::parse(&format!("{}/palisade", server.addr)).unwrap();
    assert!(target.is_loopback());
    let registry = Registry::connect(target.clone(), false).expect("a registry client");
    let tag = "0.1.0-test";

    for module in &modules {
        let built = std::fs::read(&module.path).unwrap();
        for variant in Variant::ALL {
            let image = module.image(variant, tag).unwrap();
            let variant_tag = variant.tag(tag);
            // push checks that the registry reports the locally computed digest,
            // which is the `sha256` the WasmPlugin manifests pin
            let digest = registry
                .push(&module.name, &variant_tag, &image)
                .unwrap_or_else(|e| panic!("{e}\n--- registry log ---\n{}", server.log()));
            assert_eq!(digest, image.digest);

            let manifest = registry.pull_manifest(&module.name, &digest).unwrap();
            assert_eq!(
                manifest, image.manifest,
                "{}: manifest changed in the registry",
                module.name
            );
            assert_istio_accepts(&manifest, variant);
            if variant == Variant::Oci {
                assert_declares_root_id(&registry, module, &manifest);
            }

            let pulled = extract_module(&manifest, |d| registry.pull_blob(&module.name, d))
                .unwrap_or_else(|e| panic!("{} ({variant:?}): {e}", module.name));
            assert!(
                pulled == built,
                "{} ({variant:?}): pulled module differs from {}",
                module.name,
                module.path.display()
            );
            eprintln!(
                "{} {:?}: pushed and pulled {} ({} bytes of module)",
                module.name,
                variant,
                target.tagged(&module.name, &variant_tag),
                pulled.len()
            );
        }
        // The tag names the oci variant, whose digest is the one Istio checks.
        let again = Registry::connect(target.clone(), false).unwrap();
        let oci = module.image(Variant::Oci, tag).unwrap();
        assert_eq!(
            again.push(&module.name, tag, &oci).unwrap(),
            oci.digest,
            "pushing again is idempotent"
        );
    }

    // A digest the registry does not hold is refused, not answered with
    // something else.
    let missing = format!("sha256:{}", "0".repeat(64));
    assert!(registry.pull_manifest(&modules[0].name, &missing).is_err());
    assert!(registry.pull_blob(&modules[0].name, &missing).is_err());
    assert!(
        server.storage().join("storage").is_dir(),
        "the registry stored nothing in its temp dir"
    );
}

/// The pulled oci-variant image declares the root id its `WasmPlugin`
/// names: `palisade_<filter>`, or `palisade` for the bundle.
fn assert_declares_root_id(registry: &Registry, module: &Module, manifest: &[u8]) {
    let m: Value = serde_json::from_slice(manifest).unwrap();
    let digest = m["config"]["digest"].as_str().unwrap();
    let config = registry.pull_blob(&module.name, digest).unwrap();
    let runtime: Value = serde_json::from_slice(&config).unwrap();
    let expected = match module.kind {
        ModuleKind::Filter => format!("palisade_{}", module.name),
        ModuleKind::Bundle => "palisade".to_string(),
    };
    assert_eq!(
        runtime["config"]["rootIds"],
        serde_json::json!([expected]),
        "{}",
        module.name
    );
}

/// The layouts Istio's image fetcher takes (pkg/wasm/imagefetcher.go).
fn assert_istio_accepts(manifest: &[u8], variant: Variant) {
    let m: Value = serde_json::from_slice(manifest).unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(m["annotations"][VARIANT_ANNOTATION], variant.name());
    match variant {
        Variant::Oci => {
            assert_eq!(m["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
            assert_eq!(
                layers.len(),
                2,
                "Istio requires exactly two layers in the oci variant"
            );
            let wasm: Vec<_> = layers
                .iter()
                .filter(|l| l["mediaType"] == WASM_LAYER_MEDIA_TYPE)
                .collect();
            assert_eq!(wasm.len(), 1);
            assert_eq!(
                wasm[0]["annotations"]["org.opencontainers.image.title"],
                PLUGIN_FILE_NAME
            );
        }
        Variant::Compat => {
            assert_eq!(layers.len(), 1);
            assert_eq!(layers[0]["mediaType"], TAR_GZIP_LAYER_MEDIA_TYPE);
        }
    }
}
