#!/usr/bin/env bash
# The CRDs the GitOps examples of docs/deployment.md need, from the Go
# modules of Flux and Argo CD (pinned), gathered into a cache folder outside
# the repository; prints the folder's path.
#   Flux kustomize-controller and source-controller: their root modules ship
#     config/crd/bases.
#   Flux helm-controller: only its api module is served by the module proxy,
#     so its HelmRelease CRD is generated from the module's Go types with
#     controller-gen (sigs.k8s.io/controller-tools), as helm-controller's own
#     build does.
#   Argo CD: manifests/crds of its v3 module.
set -euo pipefail
KUSTOMIZE_CONTROLLER=v1.9.6
SOURCE_CONTROLLER=v1.9.6
HELM_CONTROLLER_API=v1.6.5
ARGO_CD=v3.5.8
CONTROLLER_TOOLS=v0.19.0
CACHE=${HIGHLANDER_CACHE:-$HOME/.cache/highlander}
OUT=$CACHE/gitops-crds-kc$KUSTOMIZE_CONTROLLER-sc$SOURCE_CONTROLLER-hc$HELM_CONTROLLER_API-argo$ARGO_CD
export GOTOOLCHAIN=local GOFLAGS=-modcacherw

moddir() {
    (cd /tmp && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

if ! [ -f "$OUT/.done" ]; then
    echo "[gitops-crds] gathering Flux and Argo CD CRDs into $OUT" >&2
    rm -rf "$OUT.tmp"
    mkdir -p "$OUT.tmp"
    kc=$(moddir github.com/fluxcd/kustomize-controller@$KUSTOMIZE_CONTROLLER)
    sc=$(moddir github.com/fluxcd/source-controller@$SOURCE_CONTROLLER)
    hc=$(moddir github.com/fluxcd/helm-controller/api@$HELM_CONTROLLER_API)
    argo=$(moddir github.com/argoproj/argo-cd/v3@$ARGO_CD)
    cp "$kc/config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml" "$OUT.tmp/"
    for k in gitrepositories helmrepositories ocirepositories; do
        cp "$sc/config/crd/bases/source.toolkit.fluxcd.io_$k.yaml" "$OUT.tmp/"
    done
    cp "$argo/manifests/crds/application-crd.yaml" "$argo/manifests/crds/appproject-crd.yaml" "$OUT.tmp/"
    gen=$CACHE/controller-gen-$CONTROLLER_TOOLS/bin
    if ! [ -x "$gen/controller-gen" ]; then
        echo "[gitops-crds] building controller-gen $CONTROLLER_TOOLS" >&2
        mkdir -p "$gen"
        (cd /tmp && GOBIN=$gen CGO_ENABLED=0 go install -trimpath \
            "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS") >&2
    fi
    (cd "$hc" && "$gen/controller-gen" crd paths=./v2/... output:crd:dir="$OUT.tmp") >&2
    test -s "$OUT.tmp/helm.toolkit.fluxcd.io_helmreleases.yaml"
    chmod -R u+w "$OUT.tmp"
    touch "$OUT.tmp/.done"
    rm -rf "$OUT"
    mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
