//! The certificate reader (`palisade_shared::x509`): the client certificate
//! Envoy hands over (`connection.peer_certificate`, URL-encoded PEM) is the
//! client's bytes, read by the transport policy, the audit record and the
//! JWT policy's certificate-bound tokens. Any bytes, as DER and as PEM
//! text: nothing panics, and what is read is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_shared::x509::{der_from_pem_text, parse, sha256_hex};

fuzz_target!(|data: &[u8]| {
    let read = [Some(data.to_vec()), der_from_pem_text(data)];
    for der in read.into_iter().flatten() {
        let digest = sha256_hex(&der);
        assert_eq!(digest.len(), 64);
        if let Some(cert) = parse(&der) {
            assert!(cert
                .serial_number
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        }
    }
});
