//! TLS for the end-to-end tests: a throwaway PKI made with the openssl
//! command line, a listener context that asks for client certificates, and
//! requests over TLS with curl.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::http::Response;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl command line in a fresh folder.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Generates the CA and both certificates.
    pub fn generate() -> Pki {
        let dir = crate::run_dir().join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl is needed for the TLS tests");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=Palisade test CA/O=Palisade",
            ],
        ]
        .concat());
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, subject) in [
            ("server", "/CN=127.0.0.1"),
            ("client", "/CN=alice-laptop/O=Palisade"),
        ] {
            let keyfile = format!("{name}.key");
            let csr = format!("{name}.csr");
            run(&[
                &["req"][..],
                &key,
                &["-keyout", &keyfile, "-out", &csr, "-subj", subject],
            ]
            .concat());
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
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
    /// `client.pem`, `client.key`.
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
    if client_cert {
        cmd.args([
            "--cert",
            &pki.path("client.pem"),
            "--key",
            &pki.path("client.key"),
        ]);
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(format!("https://{addr}{path}"));
    let out = cmd.output().expect("curl is needed for the TLS tests");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_response(&out.stdout)
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
