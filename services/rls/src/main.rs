//! `palisade-rls`: a rate-limit service for Palisade's global rules (and for
//! Envoy's own `envoy.filters.http.ratelimit`), speaking Envoy's RLS gRPC
//! API. The limits and the counting are Kuadrant's limitador, the counters
//! live in Redis: run as many replicas as you like against one Redis, every
//! proxy of the fleet sees the same counts.
//!
//! ```text
//! palisade-rls --listen 127.0.0.1:8081 --redis redis://127.0.0.1:6379 --limits limits.json
//! ```
//!
//! `limits.json` is a list of limitador limits (its own format, as
//! limitador-server's YAML): `namespace` (the RLS domain), `max_value`,
//! `seconds`, `conditions` and `variables` over `descriptors[0]`, and an
//! optional `name`. The bound address is printed on the first line of
//! standard output (`listening on 127.0.0.1:8081`), so `--listen` may use
//! port 0.

mod decide;
mod grpc;
mod proto;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use limitador::limit::Limit;
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::grpc::{RateLimitServer, RateLimitService};

/// The longest one call may take before it is answered `UNAVAILABLE`.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis connection: a reply within a second, a connection within half
/// a second, and after a lost connection two quick retries (at most 100 ms
/// apart) per attempt. While Redis is down each call then fails within
/// about a second instead of waiting on redis-rs's default backoff (which
/// grows to minutes), and the next call after Redis returns reconnects.
fn redis_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Duration::from_secs(1))
        .set_connection_timeout(Duration::from_millis(500))
        .set_number_of_retries(2)
        .set_max_delay(100)
}

async fn connect(url: &str) -> Result<AsyncRedisStorage, String> {
    let client = redis::Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
    let manager = ConnectionManager::new_with_config(client, redis_config())
        .await
        .map_err(|e| format!("cannot reach Redis at {url}: {e}"))?;
    AsyncRedisStorage::new_with_conn_manager(manager)
        .await
        .map_err(|e| format!("cannot load limitador's scripts into Redis at {url}: {e}"))
}

struct Args {
    listen: SocketAddr,
    redis: String,
    limits: String,
}

fn usage() -> String {
    "usage: palisade-rls --listen ADDR:PORT --redis redis://HOST:PORT --limits limits.json"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut redis = None;
    let mut limits = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--listen" => {
                listen = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--listen {value}: {e}"))?,
                )
            }
            "--redis" => redis = Some(value),
            "--limits" => limits = Some(value),
            _ => return Err(usage()),
        }
    }
    Ok(Args {
        listen: listen.ok_or_else(usage)?,
        redis: redis.ok_or_else(usage)?,
        limits: limits.ok_or_else(usage)?,
    })
}

fn read_limits(path: &str) -> Result<Vec<Limit>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_slice(&text)
        .map_err(|e| format!("{path}: not a list of limitador limits: {e}"))
}

async fn run(args: Args) -> Result<(), String> {
    let limits = read_limits(&args.limits)?;
    let storage = connect(&args.redis).await?;
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    let count = limits.len();
    limiter
        .configure_with(limits)
        .await
        .map_err(|e| format!("cannot configure the limits: {e}"))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    println!("listening on {bound}");
    eprintln!("palisade-rls: {count} limit(s), counters in {}", args.redis);
    let server = RateLimitServer::new(RateLimitService::new(limiter, CALL_TIMEOUT));
    Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("server failed: {e}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("palisade-rls: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("palisade-rls: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade-rls: {e}");
            ExitCode::FAILURE
        }
    }
}
