#!/usr/bin/env bash
# Starts the demo: the echo upstream on 127.0.0.1:18080, the global rate-limit
# backend (Redis on 127.0.0.1:16379, palisade-rls on 127.0.0.1:18081 with
# envoy/rls-limits.json) and Envoy with the given config on 127.0.0.1:10000
# (admin 127.0.0.1:9901). Ctrl-C stops them all.
set -euo pipefail
config=${1:?usage: demo.sh ENVOY_CONFIG}
envoy=${ENVOY_BIN:?ENVOY_BIN is not set}
cd "$(dirname "$0")/.."

for port in 10000 9901 18080 18081 16379; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port is already in use: stop whatever listens there (an earlier demo?) and retry" >&2
    exit 1
  fi
done

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

target/release/echo-upstream 127.0.0.1:18080 &
pids+=($!)
redis-server --bind 127.0.0.1 --port 16379 --save '' --appendonly no >.run/redis.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/16379) 2>/dev/null && break; sleep 0.05; done
target/debug/palisade-rls --listen 127.0.0.1:18081 --redis redis://127.0.0.1:16379 \
  --limits envoy/rls-limits.json >.run/rls.log 2>&1 &
pids+=($!)
: > dist/audit.log
"$envoy" -c "$config" --concurrency 2 --disable-hot-restart -l warning --log-path .run/envoy.log &
pids+=($!)

for _ in $(seq 1 200); do
  if [ "$(curl -s http://127.0.0.1:9901/ready 2>/dev/null)" = "LIVE" ]; then break; fi
  kill -0 "${pids[3]}" 2>/dev/null || { echo "Envoy exited; see .run/envoy.log" >&2; tail -20 .run/envoy.log >&2; exit 1; }
  sleep 0.1
done

cat <<'MSG'

Palisade demo is up: Envoy on http://127.0.0.1:10000 (admin http://127.0.0.1:9901).
Try (the rate limit allows 5 requests per 10 s per client, and 100 per minute
per user across every proxy through palisade-rls and Redis):
  curl -i 'http://127.0.0.1:10000/public/hello?page=2'                    # no token needed
  curl -i  http://127.0.0.1:10000/orders                                  # 401: Bearer challenge
  curl -i  http://127.0.0.1:10000/orders -H "Authorization: Bearer $(make -s token)"
  curl -i  http://127.0.0.1:10000/admin  -H "Authorization: Bearer $(ACR=pwd make -s token)"   # 401 step-up
  curl -i  http://127.0.0.1:10000/admin  -H "Authorization: Bearer $(make -s token)"           # 200
  curl -i "http://127.0.0.1:10000/public/search?q=1'%20OR%201=1--"        # 403: the WAF
  curl -s 'http://127.0.0.1:10000/public/login?user=bob&password=hunter2' >/dev/null
  tail -n 3 dist/audit.log                                                # audit records, redacted
  curl -s http://127.0.0.1:9901/stats/prometheus | grep '^palisade'
Other audit schemas: AUDIT_SCHEMA=ecs make run, AUDIT_SCHEMA=ocsf make run.
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
