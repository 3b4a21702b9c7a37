#!/usr/bin/env bash
# Prints a demo access token for the `demo` provider of envoy/jwt.yaml (and
# envoy/demo.yaml): RS256 with filters/jwt/demo/demo-key.pem, a key that is
# public in this repository and good for demos only.
#
#   TOKEN=$(bash filters/jwt/demo/mint-token.sh)            # scope "orders:read", 1 h
#   SCOPE="orders:read orders:write" TTL=600 SUB=bob bash filters/jwt/demo/mint-token.sh
#   curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:10000/orders
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$here/demo-key.pem"
now=$(date +%s)
ttl="${TTL:-3600}"
sub="${SUB:-alice}"
scope="${SCOPE:-orders:read}"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
header='{"alg":"RS256","typ":"JWT","kid":"demo-1"}'
payload=$(printf '{"iss":"https://demo.palisade.local","aud":"demo-api","sub":"%s","scope":"%s","client_id":"demo-cli","iat":%d,"exp":%d,"jti":"demo-%d-%d"}' \
  "$sub" "$scope" "$now" "$((now + ttl))" "$now" "$$")
input="$(printf '%s' "$header" | b64url).$(printf '%s' "$payload" | b64url)"
signature=$(printf '%s' "$input" | openssl dgst -sha256 -sign "$key" -binary | b64url)
printf '%s.%s\n' "$input" "$signature"
