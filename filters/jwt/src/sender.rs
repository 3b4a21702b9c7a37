//! Sender-constrained tokens: a verified token whose provider requires it
//! must be bound to the client that presents it, so that a stolen token is
//! useless without the client's key.
//!
//! - RFC 8705: `cnf.x5t#S256` is the base64url SHA-256 of the client
//!   certificate Envoy validated on this connection (never a header).
//! - RFC 9449: `cnf.jkt` is the thumbprint of the key that signed the
//!   request's `DPoP` proof ([`crate::dpop`]); the token comes with the
//!   `DPoP` scheme, never `Bearer`; the proof's `jti` is accepted once
//!   across every worker ([`crate::replay`]); with server nonces, the proof
//!   carries one this proxy made ([`crate::nonce`]).
//!
//! Every binding a token carries is checked; the provider's
//! `sender_constraint` says which binding a token must carry at least.

use palisade_shared::headers::first_value;
use serde_json::{Map, Value};

use crate::config::{Provider, SenderConstraint};
use crate::decide::Request;
use crate::dpop::{self, ProofTarget};
use crate::error::Reason;
use crate::jws::b64url_encode;
use crate::replay::{self, Recorded};
use crate::verify::SignatureVerifier;
use crate::{htu, nonce};

/// What the checks need from the proxy: the connection's certificate, the
/// replay tables, the nonce keys. The stage implements it over the host;
/// tests over memory.
pub trait SenderContext {
    /// The SHA-256 of the connection's client certificate (raw bytes), when
    /// the client presented one.
    fn peer_certificate_sha256(&mut self) -> Option<Vec<u8>>;
    /// Records a DPoP proof of provider `provider` until `until` (seconds).
    fn record_proof(
        &mut self,
        provider: usize,
        proof: (u64, u32),
        now: i64,
        until: i64,
    ) -> Recorded;
    /// The nonce key of provider `provider` when none is configured;
    /// `refresh` reads it again from where the workers share it.
    fn nonce_secret(&mut self, provider: usize, refresh: bool) -> Option<Vec<u8>>;
}

/// A context with nothing: no certificate, no replay table, no nonce key
/// (every sender-constrained token is refused with it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Nothing;

impl SenderContext for Nothing {
    fn peer_certificate_sha256(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn record_proof(&mut self, _: usize, _: (u64, u32), _: i64, _: i64) -> Recorded {
        Recorded::Unavailable
    }
    fn nonce_secret(&mut self, _: usize, _: bool) -> Option<Vec<u8>> {
        None
    }
}

/// The token of provider `index`, verified, presented with the `DPoP`
/// scheme or not: is it bound to this client?
#[allow(clippy::too_many_arguments)]
pub fn check(
    index: usize,
    provider: &Provider,
    claims: &Map<String, Value>,
    token: &str,
    dpop_scheme: bool,
    request: &Request<'_>,
    verifier: &dyn SignatureVerifier,
    now: i64,
    ctx: &mut dyn SenderContext,
) -> Result<(), Reason> {
    if provider.sender == SenderConstraint::None {
        return Ok(());
    }
    let cnf = claims.get("cnf").and_then(Value::as_object);
    let binding = |name: &str| cnf.and_then(|c| c.get(name)).and_then(Value::as_str);
    let (jkt, x5t) = (binding("jkt"), binding("x5t#S256"));
    if jkt.is_some() && !dpop_scheme {
        return Err(Reason::DpopBoundAsBearer);
    }
    let bound = match provider.sender {
        SenderConstraint::Mtls => x5t.is_some(),
        SenderConstraint::Dpop => jkt.is_some(),
        SenderConstraint::Either | SenderConstraint::None => x5t.is_some() || jkt.is_some(),
    };
    if !bound || (dpop_scheme && jkt.is_none()) {
        return Err(Reason::NotSenderConstrained);
    }
    if let Some(x5t) = x5t {
        let sha256 = ctx
            .peer_certificate_sha256()
            .ok_or(Reason::MtlsCertificateMissing)?;
        if b64url_encode(&sha256) != x5t {
            return Err(Reason::MtlsCertificateMismatch);
        }
    }
    let Some(jkt) = jkt else {
        return Ok(());
    };
    let policy = provider.dpop.as_ref().ok_or(Reason::NotSenderConstrained)?;
    let header = |name: &str| first_value(request.headers, name).unwrap_or("");
    let url = htu::of_request(
        header(":scheme"),
        request.view.host,
        request.view.path_only(),
    )
    .ok_or(Reason::DpopProofUrl)?;
    let proofs: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("dpop"))
        .map(|(_, v)| v.as_str())
        .collect();
    let target = ProofTarget {
        method: request.view.method,
        url: &url,
        access_token: token,
        jkt,
    };
    let proof = dpop::check_proof(policy, &proofs, &target, now, verifier)?;
    if let Some(rules) = &policy.nonce {
        let mut valid = |refresh| {
            let secret = match &rules.secret {
                Some(configured) => Some(configured.clone()),
                None => ctx.nonce_secret(index, refresh),
            };
            match (secret, proof.nonce.as_deref()) {
                (Some(key), Some(n)) => nonce::is_valid(&key, n, now, rules.lifetime_s),
                _ => false,
            }
        };
        // A nonce another worker made just after start-up may be under a
        // key this worker has not seen yet: look once more.
        if !valid(false) && (proof.nonce.is_none() || !valid(true)) {
            return Err(Reason::DpopNonce);
        }
    }
    let until = proof
        .iat
        .saturating_add(policy.max_age_s)
        .saturating_add(policy.clock_skew_s);
    match ctx.record_proof(index, replay::fingerprint(jkt, &proof.jti), now, until) {
        Recorded::Fresh => Ok(()),
        Recorded::Replayed => Err(Reason::DpopProofReplayed),
        Recorded::Full | Recorded::Unavailable => Err(Reason::DpopReplayUnavailable),
    }
}

#[cfg(test)]
mod tests {
    //! Each binding against the connection and the proof, with the replay
    //! table and nonce keys in memory.

    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use palisade_shared::matcher::RequestView;
    use palisade_shared::store::MemoryStore;
    use serde_json::json;

    use super::*;
    use crate::config::Config;
    use crate::dpop::{thumbprint, token_hash};
    use crate::verify::Portable;

    const NOW: i64 = 1_800_000_000;
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";

    fn config() -> Config {
        let jwks = r#"{"keys": [{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        Config::from_json(
            format!(
                r#"{{"providers": {{
                "bearer": {{"issuer": "b", "jwks": {jwks}}},
                "dpop": {{"issuer": "d", "jwks": {jwks}, "sender_constraint": "dpop"}},
                "either": {{"issuer": "e", "jwks": {jwks}, "sender_constraint": "either"}},
                "mtls": {{"issuer": "m", "jwks": {jwks}, "sender_constraint": "mtls"}},
                "nonce": {{"issuer": "n", "jwks": {jwks}, "sender_constraint": "dpop",
                           "dpop": {{"nonce": {{"secret": "{}"}}, "replay_entries": 64}}}}
            }}}}"#,
                crate::jws::b64url_encode(&[9u8; 32])
            )
            .as_bytes(),
        )
        .unwrap()
    }

    struct Memory {
        peer: Option<Vec<u8>>,
        store: MemoryStore,
        table: crate::replay::ReplayTable,
    }

    impl Memory {
        fn new(peer: Option<Vec<u8>>) -> Self {
            let store = MemoryStore::new();
            let table = crate::replay::ReplayTable::new(64, "t.");
            table.create(&store).unwrap();
            Memory { peer, store, table }
        }
    }

    impl SenderContext for Memory {
        fn peer_certificate_sha256(&mut self) -> Option<Vec<u8>> {
            self.peer.clone()
        }
        fn record_proof(&mut self, _: usize, p: (u64, u32), now: i64, until: i64) -> Recorded {
            self.table.record(&self.store, p, now, until)
        }
        fn nonce_secret(&mut self, _: usize, _: bool) -> Option<Vec<u8>> {
            None
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn jwk(k: &SigningKey) -> Value {
        let p = k.verifying_key().to_encoded_point(false);
        json!({"kty":"EC","crv":"P-256","x": b64url_encode(p.x().unwrap()),"y": b64url_encode(p.y().unwrap())})
    }

    fn proof(k: &SigningKey, jti: &str, nonce: Option<&str>) -> String {
        let mut claims = json!({"jti": jti, "htm": "GET", "htu": "https://api.example.com/orders",
                                "iat": NOW, "ath": token_hash(TOKEN)});
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(k)});
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(claims.to_string().as_bytes())
        );
        let s: Signature = k.sign(input.as_bytes());
        format!("{input}.{}", b64url_encode(&s.to_bytes()))
    }

    fn claims(cnf: Value) -> Map<String, Value> {
        json!({"cnf": cnf}).as_object().unwrap().clone()
    }

    /// Checks a token of provider `name` with `cnf`, presented with `dpop`
    /// scheme or not, with these `DPoP` headers.
    fn run(
        name: &str,
        cnf: Value,
        dpop_scheme: bool,
        proofs: &[String],
        ctx: &mut dyn SenderContext,
    ) -> Result<(), Reason> {
        let c = config();
        let index = c.providers.iter().position(|p| p.name == name).unwrap();
        let mut headers = vec![(":scheme".to_string(), "https".to_string())];
        headers.extend(proofs.iter().map(|p| ("dpop".to_string(), p.clone())));
        let request = Request {
            view: RequestView {
                method: "GET",
                host: "api.example.com",
                path: "/orders?page=1",
                route_name: "",
            },
            headers: &headers,
        };
        check(
            index,
            &c.providers[index],
            &claims(cnf),
            TOKEN,
            dpop_scheme,
            &request,
            &Portable,
            NOW,
            ctx,
        )
    }

    #[test]
    fn certificate_bound_tokens() {
        let cert = [7u8; 32];
        let x5t = json!({"x5t#S256": b64url_encode(&cert)});
        let mut right = Memory::new(Some(cert.to_vec()));
        assert_eq!(run("mtls", x5t.clone(), false, &[], &mut right), Ok(()));
        assert_eq!(
            run("mtls", x5t.clone(), false, &[], &mut Memory::new(None)),
            Err(Reason::MtlsCertificateMissing)
        );
        assert_eq!(
            run(
                "mtls",
                x5t.clone(),
                false,
                &[],
                &mut Memory::new(Some(vec![8u8; 32]))
            ),
            Err(Reason::MtlsCertificateMismatch)
        );
        assert_eq!(
            run("mtls", json!({}), false, &[], &mut right),
            Err(Reason::NotSenderConstrained)
        );
        assert_eq!(run("either", x5t, false, &[], &mut right), Ok(()));
        // Without a constraint, nothing is checked.
        assert_eq!(
            run("bearer", json!({"jkt": "x"}), false, &[], &mut Nothing),
            Ok(())
        );
    }

    #[test]
    fn dpop_bound_tokens() {
        let k = key(1);
        let jkt = json!({"jkt": thumbprint(jwk(&k).as_object().unwrap()).unwrap()});
        let mut ctx = Memory::new(None);
        assert_eq!(
            run(
                "dpop",
                jkt.clone(),
                false,
                &[proof(&k, "a", None)],
                &mut ctx
            ),
            Err(Reason::DpopBoundAsBearer)
        );
        assert_eq!(
            run("dpop", json!({"x5t#S256": "x"}), true, &[], &mut ctx),
            Err(Reason::NotSenderConstrained)
        );
        assert_eq!(
            run("either", json!({}), true, &[], &mut ctx),
            Err(Reason::NotSenderConstrained)
        );
        assert_eq!(
            run("dpop", jkt.clone(), true, &[], &mut ctx),
            Err(Reason::DpopProofMissing)
        );
        let first = proof(&k, "a", None);
        assert_eq!(
            run(
                "dpop",
                jkt.clone(),
                true,
                std::slice::from_ref(&first),
                &mut ctx
            ),
            Ok(())
        );
        assert_eq!(
            run("dpop", jkt.clone(), true, &[first], &mut ctx),
            Err(Reason::DpopProofReplayed)
        );
        assert_eq!(
            run(
                "either",
                jkt.clone(),
                true,
                &[proof(&k, "b", None)],
                &mut ctx
            ),
            Ok(())
        );
        // A table that cannot remember refuses rather than risk a replay.
        assert_eq!(
            run("dpop", jkt, true, &[proof(&k, "c", None)], &mut Nothing),
            Err(Reason::DpopReplayUnavailable)
        );
    }

    #[test]
    fn server_nonces() {
        let k = key(1);
        let jkt = json!({"jkt": thumbprint(jwk(&k).as_object().unwrap()).unwrap()});
        let mut ctx = Memory::new(None);
        assert_eq!(
            run(
                "nonce",
                jkt.clone(),
                true,
                &[proof(&k, "a", None)],
                &mut ctx
            ),
            Err(Reason::DpopNonce)
        );
        assert_eq!(
            run(
                "nonce",
                jkt.clone(),
                true,
                &[proof(&k, "b", Some("made-up"))],
                &mut ctx
            ),
            Err(Reason::DpopNonce)
        );
        let ours = nonce::mint(&[9u8; 32], NOW, 300);
        assert_eq!(
            run(
                "nonce",
                jkt.clone(),
                true,
                &[proof(&k, "c", Some(&ours))],
                &mut ctx
            ),
            Ok(())
        );
        let stale = nonce::mint(&[9u8; 32], NOW - 900, 300);
        assert_eq!(
            run(
                "nonce",
                jkt,
                true,
                &[proof(&k, "d", Some(&stale))],
                &mut ctx
            ),
            Err(Reason::DpopNonce)
        );
    }
}
