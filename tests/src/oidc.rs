//! The npm package `oidc-provider` (a certified OpenID Provider), installed
//! under `tests/` by `make node-deps`, started on loopback by a test
//! (`tests/jwt-oidc-provider.mjs`): over HTTP, or over HTTPS with client
//! certificates, issuing certificate-bound and DPoP-bound tokens. Besides
//! the API of the JWT tests ([`RESOURCE`]), it issues tokens for any MCP
//! server behind Envoy on loopback (`http://127.0.0.1:<port>/...`, scopes
//! `mcp:read`, `mcp:write`), whose URI becomes their audience (RFC 8707).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use base64::Engine;

use crate::tls::Pki;
use crate::Request;

/// A running provider; dropping it stops it.
pub struct OidcProvider {
    child: Child,
    port: u16,
    tls: Option<String>,
}

/// The resource of the JWT tests' tokens (their `aud`).
pub const RESOURCE: &str = "https://api.palisade.test";

/// The confidential client with every scope (id, secret).
pub const CLIENT: (&str, &str) = ("e2e", "e2e-secret-not-used-anywhere-else");
/// A confidential client allowed only `mcp:read` (id, secret).
pub const READER: (&str, &str) = ("e2e-reader", "e2e-reader-secret-not-used-anywhere-else");

impl OidcProvider {
    /// Whether the package is installed (else the test says so and skips).
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

    /// Starts the provider over HTTP on `port`, signing with a new key named `kid`.
    pub fn start(port: u16, kid: &str) -> OidcProvider {
        Self::spawn(port, kid, None)
    }

    /// Starts it over HTTPS with `pki`'s server certificate, asking clients
    /// for certificates of its CA.
    pub fn start_tls(port: u16, kid: &str, pki: &Pki) -> OidcProvider {
        let dir = std::path::Path::new(&pki.path("ca.pem"))
            .parent()
            .unwrap()
            .display()
            .to_string();
        Self::spawn(port, kid, Some(dir))
    }

    fn spawn(port: u16, kid: &str, tls: Option<String>) -> OidcProvider {
        let tests = crate::repo_root().join("tests");
        let mut command = Command::new("node");
        command
            .arg(tests.join("jwt-oidc-provider.mjs"))
            .arg(port.to_string())
            .arg(kid);
        if let Some(dir) = &tls {
            command.arg(dir);
        }
        let mut child = command
            .current_dir(&tests)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        crate::wait_until_ready(&mut child, "oidc-provider");
        OidcProvider { child, port, tls }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its issuer URL.
    pub fn issuer(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A JWT access token for client `e2e` from the client credentials
    /// grant with a resource indicator (over HTTP).
    pub fn token(&self, scope: &str) -> String {
        let basic = base64::engine::general_purpose::STANDARD
            .encode("e2e:e2e-secret-not-used-anywhere-else");
        let body = format!(
            "grant_type=client_credentials&scope={scope}&resource=https%3A%2F%2Fapi.palisade.test"
        );
        let r = crate::send(
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

    /// A JWT access token for `resource` from the client credentials grant
    /// of `client` (id, secret), over HTTP.
    pub fn token_for(&self, client: (&str, &str), scope: &str, resource: &str) -> String {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1));
        let form = |s: &str| s.replace(':', "%3A").replace('/', "%2F").replace(' ', "+");
        let body = format!(
            "grant_type=client_credentials&scope={}&resource={}",
            form(scope),
            form(resource)
        );
        let r = crate::send(
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

    /// A token response over HTTPS: `client` (`mtls-client`, `dpop-client`)
    /// authenticates with its secret, presenting the client certificate
    /// `cert` and the DPoP proof `dpop` when given.
    pub fn token_tls(
        &self,
        pki: &Pki,
        client: &str,
        cert: Option<&str>,
        dpop: Option<&str>,
    ) -> serde_json::Value {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--cacert", &pki.path("ca.pem")])
            .arg("-u")
            .arg(format!("{client}:{client}-secret-not-used-anywhere-else"))
            .args([
                "-d",
                "grant_type=client_credentials",
                "-d",
                "scope=orders:read",
            ])
            .arg("-d")
            .arg(format!("resource={RESOURCE}"));
        if let Some(cert) = cert {
            curl.arg("--cert")
                .arg(pki.path(&format!("{cert}.pem")))
                .arg("--key")
                .arg(pki.path(&format!("{cert}.key")));
        }
        if let Some(proof) = dpop {
            curl.arg("-H").arg(format!("DPoP: {proof}"));
        }
        let out = curl
            .arg(format!("{}/token", self.issuer()))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Its JWK set, fetched over HTTPS.
    pub fn jwks_tls(&self, pki: &Pki) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", &pki.path("ca.pem")])
            .arg(format!("{}/jwks", self.issuer()))
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
