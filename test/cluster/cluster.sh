#!/usr/bin/env bash
# A local Kubernetes control plane for tests and the demo: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake
# nodes, so pods become Running), run by kwokctl with the binary runtime
# on loopback.  Binaries come from test/cluster/build.sh (cached by version).
#
#   test/cluster/cluster.sh up     start (or reuse) it; last line KUBECONFIG=<path>
#   test/cluster/cluster.sh down   stop and delete it
#   test/cluster/cluster.sh env    print KUBECONFIG=<path> if it is running
set -euo pipefail
cd "$(dirname "$0")/../.."

# One cluster per checkout, so that two clones on one machine (a developer's
# tree and a CI clone, say) never share or delete each other's cluster.
NAME=${HIGHLANDER_KWOK_CLUSTER:-hl-$(pwd -P | md5sum | cut -c1-8)}
CACHE=${HIGHLANDER_CACHE:-$HOME/.cache/highlander}
export KWOK_WORKDIR=${KWOK_WORKDIR:-$CACHE/kwok}
NODES=${HIGHLANDER_CLUSTER_NODES:-2}
KUBECONFIG_PATH=$KWOK_WORKDIR/clusters/$NAME/kubeconfig.yaml

log() { printf '[cluster] %s\n' "$*" >&2; }

ensure_packages() {
    # kwokctl's binary runtime needs nothing beyond what Debian ships here;
    # openssl makes its certificates.
    if ! command -v openssl >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >/dev/null
    fi
}

kwok_module_dir() {
    (cd /tmp && go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION:-v0.8.0}") |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

running() {
    [ -f "$KUBECONFIG_PATH" ] || return 1
    "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz >/dev/null 2>&1
}

up() {
    ensure_packages
    log "building or reusing the control-plane binaries"
    BIN=$(bash test/cluster/build.sh)
    export PATH=$BIN:$PATH
    if running; then
        log "cluster $NAME already running"
        echo "KUBECONFIG=$KUBECONFIG_PATH"
        return 0
    fi
    # A stale cluster (from a killed run) is removed first.
    "$BIN/kwokctl" delete cluster --name "$NAME" >/dev/null 2>&1 || true
    mkdir -p "$KWOK_WORKDIR"
    cfg=$KWOK_WORKDIR/$NAME-kwokctl.yaml
    cat >"$cfg" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
  runtime: binary
YAML
    log "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok"
    start=$(date +%s)
    "$BIN/kwokctl" create cluster --name "$NAME" --runtime binary --kubeconfig= -c "$cfg" \
        --kube-apiserver-binary "$BIN/kube-apiserver" \
        --kube-controller-manager-binary "$BIN/kube-controller-manager" \
        --kube-scheduler-binary "$BIN/kube-scheduler" \
        --kwok-controller-binary "$BIN/kwok" \
        --etcd-binary "$BIN/etcd" \
        --enable-crds Stage \
        --wait 120s >&2
    # The Stage CRD is enabled so tests can add stages (a failing pod, say);
    # kwok then runs only the stages it finds, so its defaults (node
    # initialise and heartbeat, pod ready, complete and delete) come first,
    # from the kwok module the build fetched, plus the chaos stage that
    # fails a running pod labelled pod-container-running-failed.stage.kwok.x-k8s.io=true.
    stages=$(kwok_module_dir)/kustomize/stage
    "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" apply -k "$stages/fast" >&2
    "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" apply -f "$stages/pod/chaos/pod-container-running-failed.yaml" >&2
    "$BIN/kwokctl" scale node --replicas "$NODES" --name "$NAME" >&2
    for _ in $(seq 1 120); do
        n=$("$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" get nodes --no-headers 2>/dev/null | grep -c ' Ready' || true)
        [ "$n" -ge "$NODES" ] && break
        sleep 0.5
    done
    # Pods need the default service account, which the controller manager makes.
    for _ in $(seq 1 120); do
        "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" get serviceaccount default >/dev/null 2>&1 && break
        sleep 0.5
    done
    log "cluster $NAME up in $(( $(date +%s) - start )) s with $NODES fake nodes"
    echo "KUBECONFIG=$KUBECONFIG_PATH"
}

down() {
    BIN=$CACHE/k8s-${K8S_VERSION:-v1.36.3}/bin
    if [ -x "$BIN/kwokctl" ]; then
        "$BIN/kwokctl" delete cluster --name "$NAME" >&2 || true
    fi
    log "cluster $NAME stopped"
}

case "${1:-}" in
up) up ;;
down) down ;;
env) BIN=$(bash test/cluster/build.sh); running && echo "KUBECONFIG=$KUBECONFIG_PATH" ;;
*) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
