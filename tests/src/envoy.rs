//! Envoy configs built on free ports, and the Envoy process that runs them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::deployment::{deployment, http_filters, ChainFilter, Deployment};
use crate::echo::EchoUpstream;
use crate::http::{send, Request, Response};
use crate::paths::envoy_bin;

/// The access-log line the harness configures by default: the audit record.
pub const AUDIT_LOG_FORMAT: &str = "%FILTER_STATE(wasm.palisade.audit:PLAIN)%\n";

/// An Envoy configuration: one HTTP listener on a free loopback port with a
/// chain of HTTP filters, routes (by default everything to the `upstream`
/// cluster), clusters, and a file access log. Built as JSON, which Envoy
/// reads as YAML.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    filters: Vec<ChainFilter>,
    deployment: Option<Deployment>,
    routes: Option<Value>,
    clusters: Vec<Value>,
    concurrency: u32,
    access_log_format: String,
    listener_tls: Option<Value>,
    plaintext_listener: bool,
    hcm_extra: serde_json::Map<String, Value>,
    extra_args: Vec<String>,
    listener_port: u16,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvoyConfig {
    /// A listener with no filters but the router, one worker.
    pub fn new() -> Self {
        EnvoyConfig {
            filters: Vec::new(),
            deployment: None,
            routes: None,
            clusters: Vec::new(),
            concurrency: 1,
            access_log_format: AUDIT_LOG_FORMAT.to_string(),
            listener_tls: None,
            plaintext_listener: false,
            hcm_extra: serde_json::Map::new(),
            extra_args: Vec::new(),
            listener_port: 0,
        }
    }

    /// Appends a Palisade policy: `filter` is its short name, `config` its
    /// JSON configuration. Deployed as this run's [`crate::deployment()`]
    /// says: `dist/palisade_audit.wasm` with root id `palisade_audit` for
    /// `audit`, or a section of `dist/palisade.wasm` (root id `palisade`).
    pub fn wasm_filter(mut self, filter: &str, config: Value) -> Self {
        self.filters.push(ChainFilter::Palisade {
            stage: filter.to_string(),
            config,
        });
        self
    }

    /// Deploys the policies this way whatever the run's deployment is (for
    /// tests that compare the two).
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployment = Some(deployment);
        self
    }

    /// Appends any HTTP filter, as Envoy's JSON/YAML (`{"name", "typed_config"}`).
    pub fn native_filter(mut self, filter: Value) -> Self {
        self.filters.push(ChainFilter::Native(filter));
        self
    }

    /// Routes everything to the given upstream (the `upstream` cluster).
    pub fn upstream(mut self, upstream: &EchoUpstream) -> Self {
        self.clusters.retain(|c| c["name"] != "upstream");
        self.clusters
            .push(cluster_json("upstream", upstream.addr()));
        self
    }

    /// Adds a cluster (an identity provider, a second upstream).
    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.push(cluster_json(name, addr));
        self
    }

    /// Adds a cluster given whole, as Envoy JSON.
    pub fn cluster_json(mut self, cluster: Value) -> Self {
        self.clusters.push(cluster);
        self
    }

    /// Replaces the default virtual host's `routes` array.
    pub fn routes(mut self, routes: Value) -> Self {
        self.routes = Some(routes);
        self
    }

    /// Worker threads (Envoy `--concurrency`).
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// The access log line format (default: the audit record).
    pub fn access_log_format(mut self, format: &str) -> Self {
        self.access_log_format = format.to_string();
        self
    }

    /// Terminates TLS on the listener with this `DownstreamTlsContext` (JSON).
    pub fn listener_tls(mut self, downstream_tls_context: Value) -> Self {
        self.listener_tls = Some(downstream_tls_context);
        self
    }

    /// With TLS on the main listener, also serves the same chain over
    /// plaintext on a second listener, `plain` (see
    /// [`Envoy::listener_address`]).
    pub fn plaintext_listener(mut self) -> Self {
        self.plaintext_listener = true;
        self
    }

    /// Sets a field of the HTTP connection manager, such as `xff_num_trusted_hops`.
    pub fn connection_manager(mut self, field: &str, value: Value) -> Self {
        self.hcm_extra.insert(field.to_string(), value);
        self
    }

    /// Listens on this loopback port instead of a free one Envoy picks: for
    /// tests whose configuration names the listener's own URL (an OAuth
    /// protected resource).
    pub fn listener_port(mut self, port: u16) -> Self {
        self.listener_port = port;
        self
    }

    /// Extra command-line arguments for Envoy.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// The whole bootstrap, with the access log at `access_log`.
    pub fn bootstrap(&self, access_log: &Path) -> Value {
        let has_upstream = self.clusters.iter().any(|c| c["name"] == "upstream");
        let routes = self.routes.clone().unwrap_or_else(|| {
            if has_upstream {
                json!([{ "match": { "prefix": "/" }, "route": { "cluster": "upstream", "timeout": "30s" } }])
            } else {
                json!([{ "match": { "prefix": "/" }, "direct_response": { "status": 200, "body": { "inline_string": "ok" } } }])
            }
        });
        let deployment = self.deployment.unwrap_or_else(deployment);
        let mut http_filters = http_filters(&self.filters, deployment);
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }));
        let mut hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "generate_request_id": true,
            // An edge proxy: the client is the connection's peer, not whatever
            // X-Forwarded-For claims. Tests of trusted proxies set it otherwise.
            "use_remote_address": true,
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": access_log.display().to_string(),
                    "log_format": { "text_format_source": { "inline_string": self.access_log_format } }
                }
            }],
            "route_config": {
                "name": "local",
                "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }]
            },
            "http_filters": http_filters
        });
        if let Some(obj) = hcm.as_object_mut() {
            for (k, v) in &self.hcm_extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        let mut chain = json!({
            "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }]
        });
        let plain = chain.clone();
        if let Some(tls) = &self.listener_tls {
            chain["transport_socket"] = json!({
                "name": "envoy.transport_sockets.tls",
                "typed_config": tls
            });
        }
        let listener = |name: &str, chain: Value| {
            json!({
                "name": name,
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [chain]
            })
        };
        let mut main = listener("main", chain);
        main["address"]["socket_address"]["port_value"] = json!(self.listener_port);
        if self.listener_tls.is_some() {
            // The TLS inspector reads the client's SNI
            // (`connection.requested_server_name`).
            main["listener_filters"] = json!([{
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" }
            }]);
        }
        let mut listeners = vec![main];
        if self.plaintext_listener {
            listeners.push(listener("plain", plain));
        }
        json!({
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "static_resources": {
                "listeners": listeners,
                "clusters": self.clusters
            }
        })
    }

    /// Starts Envoy with this config and waits until it is ready.
    pub fn start(&self) -> Envoy {
        Envoy::start(self)
    }

    /// Starts Envoy with a config it must refuse, and returns its log once it
    /// has exited. Fails the test if Envoy becomes ready instead.
    pub fn start_expecting_failure(&self) -> String {
        let dir = run_dir();
        let config_path = dir.join("envoy.json");
        let bootstrap = self.bootstrap(&dir.join("access.log"));
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&bootstrap).expect("serialize"),
        )
        .expect("write the Envoy config");
        let output = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
            .arg("--admin-address-path")
            .arg(dir.join("admin.address"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_bin().display()));
        let pid = output.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut child = output;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if dir.join("admin.address").exists() && Instant::now() > deadline {
                let _ = child.kill();
                panic!("Envoy (pid {pid}) kept running with a config it should refuse");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("collect Envoy's output");
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        log
    }
}

/// The Envoy filter entry for a Palisade module: plugin (and VM) `name`,
/// `root_id`, the module's path, its JSON configuration.
pub fn wasm_filter_json(name: &str, root_id: &str, module: &Path, config: &Value) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": root_id,
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": module.display().to_string() } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config.to_string()
                },
                "fail_open": false
            }
        }
    })
}

/// A static cluster with one loopback endpoint.
pub fn cluster_json(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": addr.ip().to_string(), "port_value": addr.port()
            } } } }] }]
        }
    })
}

static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

/// A new folder for one Envoy run's config and logs.
pub fn run_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "palisade-e2e-{}-{}",
        std::process::id(),
        NEXT_RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the Envoy run folder");
    dir
}

/// A running Envoy. Dropping it kills the process.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin: SocketAddr,
    listener: SocketAddr,
    /// The access log holds audit records ([`AUDIT_LOG_FORMAT`]): each is
    /// checked against its schema when read and when Envoy stops.
    audit_log: bool,
}

impl Envoy {
    fn start(config: &EnvoyConfig) -> Envoy {
        let dir = run_dir();
        let access_log = dir.join("access.log");
        std::fs::write(&access_log, b"").expect("create the access log");
        let bootstrap = config.bootstrap(&access_log);
        let config_path = dir.join("envoy.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&bootstrap).expect("serialize"),
        )
        .expect("write the Envoy config");
        let mut envoy = Self::run(&dir, &config_path, config.concurrency, &config.extra_args);
        envoy.audit_log = config.access_log_format == AUDIT_LOG_FORMAT;
        envoy
    }

    /// Starts Envoy on a config file whose admin and listeners use port 0.
    pub fn run(dir: &Path, config_path: &Path, concurrency: u32, extra_args: &[String]) -> Envoy {
        let admin_file = dir.join("admin.address");
        let _ = std::fs::remove_file(&admin_file);
        let log = std::fs::File::create(dir.join("envoy.log")).expect("create the Envoy log");
        let log_err = log.try_clone().expect("clone the log handle");
        // Tests log wasm at debug so a failure shows what the module said;
        // callers that pass their own `-l` (the benchmarks) keep theirs.
        let log_level: &[&str] = if extra_args.iter().any(|a| a == "-l") {
            &[]
        } else {
            &["-l", "info", "--component-log-level", "wasm:debug"]
        };
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(config_path)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--disable-hot-restart")
            // Envoy writes access logs out every 10 s by default; the tests read
            // them right after their requests.
            .args(["--file-flush-interval-msec", "50"])
            .args(log_level)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (run `make envoy`)",
                    envoy_bin().display()
                )
            });
        let mut envoy = Envoy {
            child,
            dir: dir.to_path_buf(),
            admin: "127.0.0.1:1".parse().expect("placeholder address"),
            listener: "127.0.0.1:1".parse().expect("placeholder address"),
            audit_log: false,
        };
        envoy.wait_ready(&admin_file);
        envoy
    }

    fn wait_ready(&mut self, admin_file: &Path) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Envoy exited early ({status}):\n{}", self.envoy_log());
            }
            if Instant::now() > deadline {
                panic!(
                    "Envoy did not become ready within 90 s:\n{}",
                    self.envoy_log()
                );
            }
            if let Some(addr) = std::fs::read_to_string(admin_file)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok())
            {
                self.admin = addr;
                if let Ok(r) = send(addr, &Request::get("/ready")) {
                    if r.status == 200 && r.text().trim() == "LIVE" {
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.listener = self.listener_address("main");
    }

    /// The bound address of a named listener, from the admin API.
    pub fn listener_address(&self, name: &str) -> SocketAddr {
        let listeners = self.admin_get("/listeners?format=json").json();
        let found = listeners["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == name)
            .and_then(|l| {
                let sa = &l["local_address"]["socket_address"];
                format!("{}:{}", sa["address"].as_str()?, sa["port_value"].as_u64()?)
                    .parse()
                    .ok()
            });
        found.unwrap_or_else(|| panic!("no listener {name} in {listeners}"))
    }

    /// Declares that this Envoy's `access.log` (in [`Envoy::dir`]) holds audit
    /// records, for an Envoy started with [`Envoy::run`] on a config of its
    /// own: they are checked against their schemas like those of
    /// [`EnvoyConfig::start`].
    pub fn audit_log_in_dir(&mut self) {
        self.audit_log = true;
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listener
    }

    /// The admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Sends a request through the listener.
    pub fn request(&self, request: Request) -> Response {
        send(self.listener, &request)
            .unwrap_or_else(|e| panic!("request {} {} failed: {e}", request.method, request.path))
    }

    /// A GET through the listener.
    pub fn get(&self, path: &str) -> Response {
        self.request(Request::get(path))
    }

    /// A GET on the admin API.
    pub fn admin_get(&self, path: &str) -> Response {
        send(self.admin, &Request::get(path)).unwrap_or_else(|e| panic!("admin {path} failed: {e}"))
    }

    /// Every stat's value from `/stats?format=json` (histograms left out).
    pub fn stats(&self) -> Vec<(String, u64)> {
        let v = self.admin_get("/stats?format=json").json();
        v["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["value"].as_u64()?)))
            .collect()
    }

    /// Connections each worker accepted on the main listener, in worker
    /// order: tests that need both workers busy check none is zero.
    pub fn connections_per_worker(&self) -> Vec<u64> {
        let mut per_worker: Vec<(String, u64)> = self
            .stats()
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with("listener.127.0.0.1_")
                    && name.contains(".worker_")
                    && name.ends_with(".downstream_cx_total")
            })
            .collect();
        per_worker.sort();
        per_worker.into_iter().map(|(_, n)| n).collect()
    }

    /// A counter or gauge by name. Envoy files metrics defined by wasm modules
    /// under `wasmcustom.`; both spellings are accepted.
    pub fn counter(&self, name: &str) -> Option<u64> {
        let custom = format!("wasmcustom.{name}");
        self.stats()
            .into_iter()
            .find(|(n, _)| n == name || *n == custom)
            .map(|(_, v)| v)
    }

    /// `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        self.admin_get("/stats/prometheus").text()
    }

    /// The access log's lines so far. Audit records are checked against
    /// the schema they claim (see [`crate::audit_schemas`]).
    pub fn access_log(&self) -> Vec<String> {
        let lines = self.read_access_log();
        self.check_audit_records(&lines);
        lines
    }

    fn read_access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Fails the test on an audit record that does not follow its schema.
    fn check_audit_records(&self, lines: &[String]) {
        if !self.audit_log {
            return;
        }
        let violations: Vec<String> = lines
            .iter()
            .filter_map(|l| crate::audit_schemas::check_line(l).err())
            .collect();
        assert!(violations.is_empty(), "{}", violations.join("\n\n"));
    }

    /// Waits (up to 30 s) until the access log has at least `n` lines, and returns them.
    /// Envoy writes access logs out on a timer (50 ms here), so a line can lag its
    /// response, by seconds on a machine busy with other test processes.
    pub fn wait_access_log(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.read_access_log();
            if lines.len() >= n || Instant::now() > deadline {
                self.check_audit_records(&lines);
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's own log so far.
    pub fn envoy_log(&self) -> String {
        std::fs::read(self.dir.join("envoy.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The folder with the config, logs and access log of this run.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every audit record of the run, also those the test never read.
        if !std::thread::panicking() {
            self.check_audit_records(&self.read_access_log());
        }
        if std::thread::panicking() {
            eprintln!(
                "---- Envoy log ({}) ----\n{}\n---- end of Envoy log ----",
                self.dir.display(),
                self.envoy_log()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
