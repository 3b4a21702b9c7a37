#!/usr/bin/env bash
# A throwaway OCI registry for trying `make oci` locally: the CNCF
# distribution registry (Debian package docker-registry) on
# 127.0.0.1:${1:-5000}, storing into .run/registry/. Ctrl-C stops it.
#
#   scripts/oci-registry.sh &                         # or in another terminal
#   make oci OCI_REGISTRY=127.0.0.1:5000/palisade
set -euo pipefail
port=${1:-5000}
cd "$(dirname "$0")/.."
command -v docker-registry >/dev/null || {
  echo "docker-registry is not installed: apt-get install -y docker-registry" >&2
  exit 1
}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "port $port is already in use (a registry already running?)" >&2
  exit 1
fi
dir=.run/registry
mkdir -p "$dir/storage"
cat > "$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $PWD/$dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CONFIG
echo "registry on http://127.0.0.1:$port (storage $dir/storage); Ctrl-C stops it" >&2
exec docker-registry serve "$dir/config.yml"
