#!/usr/bin/env python3
"""Mints the JWT benchmark's keys' JWKS and tokens (bench/jwt/*), for rows in
bench/scenarios/jwt.json. The keys here are for benchmarks only.

Usage: python3 bench/jwt/mint.py   (needs the `cryptography` package)
Writes: jwks.json, rs256-repeated.txt, es256-repeated.txt,
        rs256-distinct.lua, es256-distinct.lua (500 distinct tokens each).

       python3 bench/jwt/mint.py --dpop
Writes only es256-dpop-token.txt: the ES256 token of es256-repeated.txt's
claims, bound (cnf.jkt, RFC 9449) to the benchmark DPoP client's key, the
P-256 scalar 0x42 repeated 32 times (tests/src/bin/dpop-proofs.rs signs the
proofs with it).
"""
import base64
import json
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
ISSUER = "https://bench.palisade.test"
EXP = 4102444800  # 2100-01-01
COUNT = 500


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load(name):
    with open(os.path.join(HERE, name), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def int_bytes(n: int, size: int) -> bytes:
    return n.to_bytes(size, "big")


def mint(alg, key, kid, claims):
    header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}, separators=(",", ":")).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    if alg == "RS256":
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = int_bytes(r, 32) + int_bytes(s, 32)
    return f"{header}.{payload}.{b64(sig)}"


def claims(i):
    return {"iss": ISSUER, "aud": "bench", "sub": f"user-{i}", "exp": EXP, "iat": 1700000000,
            "scope": "orders:read", "jti": f"bench-{i}"}


def main():
    rsa_key = load("bench-rs256.key.pem")
    ec_key = load("bench-es256.key.pem")
    rn = rsa_key.public_key().public_numbers()
    en = ec_key.public_key().public_numbers()
    jwks = {"keys": [
        {"kty": "RSA", "kid": "bench-rs", "alg": "RS256", "use": "sig",
         "n": b64(int_bytes(rn.n, (rn.n.bit_length() + 7) // 8)), "e": b64(int_bytes(rn.e, 3))},
        {"kty": "EC", "kid": "bench-ec", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": b64(int_bytes(en.x, 32)), "y": b64(int_bytes(en.y, 32))},
    ]}
    with open(os.path.join(HERE, "jwks.json"), "w") as f:
        json.dump(jwks, f, separators=(",", ":"))
        f.write("\n")
    for alg, key, kid, prefix in (("RS256", rsa_key, "bench-rs", "rs256"), ("ES256", ec_key, "bench-ec", "es256")):
        with open(os.path.join(HERE, f"{prefix}-repeated.txt"), "w") as f:
            f.write(mint(alg, key, kid, claims(0)) + "\n")
        tokens = [mint(alg, key, kid, claims(i)) for i in range(1, COUNT + 1)]
        with open(os.path.join(HERE, f"{prefix}-distinct.lua"), "w") as f:
            f.write(f"-- {COUNT} distinct {alg} tokens, one per request in turn (made by mint.py)\n")
            f.write("local tokens = {\n")
            for t in tokens:
                f.write(f'  "{t}",\n')
            f.write("}\nlocal i = 0\nrequest = function()\n  i = i % #tokens + 1\n")
            f.write('  return wrk.format("GET", "/api/items", { ["authorization"] = "Bearer " .. tokens[i] })\nend\n')


def dpop_token():
    ec_key = load("bench-es256.key.pem")
    client = ec.derive_private_key(int.from_bytes(bytes([0x42]) * 32, "big"), ec.SECP256R1())
    n = client.public_key().public_numbers()
    jwk = {"crv": "P-256", "kty": "EC", "x": b64(int_bytes(n.x, 32)), "y": b64(int_bytes(n.y, 32))}
    digest = hashes.Hash(hashes.SHA256())
    digest.update(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode())
    claims_dpop = dict(claims(0), cnf={"jkt": b64(digest.finalize())}, jti="bench-dpop")
    with open(os.path.join(HERE, "es256-dpop-token.txt"), "w") as f:
        f.write(mint("ES256", ec_key, "bench-ec", claims_dpop) + "\n")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--dpop"]:
        dpop_token()
    else:
        main()
