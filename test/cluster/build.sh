#!/usr/bin/env bash
# Builds the local Kubernetes control plane from Go modules and caches the
# binaries outside the repository, by version.  A warm cache returns at once.
#
#   test/cluster/build.sh          build (or reuse) and print the bin folder
#
# Facts behind it: ../shared/CONTROL-PLANE.md.  Everything goes through the
# Go module proxy with the machine's Go toolchain; nothing is downloaded
# from anywhere else.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE=${HIGHLANDER_CACHE:-$HOME/.cache/highlander}
BIN=$CACHE/k8s-$K8S_VERSION/bin
export GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=0

log() { printf '[cluster-build] %s\n' "$*" >&2; }

need_build() {
    for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl; do
        [ -x "$BIN/$b" ] || return 0
    done
    return 1
}

if ! need_build; then
    echo "$BIN"
    exit 0
fi

command -v go >/dev/null || { log "go toolchain not found"; exit 1; }
mkdir -p "$BIN"
work=$CACHE/src
mkdir -p "$work"
start=$(date +%s)

# --- Kubernetes: a wrapper module with one replace line per staging module.
if ! [ -x "$BIN/kube-apiserver" ] || ! [ -x "$BIN/kubectl" ] ||
   ! [ -x "$BIN/kube-controller-manager" ] || ! [ -x "$BIN/kube-scheduler" ]; then
    kw=$work/k8s-$K8S_VERSION
    mkdir -p "$kw"
    cd "$kw"
    minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    staging_ver="v0.$minor.${K8S_VERSION##*.}"
    log "resolving k8s.io/kubernetes@$K8S_VERSION"
    modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$modfile")
    {
        echo "module highlander.local/k8sbuild"
        echo
        echo "go $gover"
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"$staging_ver"'#p' "$modfile"
    } > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    log "go mod tidy (module downloads, ~1-2 GB on a cold cache)"
    go mod tidy >&2
    ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
    ld="$ld -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
    log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (cold: 15-30 min)"
    go build -trimpath -ldflags "$ld" -o "$BIN/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubectl >&2
fi

# --- etcd: a wrapper main around etcdmain.Main.
if ! [ -x "$BIN/etcd" ]; then
    ew=$work/etcd-$ETCD_VERSION
    mkdir -p "$ew"
    cd "$ew"
    cat > go.mod <<GOMOD
module highlander.local/etcdbuild

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
    cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    log "building etcd $ETCD_VERSION"
    if go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" . >&2; then
        :
    else
        log "etcd build failed; falling back to Debian's etcd-server"
        command -v etcd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2
        ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$BIN/etcd"
    fi
fi

# --- kwok and kwokctl, pinned.
if ! [ -x "$BIN/kwok" ] || ! [ -x "$BIN/kwokctl" ]; then
    log "building kwok/kwokctl $KWOK_VERSION"
    GOBIN=$BIN go install -trimpath -ldflags "-s -w" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION" >&2
fi

log "built in $(( $(date +%s) - start )) s into $BIN"
echo "$BIN"
