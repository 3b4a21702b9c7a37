//! The JWT filter in a real Envoy: tokens minted here with our own keys,
//! verified against inline and remote (served here) JWK sets, with the
//! host verifier and the portable one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use palisade_e2e::idp::FakeIdp;
use palisade_e2e::oidc::OidcProvider;
use palisade_e2e::tokens::{b64url, now, TestIssuer};
use palisade_e2e::{config_error, EchoUpstream, Envoy, EnvoyConfig, Request, Response};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

// Test-only keys, generated for these tests. Never use them anywhere else.
const RSA_KEY_1: &str = "-----BEGIN PRIVATE KEY-----
MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQC9tULy6srdB641
r/QVz9Za+/Dxecu40WgPXx7e48wuF4C9r3NFmJy4kZBPvNwQw/eryq0TemnyASsA
jSP1DRo9jezv3J6IGD9bpwiuf9v6K37c6TgJV31AeYBT3rlM54YQ+YVd+YA0Acvc
aI2qVNQOVSNAuqq/oDMEoTs9rU1W2aCLTIIqbZWr3nEr3bAm9ZH6Xmhxox/KY9L8
kse5kcApuEAlm3Ry/B7Xcri17hNOWQumwpGZ82jRgM/q6kwjknyXeoJKYPdNIc48
vet1HKtdkePhRK1M7EfDAbGsPyCVvOuunj5mpdX8MiXEIMMXcRPQq0CVeeHEYxiF
JHTGY+ejAgMBAAECgf80kIndBAFwsQSlRd9s9qTubx+LfAFBqvSqb4L1NddC5I2L
LQ/K35Q/+jJqPKRJjQgHLtG8fjE4tBB8SVbpoHG/dehohEdfVjbSlky7yZTMFhqV
neyKxxYzj7D32Ywd8OckC7vXndj0L4GTMq2j8VExQgofkNhBcNJueGT0Nt4S4l9/
aghO6oHHZX3V9pXn0DhRWh1AOUnTBSUh294hHD7bSTDipvE+eDs6vPaqRTvwL8US
Y8lqcw8DkVItD1pPjumm9LPSR+HxrVnMZ91vsIcKjX/GnkYFW78YdT4+8FTHV3MQ
44Eax6/vdiaL5TZ6/Sh5WJSgGAUA3BlKiG6CmjkCgYEA4kpRJ/KCHtyPrbdQTOWh
f5z1Q1UUJFQV2ccsk+Y6BVOgA+SAVHMHOlyJ4WPmfonqNoUgZorFHLQRdDJ4MbqF
FKq6Rj2M3zHTNBSXYzf7j+W01LoB61vRvbYdSOFVO58TWa+bTDMOilUKJJpUThQP
L3ZmklxLpLwsp7RVc3qrposCgYEA1p1njByYejEiEi9lSquUYFYI+AlT3v7X+YtA
entXmkU/QIFFsVjdWkeKWEyoK5eBJelj9rcq82Jd+iW5SzlD0uPuLZnPVyIsV51e
QZUdSdvO/QMWdFKmMExd/q5oETkT2+fL8dnn/T+GWFzxG/xbDy54B+eNoETgpdx0
NuaLfkkCgYEAl0wtGtJv4YaCohlQnTljU1l0OsKlpux5d5RN380suecBs9iRXOVT
zdeVcJdEwxIfALjdwvHBfMGAcfpUlpso43qK9O+uQoSju8yQs4v4rGtfDmQXaG+J
upgK2HGgdS6U14AsCzSP4jmdgH+XImUTCh7V0cHX6ZrPGIngIEfCgKUCgYB8Jcvb
gkM2FCwIZwBqRHztiXdgvEyXJ8aZ5VLkR2tyo3Imh2FgaO6LJe1CjP2PUfH0k2Ev
O+ANsK56YM4iVLsGSLHkESCe3/bUrAT1XSP3ML85H0si+RiHwfVxuUQcCm+RezI/
8nS/y7qUbRdQwBeQ3amzsN/9gTqO18smYxD4eQKBgA/KkxEe/PdB3BNXfcqDBoHQ
4MKIrwy4OR1iqbfXHGa7hLOwb++5pIk4HllITTKyApPkQWZ4/z8qRsCh5KvrMckP
dqmzYPtpz8OD3lvP5c4yuMs1FdGGduhk/TteuTV9apeVUR5rrmPRr1wSkbBkfsgE
paWD1Sogj4Hj+IV7UddQ
-----END PRIVATE KEY-----";
const RSA_KEY_2: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCjKjGVkjIo5Tg9
t6QRWJKwm7OZVNFiwxypZ0EjYKJ//bKKvvNlOwwpfL+Q635ECG4oDjdirR51Mkuq
HiuFxD9FbqYO/dup/Y8XEOgpz4T3vn5/jGSzGkDoF+nkRq4+eUke7Qu8RNuXwXby
WMuuXUD6co5Yl4YajQtC9Q4MWXo3MBpZhaA7D2YOZbH+WboitC3CUYjU1roRwu/P
EYwigvvrApdp6T94AFecFEXf61Jb4HHQR0COwNNXCX+UuX+IauJBvh4Gjc19GZUr
26INXz+u3Y6Ob9ar2Om2rLNkH7lXloF0pT5XQZvkb7tU7agEvhM/erN5PuOcX2W5
JWvxkREHAgMBAAECggEAKg/B+YNXD+jLP0m8b0ZMhl+VBGVzlsiidl8qURLjwSfm
41KHTyTSJU3F2neCtMoRj5zelT74l5CwJboiURj+kIkOINY7Ts6RGQqgNssKxYzj
ckEAYpVVfx9PCaxY1b0RZvoHqPB9RVk3rxDJ7PiYPBfU7yycgvKyIQAoL3HPijMf
59TUGAACBAWUD1nWWk/K5dXDPWZBrujXKIUSPYqhzuHUlDhqHzlP80ecQ+PB/QoS
XeSWqqIEQ9XGRtrE9nEkMNtpAfFosqGJmMxaSTv0nTOfL3lbggXnRPKRcw3b/qxZ
q4NhkJ6LELtfKrsoU9BBnmVgrXb+z0a37iAZ3BBpmQKBgQDiAAhMKkrZbVUf1Zkh
KmY16l7qbyR972t8Ac+1rTIFGdLDyEMX4l9R8vSTxlXQAe4WqmA0oSgDF1TRXI9k
3FmXiNvNE8SAQFcq4iK5d3nzmaQ96cg4dvXuzsYYQxLilaJEVar2NfcgK1UzTLuD
UxuyhhZJ1uRRzdB+9ILedHZKTwKBgQC40uIWpV7OInA8vlurOCQwQ2bc3rrRV4M8
SpkhIT4X8OoxOtolf7YcvK9rfsRTZz4PqDPg1mzo2/3lwK73nOAO6AP3Fil1qiEU
SGeep0W5h5YmlcBTM6U8P0whtwdKzil7D3XaJowfaFzRsEJHvi35fjZ5wlyQyZpQ
5L5QHfp3yQKBgCJ4dsuHN9tp/a3ZWn3gha57jPac9SfwOKi1bgT74cE9axRJm1It
SPSq5fsUKUqMwM/cNMhSPFQcXueAAq8TnOasDTp+ZV5acfEshLddLdCmApMe8VcL
bf96smRI9rxwrktV9bmQCZ1yfpBQh9lD99mG8idZC4Ierkpu6PcdNF2pAoGADJ1Q
Ew2cZ+NP18WCSjBdv/GJvr9w7sLTUTUiOHGlZErsIQoMQ4zw6As0ydhwG+UrBjSL
vefErSv+q0S4bGwHmtzZEG8xyzceZN0APYLbLmuDowSLiOI4f+EuGAr+82sYx65p
c8c3vxkHZMRr8auYRbQIkczjNnqcDrNeDefN5YkCgYA698E3PvLmlnE4dzoXmCF8
lQ0cDsvUDz3mb2QggX6qG6Ow/2x/RCBHrhEAvmvcaJ1z3K7u7QezQpRZwZde8BTm
2svdn9kcetUQaccOg5uvVLFQYLEdk4gJTVnBV1kzaWtk7eUCAyoVHQv1RYQaGsEe
4RSykbTHb3nGx+q688P0TA==
-----END PRIVATE KEY-----";

/// The seed of the test-only P-256 key of the ES256 tokens.
const EC_SEED: u8 = 0x2e;

/// A signing key and its public JWK. ES256 keys are the harness's
/// [`TestIssuer`]; it has no RS256 or EdDSA keys, so those live here.
enum Key {
    Rsa(Box<rsa::RsaPrivateKey>, &'static str),
    Ec(TestIssuer),
    Ed(ed25519_dalek::SigningKey, &'static str),
}

impl Key {
    fn rsa(pem: &str, kid: &'static str) -> Key {
        Key::Rsa(
            Box::new(rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap()),
            kid,
        )
    }
    /// The P-256 key of [`EC_SEED`] with id `kid`. (Its issuer name goes
    /// unused: [`Key::mint`] signs the claims it is given, `iss` included.)
    fn ec(kid: &str) -> Key {
        Key::Ec(TestIssuer::new("", kid, EC_SEED))
    }
    fn ed(seed: u8, kid: &'static str) -> Key {
        Key::Ed(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]), kid)
    }

    fn jwk(&self) -> Value {
        match self {
            Key::Rsa(k, kid) => {
                let p = k.to_public_key();
                json!({"kty":"RSA","kid":kid,"use":"sig","n":b64url(&p.n().to_bytes_be()),"e":b64url(&p.e().to_bytes_be())})
            }
            Key::Ec(issuer) => {
                // Without `alg`, like the RSA and Ed25519 keys here: the
                // filter infers ES256 from the key type and curve.
                let mut jwk = issuer.jwk();
                jwk.as_object_mut().unwrap().remove("alg");
                jwk
            }
            Key::Ed(k, kid) => {
                json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":b64url(k.verifying_key().as_bytes())})
            }
        }
    }

    fn kid(&self) -> &str {
        match self {
            Key::Rsa(_, kid) | Key::Ed(_, kid) => kid,
            Key::Ec(issuer) => &issuer.kid,
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Rsa(..) => "RS256",
            Key::Ec(..) => "ES256",
            Key::Ed(..) => "EdDSA",
        }
    }

    /// A compact JWS of `claims` with this key (header `kid` overridable).
    fn mint_with_kid(&self, kid: &str, claims: &Value) -> String {
        let signed = |sign: &dyn Fn(&[u8]) -> Vec<u8>| {
            let header = json!({"alg": self.alg(), "typ": "JWT", "kid": kid});
            let input = format!(
                "{}.{}",
                b64url(header.to_string().as_bytes()),
                b64url(claims.to_string().as_bytes())
            );
            format!("{input}.{}", b64url(&sign(input.as_bytes())))
        };
        match self {
            Key::Rsa(k, _) => signed(&|input| {
                let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**k).clone());
                signer.sign(input).to_vec()
            }),
            Key::Ec(issuer) => issuer.sign(kid, claims),
            Key::Ed(k, _) => signed(&|input| k.sign(input).to_bytes().to_vec()),
        }
    }

    fn mint(&self, claims: &Value) -> String {
        self.mint_with_kid(self.kid(), claims)
    }
}

fn jwks(keys: &[&Key]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

fn claims(iss: &str) -> Value {
    json!({"iss": iss, "aud": "api", "sub": "alice", "exp": now() + 600, "iat": now(),
           "scope": "orders:read profile", "client_id": "web", "acr": "2", "amr": ["pwd", "otp"],
           "org": {"id": "acme"}, "roles": ["admin", "dev"], "jti": "j-1"})
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn get(envoy: &Envoy, path: &str, token: Option<&str>) -> Response {
    let mut r = Request::get(path);
    if let Some(t) = token {
        r = r.header("authorization", &bearer(t));
    }
    envoy.request(r)
}

/// The JSON the echo upstream saw.
fn echoed(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn inline_keys_allow_deny_headers_identity_and_metrics() {
    let rsa = Key::rsa(RSA_KEY_1, "r1");
    let ec = Key::ec("e1");
    let ed = Key::ed(7, "d1");
    let upstream = EchoUpstream::start();
    let config = json!({
        "realm": "api",
        "providers": {
            "corp": {
                "issuer": "https://idp.example.com",
                "audiences": ["api"],
                "jwks": jwks(&[&rsa, &ec, &ed]),
                "claim_headers": [{"claim": "sub", "header": "x-user"}, {"claim": "roles", "header": "x-roles"},
                                  {"claim": "org.id", "header": "x-org"}],
                "payload_header": "x-jwt-payload"
            }
        },
        "rules": [
            {"match": {"path": {"prefix": "/public"}}},
            {"match": {"path": {"prefix": "/orders"}}, "requires": {"provider": "corp"}, "scopes": {"all_of": ["orders:read"]}},
            {"match": {"path": {"prefix": "/admin"}}, "requires": {"provider": "corp"}, "scopes": {"all_of": ["admin:write"]}},
            {"match": {"path": {"prefix": "/org"}}, "requires": {"provider": "corp"}, "claims": [{"claim": "org.id", "equals": "globex"}]},
            {"match": {}, "requires": {"provider": "corp"}}
        ]
    });
    let envoy = EnvoyConfig::new()
        .wasm_filter("jwt", config)
        .upstream(&upstream)
        .access_log_format("%RESPONSE_CODE% %FILTER_STATE(wasm.palisade.identity:PLAIN)% %FILTER_STATE(wasm.palisade.denial:PLAIN)%\n")
        .start();
    assert!(
        envoy
            .envoy_log()
            .contains("palisade.jwt: RS*/ES* signatures verified by the host"),
        "{}",
        envoy.envoy_log()
    );

    // Each algorithm, through the host (RS256, ES256) and portable (EdDSA) paths.
    for key in [&rsa, &ec, &ed] {
        let token = key.mint(&claims("https://idp.example.com"));
        let seen = echoed(
            &envoy.request(
                Request::get("/orders/1")
                    .header("authorization", &bearer(&token))
                    .header("x-user", "forged-by-client")
                    .header("x-user", "forged-again")
                    .header("x-jwt-payload", "forged"),
            ),
        );
        let h = &seen["headers"];
        assert_eq!(h["x-user"], "alice", "{} {seen}", key.alg());
        assert_eq!(h["x-roles"], "admin,dev");
        assert_eq!(h["x-org"], "acme");
        assert!(
            h.get("authorization").is_none(),
            "token not forwarded by default: {seen}"
        );
        let payload: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(h["x-jwt-payload"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["sub"], "alice");
    }

    // Public routes need nothing, and client copies of claim headers still go.
    let seen = echoed(&envoy.request(Request::get("/public/x").header("x-user", "forged")));
    assert!(seen["headers"].get("x-user").is_none(), "{seen}");

    // Missing token: a bare challenge (RFC 6750 3.1) and a problem body.
    let r = get(&envoy, "/orders/1", None);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let problem = r.json();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["detail"], "no bearer token");
    assert_eq!(problem["request_id"].as_str().unwrap().len(), 36);

    // Bad tokens: invalid_token, with the reason.
    let mut expired = claims("https://idp.example.com");
    expired["exp"] = json!(now() - 120);
    let mut other_iss = claims("https://evil.example.com");
    other_iss["aud"] = json!("api");
    let forged = Key::rsa(RSA_KEY_2, "r1").mint(&claims("https://idp.example.com"));
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none"}"#),
        b64url(claims("https://idp.example.com").to_string().as_bytes())
    );
    let cases = [
        (rsa.mint(&expired), "token is expired", "token_expired"),
        (
            ec.mint(&other_iss),
            "token issuer is not accepted",
            "issuer_mismatch",
        ),
        (forged, "token signature is invalid", "signature_invalid"),
        (none, "empty header or signature segment", "token_malformed"),
        (
            "not.a.jwt".to_string(),
            "header is not base64url",
            "token_malformed",
        ),
        (
            rsa.mint_with_kid("nope", &claims("https://idp.example.com")),
            "token key id is unknown",
            "unknown_kid",
        ),
    ];
    for (token, description, metric) in &cases {
        let r = get(&envoy, "/orders/1", Some(token));
        assert_eq!(r.status, 401, "{description}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate").unwrap(),
            format!(
                r#"Bearer realm="api", error="invalid_token", error_description="{description}""#
            )
        );
        assert!(
            envoy
                .counter(&format!("palisade.jwt.denied.{metric}"))
                .unwrap()
                >= 1,
            "{metric}"
        );
    }

    // Valid token, missing scope: 403 insufficient_scope with the scope.
    let token = rsa.mint(&claims("https://idp.example.com"));
    let r = get(&envoy, "/admin", Some(&token));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        r#"Bearer realm="api", error="insufficient_scope", error_description="token lacks the required scope", scope="admin:write""#
    );
    assert_eq!(get(&envoy, "/org", Some(&token)).status, 403);

    // Repeated token: the cache answers.
    let before = envoy.counter("palisade.jwt.cache_hit").unwrap();
    for _ in 0..3 {
        assert_eq!(get(&envoy, "/x", Some(&token)).status, 200);
    }
    assert!(envoy.counter("palisade.jwt.cache_hit").unwrap() >= before + 3);

    // Identity and denial as filter state, for the audit log.
    let log = envoy.wait_access_log(20);
    let allowed_line = log
        .iter()
        .find(|l| l.starts_with("200 {"))
        .expect("an allowed request in the access log");
    let identity: Value =
        serde_json::from_str(allowed_line[4..].rsplit_once(' ').unwrap().0).unwrap();
    assert_eq!(identity["provider"], "corp");
    assert_eq!(identity["sub"], "alice");
    assert_eq!(identity["iss"], "https://idp.example.com");
    assert_eq!(identity["aud"], json!(["api"]));
    assert_eq!(identity["scope"], json!(["orders:read", "profile"]));
    assert_eq!(identity["client_id"], "web");
    assert_eq!(identity["amr"], json!(["pwd", "otp"]));
    let denied_line = log
        .iter()
        .find(|l| l.starts_with("403 "))
        .expect("a refusal in the access log");
    let denial: Value = serde_json::from_str(denied_line.rsplit_once(' ').unwrap().1).unwrap();
    assert_eq!(
        denial,
        json!({"filter": "jwt", "status": 403, "reason": "insufficient_scope"})
    );
    assert!(envoy.counter("palisade.jwt.allowed").unwrap() >= 6);
    assert!(envoy.counter("palisade.jwt.denied.token_missing").unwrap() >= 1);
}

#[test]
fn token_sources_forwarding_and_tolerance() {
    let ed = Key::ed(3, "k");
    let upstream = EchoUpstream::start();
    let config = json!({
        "problem_body": false,
        "providers": {
            "q": {"issuer": "https://q", "jwks": jwks(&[&ed]), "from": [{"query": "access_token"}, {"cookie": "at"}]},
            "h": {"issuer": "https://h", "jwks": jwks(&[&ed]), "from": [{"header": "x-api-token", "prefix": "Token "}], "forward": true}
        },
        "rules": [
            {"match": {"path": {"prefix": "/both"}}, "requires": {"all": ["q", "h"]}},
            {"match": {"path": {"prefix": "/q"}}, "requires": {"provider": "q"}},
            {"match": {"path": {"prefix": "/maybe"}}, "requires": {"provider": "h"}, "allow_missing": true},
            {"match": {"path": {"prefix": "/lenient"}}, "requires": {"provider": "h"}, "allow_missing_or_failed": true},
            {"match": {"path": {"prefix": "/h"}}, "requires": {"provider": "h"}}
        ]
    });
    let envoy = EnvoyConfig::new()
        .wasm_filter("jwt", config)
        .upstream(&upstream)
        .access_log_format("%REQ(:PATH)% %FILTER_STATE(wasm.palisade.identity:PLAIN)% %FILTER_STATE(wasm.palisade.identities:PLAIN)%\n")
        .start();
    let mut q_claims = claims("https://q");
    q_claims.as_object_mut().unwrap().remove("aud");
    let q = ed.mint(&q_claims);
    let seen = echoed(&get(&envoy, &format!("/q?a=1&access_token={q}"), None));
    assert_eq!(seen["path"], "/q?a=1", "token taken out of the query");
    let seen = echoed(&envoy.request(Request::get("/q").header("cookie", &format!("s=1; at={q}"))));
    assert_eq!(seen["headers"]["cookie"], "s=1");
    let h = ed.mint(&claims("https://h"));
    let seen =
        echoed(&envoy.request(Request::get("/h").header("x-api-token", &format!("Token {h}"))));
    assert_eq!(
        seen["headers"]["x-api-token"],
        format!("Token {h}"),
        "forwarded"
    );
    let r = envoy.request(Request::get("/h").header("authorization", &bearer(&h)));
    assert_eq!(r.status, 401, "Authorization is not where `h` looks");
    assert!(r.body.is_empty(), "problem bodies off");
    assert_eq!(envoy.request(Request::get("/maybe")).status, 200);
    assert_eq!(
        envoy
            .request(Request::get("/maybe").header("x-api-token", "Token x.y.z"))
            .status,
        401
    );
    assert_eq!(
        envoy
            .request(Request::get("/lenient").header("x-api-token", "Token x.y.z"))
            .status,
        200
    );
    assert!(envoy.counter("palisade.jwt.allowed_without_token").unwrap() >= 2);
    // An `all` rule: both tokens needed, both identities published.
    let both = |with_h: bool| {
        let mut r = Request::get(&format!("/both?access_token={q}"));
        if with_h {
            r = r.header("x-api-token", &format!("Token {h}"));
        }
        envoy.request(r)
    };
    assert_eq!(both(false).status, 401);
    let seen = echoed(&both(true));
    assert_eq!(seen["path"], "/both");
    let find = || {
        envoy
            .access_log()
            .into_iter()
            .find(|l| l.starts_with("/both") && l.contains(" [{"))
    };
    let start = Instant::now();
    while find().is_none() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(line) = find() else {
        panic!("no /both line with identities in {:#?}", envoy.access_log());
    };
    let (first, all) = line.split_once(' ').unwrap().1.split_once(" [").unwrap();
    let first: Value = serde_json::from_str(first).unwrap();
    let all: Value = serde_json::from_str(&format!("[{all}")).unwrap();
    assert_eq!(first["provider"], "q");
    assert_eq!(all[0], first);
    assert_eq!(all[1]["provider"], "h");
    assert_eq!(all[1]["iss"], "https://h");
    // CORS preflight passes by default.
    let pre = envoy.request(
        Request::new("OPTIONS", "/h")
            .header("origin", "https://app")
            .header("access-control-request-method", "POST"),
    );
    assert_eq!(pre.status, 200);
}

/// Without rules on method, host or path, the filter reads only the token
/// header by name; a CORS preflight must still pass and a claim header
/// still be set, with the client's copies gone.
#[test]
fn only_the_token_header_is_read_without_route_rules() {
    let ec = Key::ec("e1");
    let upstream = EchoUpstream::start();
    let config = json!({
        "providers": {"corp": {"issuer": "https://idp.example.com", "audiences": ["api"],
                               "jwks": jwks(&[&ec]),
                               "claim_headers": [{"claim": "sub", "header": "x-user"}]}}
    });
    let envoy = EnvoyConfig::new()
        .wasm_filter("jwt", config)
        .upstream(&upstream)
        .start();
    let token = ec.mint(&claims("https://idp.example.com"));
    for _ in 0..2 {
        let seen = echoed(
            &envoy.request(
                Request::get("/x")
                    .header("authorization", &bearer(&token))
                    .header("x-user", "forged")
                    .header("x-user", "forged-again"),
            ),
        );
        assert_eq!(seen["headers"]["x-user"], "alice", "{seen}");
        assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    }
    assert!(envoy.counter("palisade.jwt.cache_hit").unwrap() >= 1);
    assert_eq!(get(&envoy, "/x", None).status, 401);
    assert_eq!(get(&envoy, "/x", Some("x.y.z")).status, 401);
    let preflight = |token: Option<&str>| {
        let mut r = Request::new("OPTIONS", "/x")
            .header("origin", "https://app")
            .header("access-control-request-method", "POST")
            .header("x-user", "forged");
        if let Some(t) = token {
            r = r.header("authorization", &bearer(t));
        }
        envoy.request(r)
    };
    for token in [None, Some("x.y.z")] {
        let r = preflight(token);
        assert_eq!(r.status, 200, "{token:?}");
        assert!(echoed(&r)["headers"].get("x-user").is_none());
    }
    let r = envoy.request(Request::new("OPTIONS", "/x").header("origin", "https://app"));
    assert_eq!(
        r.status, 401,
        "not a preflight without Access-Control-Request-Method"
    );
}

#[test]
fn invalid_config_is_refused() {
    let log = EnvoyConfig::new()
        .wasm_filter(
            "jwt",
            json!({"providers": {"a": {"issuer": "i", "jwks": {"keys": []}}}}),
        )
        .start_expecting_failure();
    assert!(
        log.contains(&config_error("jwt", "providers.a.jwks")),
        "{log}"
    );
}

/// Polls until `f` holds, or fails after `limit`.
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within {limit:?}: {what}");
}

fn remote_envoy(idp: &FakeIdp, provider: Value, concurrency: u32) -> Envoy {
    EnvoyConfig::new()
        .wasm_filter(
            "jwt",
            json!({"providers": {"idp": provider}, "key_wait_ms": 3000}),
        )
        .cluster("idp", idp.addr())
        .concurrency(concurrency)
        .start()
}

#[test]
fn discovery_rotation_kid_flood_and_outage() {
    let k1 = Key::rsa(RSA_KEY_1, "k1");
    let k2 = Key::ec("k2");
    let issuer = "https://idp.test";
    let idp = FakeIdp::start(issuer, jwks(&[&k1]));
    let envoy = remote_envoy(
        &idp,
        json!({"issuer": issuer, "audiences": ["api"], "discovery": {"cluster": "idp"}}),
        2,
    );
    // The first requests may arrive before the keys: they wait, then pass.
    let t1 = k1.mint(&claims(issuer));
    for _ in 0..10 {
        assert_eq!(get(&envoy, "/", Some(&t1)).status, 200);
    }
    // One fetch for the whole Envoy, not one per worker.
    assert_eq!(idp.discovery_fetches(), 1);
    assert_eq!(idp.jwks_fetches(), 1);
    assert_eq!(envoy.counter("palisade.jwt.jwks_fetch_ok"), Some(1));

    // The provider rotates to k2: a token with the new kid triggers one
    // refresh and passes, without a restart.
    idp.set_jwks(jwks(&[&k2]));
    let t2 = k2.mint(&claims(issuer));
    assert_eq!(get(&envoy, "/", Some(&t2)).status, 200);
    assert_eq!(envoy.counter("palisade.jwt.kid_refetch"), Some(1));
    assert_eq!(idp.jwks_fetches(), 2);

    // A flood of bogus kids costs the IdP nothing within the interval.
    for i in 0..20 {
        let bogus = k2.mint_with_kid(&format!("bogus-{i}"), &claims(issuer));
        let r = get(&envoy, "/", Some(&bogus));
        assert_eq!(r.status, 401);
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .contains("token key id is unknown"));
    }
    assert_eq!(idp.jwks_fetches(), 2);

    // The IdP goes down: the cached keys keep working.
    idp.set_up(false);
    for _ in 0..5 {
        let r = get(&envoy, "/", Some(&t2));
        assert_eq!(
            r.status,
            200,
            "{:?} {}",
            r.header("www-authenticate"),
            envoy.envoy_log()
        );
    }
}

#[test]
fn keys_unavailable_is_503_until_the_provider_comes_back() {
    let k = Key::ed(5, "k");
    let issuer = "https://idp2.test";
    let idp = FakeIdp::start(issuer, jwks(&[&k]));
    idp.set_up(false);
    let envoy = remote_envoy(
        &idp,
        json!({"issuer": issuer, "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": 1000}}),
        1,
    );
    let token = k.mint(&claims(issuer));
    let r = get(&envoy, "/", Some(&token));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(r.header("www-authenticate").is_none());
    assert_eq!(r.json()["detail"], "signing keys are unavailable");
    assert!(
        envoy
            .counter("palisade.jwt.denied.keys_unavailable")
            .unwrap()
            >= 1
    );
    assert!(envoy.counter("palisade.jwt.jwks_fetch_failed").unwrap() >= 1);
    assert!(
        envoy.envoy_log().contains("key fetch failed: status 503"),
        "the log says why"
    );
    // A missing token is still a 401: no keys are needed to say so.
    assert_eq!(get(&envoy, "/", None).status, 401);
    idp.set_up(true);
    eventually(
        Duration::from_secs(20),
        "keys load after the IdP is back",
        || get(&envoy, "/", Some(&token)).status == 200,
    );
}

#[test]
fn keys_refresh_before_expiry_and_stay_while_refreshes_fail() {
    let k = Key::ec("k");
    let issuer = "https://idp3.test";
    let idp = FakeIdp::start(issuer, jwks(&[&k]));
    let envoy = remote_envoy(
        &idp,
        json!({"issuer": issuer, "remote_jwks": {"cluster": "idp", "path": "/jwks", "cache_duration_s": 1, "stale_if_error_s": 60}}),
        1,
    );
    let token = k.mint(&claims(issuer));
    assert_eq!(get(&envoy, "/", Some(&token)).status, 200);
    eventually(Duration::from_secs(10), "refreshed", || {
        idp.jwks_fetches() >= 3
    });
    idp.set_up(false);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(envoy.counter("palisade.jwt.jwks_fetch_failed").unwrap() >= 1);
    // Past cache_duration_s, within stale_if_error_s: still served.
    let fresh = k.mint(&claims(issuer));
    assert_eq!(get(&envoy, "/", Some(&fresh)).status, 200);
}

/// Every Wycheproof JWS case through two Envoys, one using the host's
/// `verify_signature` and one the portable verifier: the same status and the
/// same `error_description` for each, and the verdict the vector expects
/// (a valid signature gets past the signature check, to the claims, which
/// these non-JWT payloads then fail).
#[test]
fn host_and_portable_verifiers_agree_on_wycheproof() {
    let Some(dir) = palisade_e2e::shared_corpora("jose") else {
        println!("skipping: ../shared/corpora/jose is absent");
        return;
    };
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.join("json_web_signature_test.json")).unwrap())
            .unwrap();
    let groups = doc["testGroups"].as_array().unwrap();
    let mut providers = serde_json::Map::new();
    let mut rules = Vec::new();
    let mut cases = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let key = g.get("public").or_else(|| g.get("private")).unwrap();
        // Keys for encryption are refused when the configuration loads (a
        // unit test checks that); they cannot be configured at all.
        let usable = key.get("use").is_none_or(|u| u == "sig")
            && key
                .get("key_ops")
                .is_none_or(|ops| ops.as_array().unwrap().iter().any(|o| o == "verify"));
        if !usable {
            continue;
        }
        providers.insert(
            format!("g{i}"),
            json!({"issuer": format!("w{i}"), "jwks": {"keys": [key]}}),
        );
        rules.push(json!({"match": {"path": {"prefix": format!("/g{i}/")}}, "requires": {"provider": format!("g{i}")}}));
        for t in g["tests"].as_array().unwrap() {
            let jws = t["jws"].as_str().unwrap_or("");
            if jws.bytes().any(|b| !(0x21..0x7f).contains(&b) && b != b' ') {
                continue; // not sendable as a header value
            }
            cases.push((
                i,
                t["tcId"].as_u64().unwrap(),
                jws.to_string(),
                t["result"] == "valid",
            ));
        }
    }
    let start = |verifier: &str| {
        EnvoyConfig::new()
            .wasm_filter("jwt", json!({"providers": providers, "rules": rules, "verifier": verifier, "cache_entries": 0}))
            .start()
    };
    let host = start("auto");
    let portable = start("portable");
    assert!(host.envoy_log().contains("verified by the host"));
    assert!(portable
        .envoy_log()
        .contains("verified by the portable (pure-Rust) verifier, as configured"));
    // Refusals at or before the signature check; anything else means the
    // signature verified.
    let before_signature = [
        "token signature is invalid",
        "token key id is unknown",
        "token key id matches several keys",
        "no key fits the token algorithm",
        "token algorithm is not allowed",
        "token has critical header parameters",
        "not three dot-separated segments",
        "empty header or signature segment",
        "header is not base64url",
        "payload is not base64url",
        "signature is not base64url",
        "header is not JSON",
        "header is not a JSON object",
        "header has no `alg` string",
        "header member is not a string",
        "no bearer token",
    ];
    // Vectors whose labels contradict their text (see the unit test).
    let inconsistent = [367, 370, 372, 373];
    let mut checked = 0;
    for (g, tc, jws, valid) in &cases {
        let request = |envoy: &Envoy| {
            let r = envoy.request(
                Request::get(&format!("/g{g}/{tc}"))
                    .header("authorization", &format!("Bearer {jws}")),
            );
            let challenge = r.header("www-authenticate").unwrap_or("").to_string();
            (r.status, challenge)
        };
        let (h, p) = (request(&host), request(&portable));
        assert_eq!(h, p, "tcId {tc}: host and portable verifiers disagree");
        assert_eq!(h.0, 401, "tcId {tc}: {}", h.1);
        if inconsistent.contains(tc) {
            continue;
        }
        let description =
            h.1.split("error_description=\"")
                .nth(1)
                .unwrap_or("no bearer token")
                .trim_end_matches('"');
        let verified = !before_signature.contains(&description);
        assert_eq!(verified, *valid, "tcId {tc}: {description}");
        checked += 1;
    }
    println!("{checked} Wycheproof cases: host and portable verdicts identical and as labelled");
    assert!(checked > 300, "{checked}");
}

fn oidc_envoy(issuer: &str, port: u16) -> (EchoUpstream, Envoy) {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter(
            "jwt",
            json!({
                "providers": {"op": {
                    "issuer": issuer,
                    "audiences": ["https://api.palisade.test"],
                    "discovery": {"cluster": "idp", "timeout_ms": 2000},
                    "claim_headers": [{"claim": "client_id", "header": "x-client"}]
                }},
                "rules": [
                    {"match": {"path": {"prefix": "/write"}}, "requires": {"provider": "op"}, "scopes": {"all_of": ["orders:write"]}},
                    {"match": {}, "requires": {"provider": "op"}, "scopes": {"all_of": ["orders:read"]}}
                ]
            }),
        )
        .cluster("idp", SocketAddr::from(([127, 0, 0, 1], port)))
        .upstream(&upstream)
        .start();
    (upstream, envoy)
}

#[test]
fn oidc_provider_discovery_rotation_outage_and_return() {
    if !OidcProvider::installed() {
        return;
    }
    let port = OidcProvider::free_port();
    let op = OidcProvider::start(port, "k1");
    let (_up, envoy) = oidc_envoy(&op.issuer(), port);
    let read = op.token("orders:read");
    let seen = echoed(&get(&envoy, "/orders", Some(&read)));
    assert_eq!(seen["headers"]["x-client"], "e2e");
    let r = get(&envoy, "/write", Some(&read));
    assert_eq!(r.status, 403);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains(r#"scope="orders:write""#));
    let write = op.token("orders:read orders:write");
    assert_eq!(get(&envoy, "/write", Some(&write)).status, 200);

    // Key rotation at the provider: the new kid is picked up without restart.
    drop(op);
    let op = OidcProvider::start(port, "k2");
    let rotated = op.token("orders:read");
    assert_eq!(get(&envoy, "/orders", Some(&rotated)).status, 200);
    assert_eq!(envoy.counter("palisade.jwt.kid_refetch"), Some(1));
    let r = get(&envoy, "/orders", Some(&read));
    assert_eq!(r.status, 401, "a token of the retired key");

    // The provider goes down: cached keys keep working.
    drop(op);
    assert_eq!(get(&envoy, "/orders", Some(&rotated)).status, 200);

    // An Envoy that never had the keys answers 503 while the provider is
    // down, and serves once it is back.
    let (_up2, fresh) = oidc_envoy(&format!("http://127.0.0.1:{port}"), port);
    let r = get(&fresh, "/orders", Some(&rotated));
    assert_eq!(r.status, 503, "{}", r.text());
    let op = OidcProvider::start(port, "k3");
    let back = op.token("orders:read");
    eventually(
        Duration::from_secs(30),
        "keys load once the provider is back",
        || get(&fresh, "/orders", Some(&back)).status == 200,
    );
}
