//! `make bench`: throughput and latency of Envoy with Palisade filters against
//! Envoy alone and Envoy's native filters, measured in the same run.
//!
//! Reads every `bench/scenarios/*.json` (rows: name, Envoy config template,
//! baseline row, request), starts Envoy `--concurrency 1` on loopback for each
//! row, loads it with `wrk` for a bounded time after a warm-up, and prints a
//! table of requests/s, p50 and p99 latency and the ratio to the row's
//! baseline. It also reads the CPU time Envoy spent during the measured run
//! (`/proc/<pid>/stat`) and divides it by the requests served: that cost per
//! request, and the ratio derived from it, hold steady when other work shares
//! the machine, where requests/s does not. The table, the module sizes and
//! Envoy's resident memory are also written to `bench/results.md`.
//!
//! Rows whose config names `{{RLS_PORT}}` (global rate limits) get a Redis
//! and `palisade-rls` with the limits of `bench/rls-limits.json`, on
//! loopback, for the whole run.
//!
//! Environment: `BENCH_SECONDS` (default 10), `BENCH_CONNECTIONS` (default 16),
//! `BENCH_FILTER` (run only rows whose name contains it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use palisade_e2e::rls::{RateLimitService, Redis};
use palisade_e2e::{dist_dir, envoy_bin, repo_root, run_dir, EchoUpstream, Envoy};
use serde::Deserialize;

#[derive(Deserialize)]
struct Scenario {
    rows: Vec<Row>,
}

#[derive(Deserialize, Clone)]
struct Row {
    name: String,
    config: String,
    baseline: Option<String>,
    #[serde(default)]
    request: Option<BenchRequest>,
    #[serde(default)]
    wrk_lua: Option<String>,
    /// The listener speaks TLS (`https://`).
    #[serde(default)]
    tls: bool,
    /// A DPoP-bound token (file): every request sends it with its own DPoP
    /// proof, made for the row before it runs.
    #[serde(default)]
    dpop_token: Option<String>,
}

#[derive(Deserialize, Clone, Default)]
struct BenchRequest {
    #[serde(default = "get")]
    method: String,
    #[serde(default = "root")]
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

fn root() -> String {
    "/".into()
}

struct Measured {
    row: Row,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    rss_mib: f64,
    /// Envoy's CPU time (user + system) per request served, in microseconds.
    cpu_us: f64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let root = repo_root();
    let seconds = env_u64("BENCH_SECONDS", 10);
    let connections = env_u64("BENCH_CONNECTIONS", 16);
    let only = std::env::var("BENCH_FILTER").unwrap_or_default();

    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("bench/scenarios"))
        .expect("bench/scenarios")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read scenario");
        let scenario: Scenario =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        rows.extend(scenario.rows);
    }
    if !only.is_empty() {
        // Keep the baselines of the selected rows too, and theirs.
        let mut wanted: Vec<String> = rows
            .iter()
            .filter(|r| r.name.contains(&only))
            .map(|r| r.name.clone())
            .collect();
        loop {
            let more: Vec<String> = rows
                .iter()
                .filter(|r| wanted.contains(&r.name))
                .filter_map(|r| r.baseline.clone())
                .filter(|b| !wanted.contains(b))
                .collect();
            if more.is_empty() {
                break;
            }
            wanted.extend(more);
        }
        rows.retain(|r| wanted.contains(&r.name));
    }

    let upstream = EchoUpstream::start();
    // The global rate-limit backend, for the rows that ask it.
    let needs_service = rows.iter().any(|r| {
        std::fs::read_to_string(root.join(&r.config)).is_ok_and(|t| t.contains("{{RLS_PORT}}"))
    });
    let backend = needs_service.then(|| {
        let limits = std::fs::read_to_string(root.join("bench/rls-limits.json"))
            .expect("bench/rls-limits.json");
        let limits = serde_json::from_str(&limits).expect("bench/rls-limits.json is JSON");
        let redis = Redis::start();
        let service = RateLimitService::start(&redis, &limits);
        (redis, service)
    });
    let rls_port = backend.as_ref().map_or(0, |(_, s)| s.addr().port());
    let mut results: Vec<Measured> = Vec::new();
    for row in rows {
        eprintln!("bench: {} ({seconds} s)", row.name);
        match run_row(&root, &row, &upstream, rls_port, seconds, connections) {
            Ok(m) => results.push(m),
            Err(e) => eprintln!("bench: {} failed: {e}", row.name),
        }
    }

    let report = report(&results, seconds, connections);
    println!("{report}");
    let out = root.join("bench/results.md");
    std::fs::write(&out, &report).expect("write bench/results.md");
    eprintln!("bench: wrote {}", out.display());
}

fn render_template(
    root: &Path,
    row: &Row,
    tmp: &Path,
    upstream: &EchoUpstream,
    rls_port: u16,
) -> String {
    let template = std::fs::read_to_string(root.join(&row.config))
        .unwrap_or_else(|e| panic!("{}: {e}", row.config));
    let mut text = template
        .replace("{{LISTEN_PORT}}", "0")
        .replace("{{ADMIN_PORT}}", "0")
        .replace("{{UPSTREAM_PORT}}", &upstream.port().to_string())
        .replace("{{RLS_PORT}}", &rls_port.to_string())
        .replace("{{DIST}}", &dist_dir().display().to_string())
        .replace("{{TMP}}", &tmp.display().to_string())
        .replace("{{REPO}}", &root.display().to_string());
    // {{SUITE:<stage>}}: a stage's configuration, shared by the chain and
    // bundle rows (bench/suite/<stage>.json).
    let suite = std::fs::read_dir(root.join("bench/suite"))
        .into_iter()
        .flatten();
    for path in suite.flatten().map(|e| e.path()) {
        if let Some(stage) = path.file_stem().and_then(|s| s.to_str()) {
            let json = std::fs::read_to_string(&path).unwrap_or_default();
            text = text.replace(&format!("{{{{SUITE:{stage}}}}}"), json.trim());
        }
    }
    text
}

fn lua_for(request: &BenchRequest) -> String {
    let mut lua = format!("wrk.method = {}\n", lua_string(&request.method));
    if let Some(body) = &request.body {
        lua.push_str(&format!("wrk.body = {}\n", lua_string(body)));
    }
    for (k, v) in &request.headers {
        lua.push_str(&format!(
            "wrk.headers[{}] = {}\n",
            lua_string(k),
            lua_string(v)
        ));
    }
    lua
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn run_row(
    root: &Path,
    row: &Row,
    upstream: &EchoUpstream,
    rls_port: u16,
    seconds: u64,
    connections: u64,
) -> Result<Measured, String> {
    let dir = run_dir();
    let config = render_template(root, row, &dir, upstream, rls_port);
    let config_path = dir.join("envoy.yaml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let envoy = Envoy::run(&dir, &config_path, 1, &["-l".into(), "warning".into()]);
    pin(envoy.pid(), ENVOY_CPU);
    let request = row.request.clone().unwrap_or_default();
    let lua_path = match &row.wrk_lua {
        Some(script) => root.join(script),
        None => {
            let p = dir.join("request.lua");
            std::fs::write(&p, lua_for(&request)).map_err(|e| e.to_string())?;
            p
        }
    };
    let scheme = if row.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}{}", envoy.addr(), request.path);
    // DPoP rows: fresh proofs, never replayed, one set for the warm-up and
    // one for the measured run (each wrk run starts its script again).
    let (warm_lua, lua_path) = match &row.dpop_token {
        Some(token_file) => {
            let token = std::fs::read_to_string(root.join(token_file))
                .map_err(|e| format!("{token_file}: {e}"))?;
            let warm = dir.join("dpop-warm.lua");
            let measured = dir.join("dpop.lua");
            write_dpop_lua(
                &warm,
                &url,
                &request.path,
                token.trim(),
                2 * PROOFS_PER_SECOND,
            )?;
            write_dpop_lua(
                &measured,
                &url,
                &request.path,
                token.trim(),
                seconds as usize * PROOFS_PER_SECOND,
            )?;
            (warm, measured)
        }
        None => (lua_path.clone(), lua_path),
    };
    // Warm-up: V8 tiers wasm up from its baseline compiler while it runs.
    wrk(&warm_lua, &url, 2, connections)?;
    let cpu_before = cpu_seconds(envoy.pid())?;
    let output = wrk(&lua_path, &url, seconds, connections)?;
    let cpu_after = cpu_seconds(envoy.pid())?;
    let rss_mib = resident_mib(envoy.pid());
    let parsed =
        parse_wrk(&output).ok_or_else(|| format!("cannot read wrk's output:\n{output}"))?;
    drop(envoy);
    let cpu_us = if parsed.4 > 0 {
        (cpu_after - cpu_before) * 1e6 / parsed.4 as f64
    } else {
        0.0
    };
    Ok(Measured {
        row: row.clone(),
        rps: parsed.0,
        p50_ms: parsed.1,
        p99_ms: parsed.2,
        non_2xx: parsed.3,
        rss_mib,
        cpu_us,
    })
}

/// DPoP proofs made per second of a row: more than Envoy serves with one
/// worker, so no proof is sent twice.
const PROOFS_PER_SECOND: usize = 8000;

/// A wrk script that sends `token` with the DPoP scheme and a new proof
/// (for `GET url`) on each request, `count` of them.
fn write_dpop_lua(
    path: &Path,
    url: &str,
    request_path: &str,
    token: &str,
    count: usize,
) -> Result<(), String> {
    let key = palisade_e2e::tokens::DpopKey::new(0x42);
    let htu = url.split('?').next().unwrap_or(url);
    let mut lua = String::with_capacity(count * 720 + 512);
    lua.push_str("local proofs = {\n");
    for _ in 0..count {
        let _ = writeln!(lua, "  \"{}\",", key.proof("GET", htu, Some(token)));
    }
    let _ = write!(
        lua,
        "}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", {}, {{ [\"authorization\"] = {}, [\"dpop\"] = proofs[i] or proofs[#proofs] }})\nend\n",
        lua_string(request_path),
        lua_string(&format!("DPoP {token}"))
    );
    std::fs::write(path, lua).map_err(|e| e.to_string())
}

/// The CPU Envoy (all its threads) runs on, and the one wrk runs on. Left
/// to the scheduler, Envoy's worker and wrk share a core in some runs and
/// not in others, which moved rows by a quarter between runs.
const ENVOY_CPU: usize = 1;
const WRK_CPU: usize = 0;

/// Pins every thread of `pid` to `cpu` (`taskset`), when the machine has it.
fn pin(pid: u32, cpu: usize) {
    if pinning() {
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
            .output();
    }
}

/// Whether rows run pinned: `taskset` present and at least two CPUs.
fn pinning() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset").arg("--version").output().is_ok()
}

fn wrk(lua: &Path, url: &str, seconds: u64, connections: u64) -> Result<String, String> {
    let mut command = if pinning() {
        let mut c = Command::new("taskset");
        c.args(["-c", &WRK_CPU.to_string(), "wrk"]);
        c
    } else {
        Command::new("wrk")
    };
    let out = command
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(lua)
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run wrk ({e}); `make bench` installs it"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Requests/s, p50 ms, p99 ms, non-2xx/3xx responses and requests completed
/// from wrk's output.
fn parse_wrk(out: &str) -> Option<(f64, f64, f64, u64, u64)> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut total = None;
    for line in out.lines() {
        let t = line.trim();
        if let Some((n, _)) = t.split_once(" requests in ") {
            total = n.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = duration_ms(v.trim());
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = duration_ms(v.trim());
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    Some((rps?, p50?, p99?, non_2xx, total?))
}

/// User + system CPU time of a process so far, in seconds (fields 14 and 15
/// of `/proc/<pid>/stat`, in clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read Envoy's CPU time: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc stat format")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| "unexpected /proc stat format".to_string())
    };
    // After the name, field 3 (state) is index 0, so utime (14) is 11.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn resident_mib(pid: u32) -> f64 {
    palisade_e2e::rss_bytes(pid).map_or(0.0, |bytes| bytes as f64 / (1024.0 * 1024.0))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cores} cores")
}

fn envoy_version() -> String {
    Command::new(envoy_bin())
        .arg("--version")
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            // "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
            text.split("version:")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|w| w.split('/').nth(1))
                .unwrap_or("unknown")
                .to_string()
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn report(results: &[Measured], seconds: u64, connections: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Palisade benchmark results\n");
    let _ = writeln!(
        out,
        "{}; Envoy {} `--concurrency 1`; wrk 1 thread, {connections} connections, {seconds} s per row after a 2 s warm-up; loopback; {}. Produced by `make bench`.\n",
        today(),
        envoy_version(),
        if pinning() {
            format!("Envoy pinned to CPU {ENVOY_CPU}, wrk to CPU {WRK_CPU}")
        } else {
            "unpinned".to_string()
        }
    );
    let _ = writeln!(out, "Machine: {}.\n", machine());
    let _ = writeln!(out, "\"vs baseline\" compares requests/s; \"CPU vs baseline\" compares Envoy's CPU time per request (baseline's / this row's), which other load on the machine disturbs far less.\n");
    let _ = writeln!(out, "| configuration | requests/s | p50 ms | p99 ms | vs baseline | Envoy CPU us/req | CPU vs baseline | baseline | non-2xx | Envoy RSS MiB |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for m in results {
        let baseline = m
            .row
            .baseline
            .as_ref()
            .and_then(|b| results.iter().find(|r| &r.row.name == b));
        let ratio = |f: fn(&Measured) -> f64| {
            baseline
                .filter(|b| [f(b), f(m)].iter().all(|v| v.is_finite() && *v > 0.0))
                .map(|b| format!("{:.2}x", f(m) / f(b)))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.3} | {:.3} | {} | {:.1} | {} | {} | {} | {:.0} |",
            m.row.name,
            m.rps,
            m.p50_ms,
            m.p99_ms,
            ratio(|r| r.rps),
            m.cpu_us,
            ratio(|r| 1.0 / r.cpu_us),
            m.row.baseline.as_deref().unwrap_or("-"),
            m.non_2xx,
            m.rss_mib
        );
    }
    let _ = writeln!(out, "\nModule sizes:\n");
    let mut modules: Vec<(String, u64)> = std::fs::read_dir(dist_dir())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    modules.sort();
    for (name, size) in modules {
        let _ = writeln!(out, "- `{name}`: {} KiB", size / 1024);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 1s test\n  Latency Distribution\n     50%  412.00us\n     75%    1.20ms\n     90%    2.00ms\n     99%    3.50ms\n  1000 requests in 1.00s\nNon-2xx or 3xx responses: 7\nRequests/sec:  12345.67\nTransfer/sec: 1MB\n";
        let (rps, p50, p99, non2xx, total) = parse_wrk(out).unwrap();
        assert_eq!(total, 1000);
        assert!((rps - 12345.67).abs() < 1e-6);
        assert!((p50 - 0.412).abs() < 1e-9);
        assert!((p99 - 3.5).abs() < 1e-9);
        assert_eq!(non2xx, 7);
        assert_eq!(duration_ms("1.5s"), Some(1500.0));
        assert!(parse_wrk("garbage").is_none());
    }

    #[test]
    fn lua_quotes() {
        let lua = lua_for(&BenchRequest {
            method: "POST".into(),
            path: "/".into(),
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            body: Some("{\"a\":\"b\\c\"}\n".into()),
        });
        assert_eq!(
            lua,
            "wrk.method = \"POST\"\nwrk.body = \"{\\\"a\\\":\\\"b\\\\c\\\"}\\n\"\nwrk.headers[\"content-type\"] = \"application/json\"\n"
        );
    }
}
