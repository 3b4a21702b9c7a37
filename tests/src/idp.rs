//! The identity provider of the end-to-end tests: the npm package
//! `oidc-provider` (a certified OpenID Provider), installed under `tests/`
//! by `make node-deps`, started on loopback by a test
//! (`tests/jwt-oidc-provider.mjs`). It issues RS256 JWT access tokens with
//! the client credentials grant, for the resource a token request names
//! (RFC 8707): `https://api.palisade.test` (scopes `orders:*`) or any
//! `http://127.0.0.1:<port>/...` resource (scopes `mcp:*`, an MCP server
//! behind Envoy).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::http::{send, Request};

/// The confidential client with every scope.
pub const CLIENT: (&str, &str) = ("e2e", "e2e-secret-not-used-anywhere-else");
/// A confidential client allowed only the read scopes.
pub const READER: (&str, &str) = ("e2e-reader", "e2e-reader-secret-not-used-anywhere-else");

/// A running `oidc-provider`; dropping it stops it.
pub struct OidcProvider {
    child: std::process::Child,
    port: u16,
}

impl OidcProvider {
    /// Whether `make node-deps` installed it (else the test says it skips).
    pub fn installed() -> bool {
        let dir = crate::repo_root().join("tests/node_modules/oidc-provider");
        if !dir.exists() {
            println!("skipping: {} is absent (cd tests && npm ci)", dir.display());
        }
        dir.exists()
    }

    /// A free loopback port.
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Starts the provider on `port`, signing with a new key named `kid`.
    pub fn start(port: u16, kid: &str) -> OidcProvider {
        let tests = crate::repo_root().join("tests");
        let mut child = std::process::Command::new("node")
            .arg(tests.join("jwt-oidc-provider.mjs"))
            .arg(port.to_string())
            .arg(kid)
            .current_dir(&tests)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !line.starts_with("ready") {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
                let _ = child.kill();
                panic!("oidc-provider did not start");
            }
        }
        OidcProvider { child, port }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its issuer URL.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A JWT access token for `resource` from the client credentials grant
    /// of the full client.
    pub fn token(&self, scope: &str, resource: &str) -> String {
        self.token_for(CLIENT, scope, resource)
    }

    /// A JWT access token for `resource` from the client credentials grant
    /// of `client` (id, secret).
    pub fn token_for(&self, client: (&str, &str), scope: &str, resource: &str) -> String {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1));
        let form = |s: &str| s.replace(':', "%3A").replace('/', "%2F").replace(' ', "+");
        let body = format!(
            "grant_type=client_credentials&scope={}&resource={}",
            form(scope),
            form(resource)
        );
        let r = send(
            self.addr(),
            &Request::post("/token", body)
                .header("host", &format!("127.0.0.1:{}", self.port))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", &format!("Basic {basic}")),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
