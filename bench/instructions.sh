#!/usr/bin/env bash
# Instructions Envoy executes per request, counted by callgrind: unlike
# requests/s, the count does not move when other work shares the machine, so
# it is the measure to compare two versions of a filter with.
#
#   bench/instructions.sh <config template> [requests] [path]
#
# The config is one of bench/envoy/*.yaml (same placeholders as `make bench`;
# {{SUITE:<stage>}} stands for bench/suite/<stage>.json).
# Configs that ask the global rate-limit service ({{RLS_PORT}}) need it running
# on RLS_PORT (default 18081; filters/ratelimit/README.md, "Performance", shows how).
# Extra request headers: BENCH_HEADERS="name: value" (several separated by
# newlines); BENCH_METHOD (default GET) and BENCH_BODY_FILE (a file sent as
# the request body) for requests with a body. BENCH_TLS=1 sends over TLS
# (dist/certs/ca.pem, `make certs`), BENCH_TLS=<name> also presents the
# client certificate dist/certs/<name>.pem. BENCH_DPOP_TOKEN_FILE=<file>
# sends that token as `Authorization: DPoP` with a new DPoP proof on every
# request (made beforehand by target/release/dpop-proofs, built here).
# Envoy runs with --concurrency 1 under valgrind with
# instrumentation off until V8 has warmed up (500 requests), then the given
# number of requests (default 2000) is counted, one keep-alive connection at a
# time. Needs valgrind and `make build envoy`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
template=${1:?usage: bench/instructions.sh <config template> [requests] [path]}
requests=${2:-2000}
path=${3:-/api/items}
dist=${PALISADE_DIST:-$repo/dist}
envoy=${ENVOY_BIN:-$repo/.tools/bin/envoy}
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/palisade-instr.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#{{LISTEN_PORT}}#$port#g" -e "s#{{ADMIN_PORT}}#$admin#g" -e "s#{{DIST}}#$dist#g" \
    -e "s#{{REPO}}#$repo#g" -e "s#{{TMP}}#$dir#g" -e "s#{{UPSTREAM_PORT}}#${UPSTREAM_PORT:-18080}#g" \
    -e "s#{{RLS_PORT}}#${RLS_PORT:-18081}#g" \
    "$template" > "$dir/envoy.yaml"
# {{SUITE:<stage>}}: the stage configuration in bench/suite/<stage>.json (one line).
for f in "$repo"/bench/suite/*.json; do
    python3 -c 'import sys; p, k, f = sys.argv[1:]; t = open(p).read().replace(k, open(f).read().strip()); open(p, "w").write(t)' \
        "$dir/envoy.yaml" "{{SUITE:$(basename "$f" .json)}}" "$f"
done

valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file \
    --callgrind-out-file="$dir/callgrind.out" \
    "$envoy" -c "$dir/envoy.yaml" --concurrency 1 -l error --disable-hot-restart \
    >"$dir/envoy.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT

scheme=http
[ -n "${BENCH_TLS:-}" ] && scheme=https
proofs=$dir/proofs.txt
: > "$dir/proof.offset"

load() {
    python3 - "$port" "$path" "$1" "$repo" "$proofs" "$dir/proof.offset" <<'EOF'
import http.client, os, ssl, sys
port, path, n, repo, proofs_file, offset_file = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
headers = {"user-agent": "wrk"}
for line in os.environ.get("BENCH_HEADERS", "").splitlines():
    if ":" in line:
        name, value = line.split(":", 1)
        headers[name.strip()] = value.strip()
method = os.environ.get("BENCH_METHOD", "GET")
body = None
if os.environ.get("BENCH_BODY_FILE"):
    with open(os.environ["BENCH_BODY_FILE"], "rb") as f:
        body = f.read()
proofs = []
if os.environ.get("BENCH_DPOP_TOKEN_FILE"):
    with open(os.environ["BENCH_DPOP_TOKEN_FILE"]) as f:
        headers["authorization"] = "DPoP " + f.read().strip()
    with open(proofs_file) as f:
        proofs = f.read().split()
    with open(offset_file) as f:
        offset = int(f.read() or 0)
tls = os.environ.get("BENCH_TLS", "")
if tls:
    context = ssl.create_default_context(cafile=f"{repo}/dist/certs/ca.pem")
    if tls != "1":
        context.load_cert_chain(f"{repo}/dist/certs/{tls}.pem", f"{repo}/dist/certs/{tls}.key")
    conn = http.client.HTTPSConnection("localhost", port, timeout=60, context=context)
else:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
statuses = {}
for i in range(n):
    if proofs:
        headers["dpop"] = proofs[offset + i]
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    statuses[response.status] = statuses.get(response.status, 0) + 1
if proofs:
    with open(offset_file, "w") as f:
        f.write(str(offset + n))
print(" ".join(f"{s}x{c}" for s, c in sorted(statuses.items())))
EOF
}

for _ in $(seq 1 300); do
    curl -sk -o /dev/null "$scheme://127.0.0.1:$port/" && break
    sleep 1
done
if [ -n "${BENCH_DPOP_TOKEN_FILE:-}" ]; then
    cargo build --release -q -p palisade-e2e --bin dpop-proofs --manifest-path "$repo/Cargo.toml"
    # Warm-up (500) and measured requests, each with its own proof (a new
    # jti), made once Envoy is up: their iat must be recent when they arrive.
    "$repo/target/release/dpop-proofs" "$((requests + 500))" "${BENCH_METHOD:-GET}" \
        "$scheme://127.0.0.1:$port${path%%\?*}" "$BENCH_DPOP_TOKEN_FILE" > "$proofs"
fi
load 300 >/dev/null
callgrind_control -i on "$pid" >/dev/null 2>&1
load 200 >/dev/null
callgrind_control -z "$pid" >/dev/null 2>&1
statuses=$(load "$requests")
callgrind_control -d "$pid" >/dev/null 2>&1
total=$(grep -h '^summary:' "$dir"/callgrind.out.* | awk '{print $2}' | sort -n | tail -1)
echo "$(basename "$template"): $((total / requests)) instructions/request over $requests requests (statuses $statuses; profile in $dir)"
