#!/usr/bin/env bash
# A local PKI for TLS and mTLS with Palisade, made with the openssl command
# line (`make certs` writes it to dist/certs/; the end-to-end tests make
# their own copy in a temporary folder):
#
#   ca.pem / ca.key               the local CA (P-256), trusted by Envoy and the clients
#   server.pem / server.key       Envoy's certificate: localhost, mtls.localhost, 127.0.0.1
#   client.pem / client.key       a client: CN=alice-laptop,O=Palisade
#   checkout.pem / checkout.key   a workload: CN=checkout,O=Shop, URI SAN
#                                 spiffe://cluster.local/ns/shop/sa/checkout
#   reporting.pem / reporting.key another workload: spiffe://cluster.local/ns/analytics/sa/reporting
#   echo.pem / echo.key           the upstream's certificate: echo.internal (re-encryption)
#   gateway.pem / gateway.key     Envoy's client certificate toward the upstream:
#                                 spiffe://cluster.local/ns/edge/sa/gateway
#   rogue-ca.pem, rogue.pem / rogue.key   a client of another CA, which Envoy refuses
#
# Keys are unencrypted and the certificates last 30 days: for local use and
# tests, never production.
#
#   scripts/certs.sh [DIR]      (default dist/certs)
set -euo pipefail

dir=${1:-dist/certs}
days=30
mkdir -p "$dir"
cd "$dir"

key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

ca() { # name subject
  openssl req -x509 "${key[@]}" -keyout "$1.key" -out "$1.pem" -days "$days" -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
}

leaf() { # name subject extensions [ca]
  local name=$1 subject=$2 ext=$3 issuer=${4:-ca}
  openssl req "${key[@]}" -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -CAcreateserial \
    -days "$days" -out "$name.pem" -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

server_ext() { # SANs
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature' "$1"
}
client_ext() { # [SANs]
  if [ -n "${1:-}" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature' "$1"
  else
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature'
  fi
}

ca ca "/CN=Palisade local CA/O=Palisade"
leaf server "/CN=localhost" "$(server_ext 'DNS:localhost,DNS:mtls.localhost,IP:127.0.0.1')"
leaf client "/CN=alice-laptop/O=Palisade" "$(client_ext)"
leaf checkout "/CN=checkout/O=Shop" "$(client_ext 'URI:spiffe://cluster.local/ns/shop/sa/checkout')"
leaf reporting "/CN=reporting/O=Analytics" "$(client_ext 'URI:spiffe://cluster.local/ns/analytics/sa/reporting')"
leaf echo "/CN=echo.internal" "$(server_ext 'DNS:echo.internal')"
leaf gateway "/CN=gateway/O=Palisade" "$(client_ext 'URI:spiffe://cluster.local/ns/edge/sa/gateway')"
ca rogue-ca "/CN=Palisade local CA/O=Palisade"
leaf rogue "/CN=alice-laptop/O=Palisade" "$(client_ext)" rogue-ca
rm -f ./*.srl
echo "certificates in $(pwd)"
