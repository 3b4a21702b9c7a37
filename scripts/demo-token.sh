#!/usr/bin/env bash
# Prints a demo access token for the `demo` provider of envoy/mfa.yaml (and
# envoy/jwt.yaml, envoy/demo.yaml), with or without the MFA claims that
# palisade-mfa looks at. RS256 with filters/jwt/demo/demo-key.pem, a key that
# is public in this repository and good for demos only.
#
#   make token                  # acr "mfa", amr ["pwd","otp"], auth_time now
#   ACR=pwd AMR=pwd make token   # a password-only login
#   AGE=3600 make token          # authenticated an hour ago
#   MFA=none make token          # no acr, amr or auth_time at all
#   SUB=bob SCOPE="orders:read" TTL=600 ...               # subject, scopes, lifetime
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$here/../filters/jwt/demo/demo-key.pem"
now=$(date +%s)
ttl="${TTL:-3600}"
sub="${SUB:-alice}"
scope="${SCOPE:-orders:read}"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
mfa=""
if [ "${MFA:-}" != "none" ]; then
  acr="${ACR:-mfa}"
  amr_json=$(printf '%s' "${AMR:-pwd,otp}" | awk -F, '{for (i = 1; i <= NF; i++) printf "%s\"%s\"", (i > 1 ? "," : ""), $i}')
  mfa=$(printf ',"acr":"%s","amr":[%s],"auth_time":%d' "$acr" "$amr_json" "$((now - ${AGE:-0}))")
fi
header='{"alg":"RS256","typ":"JWT","kid":"demo-1"}'
payload=$(printf '{"iss":"https://demo.palisade.local","aud":"demo-api","sub":"%s","scope":"%s","client_id":"demo-cli","iat":%d,"exp":%d,"jti":"demo-%d-%d"%s}' \
  "$sub" "$scope" "$now" "$((now + ttl))" "$now" "$$" "$mfa")
input="$(printf '%s' "$header" | b64url).$(printf '%s' "$payload" | b64url)"
signature=$(printf '%s' "$input" | openssl dgst -sha256 -sign "$key" -binary | b64url)
printf '%s.%s\n' "$input" "$signature"
