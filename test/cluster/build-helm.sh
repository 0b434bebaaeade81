#!/usr/bin/env bash
# Builds helm from its Go module (pinned) with the machine's Go toolchain
# and caches it outside the repository; prints the binary's path.
set -euo pipefail
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE=${HIGHLANDER_CACHE:-$HOME/.cache/highlander}
BIN=$CACHE/helm-$HELM_VERSION/bin
if ! [ -x "$BIN/helm" ]; then
    mkdir -p "$BIN"
    echo "[helm] building helm $HELM_VERSION" >&2
    GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=0 GOBIN=$BIN \
        go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi
echo "$BIN/helm"
