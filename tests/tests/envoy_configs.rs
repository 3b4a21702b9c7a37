//! Every Envoy config shipped in `envoy/` is one a user can copy and run:
//! `envoy --mode validate -c envoy/<file>.yaml`, from the repository root
//! (their module paths, `dist/palisade_<filter>.wasm`, are relative to it),
//! loads every module and runs its `on_configure` on the config's plugin
//! configuration, so a config the filter would refuse fails here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::{
    envoy_bin, envoy_gives_peer_certificate, no_peer_certificate, repo_root, EnvoyConfig,
};
use serde_json::json;

/// The `.yaml` files directly in `envoy/` (not `envoy/istio/`, which holds
/// Kubernetes manifests), sorted.
fn envoy_configs(root: &Path) -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(root.join("envoy"))
        .expect("read envoy/")
        .map(|e| e.expect("read an entry of envoy/").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| p.strip_prefix(root).expect("under the root").to_path_buf())
        .collect();
    configs.sort();
    configs
}

/// Runs `envoy --mode validate -c <config>` in `dir`; `Err` holds Envoy's
/// output when it refused the config or did not finish in time.
fn validate(dir: &Path, config: &Path) -> Result<(), String> {
    let out_path = std::env::temp_dir().join(format!(
        "palisade-validate-{}-{}.log",
        std::process::id(),
        config.display().to_string().replace('/', "_")
    ));
    let out = std::fs::File::create(&out_path).expect("create the validate log");
    let mut child = Command::new(envoy_bin())
        .current_dir(dir)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone the log handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", envoy_bin().display()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for envoy") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("exit {s}:\n{log}")),
        None => Err(format!("no verdict within 120 s:\n{log}")),
    }
}

#[test]
fn every_envoy_config_validates_from_the_repo_root() {
    let root = repo_root();
    let configs = envoy_configs(&root);
    assert!(
        configs.iter().any(|c| c.ends_with("demo.yaml")),
        "envoy/demo.yaml is missing: {configs:?}"
    );
    // Two at a time: each validation compiles every module in V8.
    let failures: Vec<String> = configs
        .chunks(2)
        .flat_map(|pair| {
            let handles: Vec<_> = pair
                .iter()
                .cloned()
                .map(|config| {
                    let root = root.clone();
                    std::thread::spawn(move || (validate(&root, &config), config))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("validation thread"))
                .collect::<Vec<_>>()
        })
        .filter_map(|(result, config)| match result {
            // Its SPIFFE rule reads the whole client certificate: an Envoy
            // before 1.38 cannot give it, and the policy says so at load.
            Err(log)
                if config.ends_with("tls.yaml")
                    && !envoy_gives_peer_certificate()
                    && log.contains(&no_peer_certificate()) =>
            {
                eprintln!(
                    "{} is refused by this Envoy, as it should",
                    config.display()
                );
                None
            }
            Err(log) => Some(format!("{} failed validation, {log}", config.display())),
            Ok(()) if config.ends_with("tls.yaml") && !envoy_gives_peer_certificate() => {
                Some(format!(
                    "{} loads on an Envoy without the client certificate",
                    config.display()
                ))
            }
            Ok(()) => None,
        })
        .collect();
    for config in &configs {
        eprintln!("validated {}", config.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The validation really loads the modules: a plugin configuration the
/// filter refuses fails it, and so do module paths that do not resolve from
/// where Envoy runs. (Otherwise the test above could not fail.)
#[test]
fn validation_catches_a_refused_plugin_config_and_a_wrong_working_directory() {
    let root = repo_root();
    let dir = palisade_e2e::run_dir();

    let refused = EnvoyConfig::new().wasm_filter("audit", json!({ "no_such_field": 1 }));
    let path = dir.join("refused.json");
    let bootstrap = refused.bootstrap(&dir.join("access.log"));
    std::fs::write(&path, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
    let err = validate(&root, &path).expect_err("a refused plugin config must fail validation");
    assert!(err.contains("palisade_audit"), "{err}");

    let err = validate(&dir, &root.join("envoy/demo.yaml"))
        .expect_err("module paths are relative to the repo root");
    assert!(err.contains("'dist/"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
