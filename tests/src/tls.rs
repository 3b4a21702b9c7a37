//! TLS for the end-to-end tests: a throwaway PKI made with the openssl
//! command line, a listener context that asks for client certificates, and
//! requests over TLS with curl.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::http::Response;

/// The local PKI of `scripts/certs.sh` (what `make certs` writes to
/// `dist/certs/`), made in a fresh folder: the CA, Envoy's server
/// certificate (localhost, mtls.localhost, 127.0.0.1), clients `client`
/// (CN=alice-laptop), `checkout` and `reporting` (SPIFFE IDs), the upstream's
/// `echo` and Envoy's `gateway`, and `rogue`, a client of another CA.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Generates every certificate with the project's script.
    pub fn generate() -> Pki {
        let dir = crate::run_dir().join("pki");
        let out = Command::new("bash")
            .arg(crate::repo_root().join("scripts/certs.sh"))
            .arg(&dir)
            .output()
            .expect("bash and openssl are needed for the TLS tests");
        assert!(
            out.status.success(),
            "scripts/certs.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pki { dir }
    }

    /// A field of a certificate as `openssl x509 -nameopt RFC2253 <option>`
    /// prints it: `-issuer`, `-subject` (distinguished names, RFC 2253 as
    /// Envoy writes them), `-serial` (upper-case hex), `-fingerprint -sha256`.
    pub fn certificate_field(&self, file: &str, option: &str) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-nameopt", "RFC2253"])
            .args(option.split_whitespace())
            .arg("-in")
            .arg(self.dir.join(file))
            .output()
            .expect("openssl is needed for the TLS tests");
        assert!(out.status.success(), "openssl x509 {option}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().split_once('=') {
            Some((_, value)) => value.trim().to_string(),
            None => panic!("openssl x509 {option} printed {text}"),
        }
    }

    /// The path of a file of it: `ca.pem`, `server.pem`, `server.key`,
    /// `<client>.pem`, `<client>.key`.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// A request over TLS with curl, optionally presenting the client certificate.
pub fn curl_https(
    pki: &Pki,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    client_cert: bool,
) -> Response {
    let tls = Curl {
        cert: client_cert.then_some("client"),
        ..Curl::default()
    };
    tls.request(pki, addr, method, path, headers)
        .unwrap_or_else(|e| panic!("curl: {e}"))
}

/// How curl connects: which client certificate it presents, the TLS
/// versions and ciphers it offers, the server name it asks for.
#[derive(Debug, Clone, Default)]
pub struct Curl<'a> {
    /// The client certificate (`checkout` for `checkout.pem` and `.key`).
    pub cert: Option<&'a str>,
    /// `--tls-max` (`1.2`).
    pub tls_max: Option<&'a str>,
    /// `--ciphers` (TLS 1.2 cipher suites, OpenSSL names).
    pub ciphers: Option<&'a str>,
    /// The host name to ask for (SNI and `Host`), resolved to the listener.
    pub server_name: Option<&'a str>,
}

impl Curl<'_> {
    /// Sends one request over TLS; `Err` with curl's message when the
    /// connection or handshake fails.
    pub fn request(
        &self,
        pki: &Pki,
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-i",
            "--http1.1",
            "-X",
            method,
            "--cacert",
            &pki.path("ca.pem"),
        ]);
        if let Some(cert) = self.cert {
            cmd.arg("--cert")
                .arg(pki.path(&format!("{cert}.pem")))
                .arg("--key")
                .arg(pki.path(&format!("{cert}.key")));
        }
        if let Some(max) = self.tls_max {
            cmd.args(["--tlsv1.2", "--tls-max", max]);
        }
        if let Some(ciphers) = self.ciphers {
            cmd.args(["--ciphers", ciphers]);
        }
        for (name, value) in headers {
            cmd.arg("-H").arg(format!("{name}: {value}"));
        }
        let host = match self.server_name {
            Some(name) => {
                cmd.arg("--resolve")
                    .arg(format!("{name}:{}:{}", addr.port(), addr.ip()));
                format!("{name}:{}", addr.port())
            }
            None => addr.to_string(),
        };
        cmd.arg(format!("https://{host}{path}"));
        let out = cmd.output().expect("curl is needed for the TLS tests");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(parse_response(&out.stdout))
    }
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A `DownstreamTlsContext` with the server certificate that asks for a
/// client certificate, verifies one against the CA when it comes, and lets
/// clients without one in.
pub fn downstream_tls_context(pki: &Pki) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        // Ask for a client certificate, verify it against our CA when one
        // comes, and let clients without one in (the policy decides).
        "require_client_certificate": false,
        "common_tls_context": {
            "tls_certificates": [{
                "certificate_chain": {"filename": pki.path("server.pem")},
                "private_key": {"filename": pki.path("server.key")}
            }],
            "validation_context": {"trusted_ca": {"filename": pki.path("ca.pem")}}
        }
    })
}
