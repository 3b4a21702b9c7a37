#!/usr/bin/env python3
"""Prints the MFA benchmark's token (bench/scenarios/mfa.json): ES256 with the
JWT benchmark's key (bench/jwt/bench-es256.key.pem, benchmarks only), the
claims of bench/jwt/mint.py plus acr "mfa", amr ["pwd","otp"] and a fixed
auth_time (the bench policy's max_age spans it).

Usage: python3 bench/mfa/mint.py   (needs the `cryptography` package)
"""
import base64
import json
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

KEY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "jwt", "bench-es256.key.pem")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    with open(KEY, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    claims = {"iss": "https://bench.palisade.test", "aud": "bench", "sub": "user-0", "exp": 4102444800,
              "iat": 1700000000, "scope": "orders:read", "jti": "bench-mfa-0",
              "acr": "mfa", "amr": ["pwd", "otp"], "auth_time": 1700000000}
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "bench-ec"}, separators=(",", ":")).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    print(f"{header}.{payload}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")


if __name__ == "__main__":
    main()
