#!/usr/bin/env bash
# Builds the Go K8 Highlander (the compatibility peer) from ../shared/peer
# and caches the binary outside the repository, by the tarball's checksum.
# A warm cache returns at once.  Prints the binary's path; exits 3 with a
# message when ../shared/peer is absent (the compatibility tests then skip).
#
#   test/compat/build-peer.sh
#
# Dependencies come from the Go module proxy with the machine's toolchain
# (../shared/peer/README.md); nothing of the peer is copied into the
# project.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PEER_DIR=${HIGHLANDER_PEER_DIR:-$ROOT/../shared/peer}
CACHE=${HIGHLANDER_CACHE:-$HOME/.cache/highlander}
export GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=0

log() { printf '[peer-build] %s\n' "$*" >&2; }

tarball=$(ls "$PEER_DIR"/k8-highlander-*.tar.gz 2>/dev/null | head -1 || true)
if [ -z "$tarball" ]; then
    log "no Go peer source in $PEER_DIR (k8-highlander-*.tar.gz)"
    exit 3
fi
sum=$(sha256sum "$tarball" | cut -c1-12)
out=$CACHE/peer-$sum
bin=$out/k8-highlander
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
command -v go >/dev/null || { log "go toolchain not found"; exit 1; }
mkdir -p "$out"
work=$(mktemp -d "$CACHE/peer-src.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
start=$(date +%s)
log "building $(basename "$tarball") (cold: minutes; cached in $out)"
(cd "$work/k8-highlander" && go build -trimpath -o "$bin.tmp" ./cmd/main.go)
mv "$bin.tmp" "$bin"
# The peer's own sample configs, for the config-acceptance test.
rm -rf "$out/src"
mkdir -p "$out/src"
cp -r "$work/k8-highlander/config" "$work/k8-highlander/docs" "$work/k8-highlander/README.md" "$out/src/"
log "built in $(( $(date +%s) - start )) s"
echo "$bin"
