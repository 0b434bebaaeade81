#!/usr/bin/env bash
# Builds the Dockerfile with podman (daemonless, from Debian), no registry
# needed: the base image the FROM lines name is made here with debootstrap
# when it is not in the local store, and everything (store, base root file
# system, config) is cached outside the repository.
#
#   scripts/image.sh build      build localhost/highlander:VERSION; prints name, id, size
#   scripts/image.sh base       only make (or reuse) the base image
#   scripts/image.sh env        print the podman environment (for eval)
#   scripts/image.sh podman ... run podman with that environment
#
# GIT_REV (default: git rev-parse --short HEAD) is compiled in; IMAGE names
# the image (default localhost/highlander:VERSION).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${HIGHLANDER_CACHE:-$HOME/.cache/highlander}/image
RUN_DIR=${HIGHLANDER_IMAGE_RUN:-/run/highlander-image}
VERSION=$(sed -n 's/^VERSION := //p' Makefile)
IMAGE=${IMAGE:-localhost/highlander:$VERSION}
BASE=docker.io/library/debian:bookworm

log() { printf '[image] %s\n' "$*" >&2; }

# podman's own files, all under the cache.  runc, not crun (crun refuses a
# cgroup v1 + v2 "unified" hybrid); cgroupfs (no systemd here); the default
# ulimits within the hard limits (podman asks for nofile 1048576).
setup() {
    mkdir -p "$CACHE" "$RUN_DIR"
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    nproc=$(ulimit -Hu)
    { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    cat >"$CACHE/containers.conf.new" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$RUN_DIR/libpod"
EOF
    mv "$CACHE/containers.conf.new" "$CACHE/containers.conf"
    cat >"$CACHE/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "$RUN_DIR/storage"
EOF
    cat >"$CACHE/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
    export CONTAINERS_CONF="$CACHE/containers.conf" CONTAINERS_STORAGE_CONF="$CACHE/storage.conf" \
        CONTAINERS_REGISTRIES_CONF="$CACHE/registries.conf"
}

# The mirror and suites apt already uses on this machine.
apt_sources() {
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cat /etc/apt/sources.list.d/debian.sources
    else
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n'
    fi
}

# docker.io/library/debian:bookworm from debootstrap (minbase), with the
# official image's apt and dpkg settings (docker-clean keeps the apt
# caches out of the layers).
base() {
    if podman image exists "$BASE"; then
        return 0
    fi
    tarball=$CACHE/debian-bookworm-minbase.tar
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || { echo "debootstrap missing: run make deps" >&2; exit 1; }
        mirror=$(apt_sources | sed -n 's/^URIs: *//p' | head -1)
        root=$CACHE/rootfs.tmp
        rm -rf "$root"
        log "debootstrap --variant=minbase bookworm from $mirror"
        debootstrap --variant=minbase bookworm "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
            { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
        rm -f "$root/etc/apt/sources.list"
        apt_sources | grep -v '^#' >"$root/etc/apt/sources.list.d/debian.sources"
        cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
        echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
        echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
        echo 'force-unsafe-io' >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
        rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
    fi
    log "importing $BASE"
    podman import --quiet --change 'CMD ["bash"]' "$tarball" "$BASE" >/dev/null
}

build() {
    base
    rev=${GIT_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
    log "building $IMAGE (revision $rev)"
    # The build stage is tagged too, so that pruning dangling images keeps
    # its cached layers (a warm build with nothing changed compiles nothing).
    podman build --pull=never --network host --layers --build-arg GIT_REV="$rev" --target build \
        -t localhost/highlander-build:cache . >"$CACHE/build.log" 2>&1 || { tail -40 "$CACHE/build.log" >&2; exit 1; }
    podman build --pull=never --network host --layers --build-arg GIT_REV="$rev" \
        --label org.opencontainers.image.revision="$rev" --label org.opencontainers.image.version="$VERSION" \
        -t "$IMAGE" . >>"$CACHE/build.log" 2>&1 || { tail -40 "$CACHE/build.log" >&2; exit 1; }
    # Dangling images (earlier builds' stages and untagged results) go;
    # cached layers of the current build stay for the next build.
    podman image prune -f >/dev/null 2>&1 || true
    podman image inspect --format '{{.Id}} {{.Size}}' "$IMAGE" | {
        read -r id size
        printf 'image %s\nid    %s\nsize  %s bytes (%s MB)\n' "$IMAGE" "$(echo "$id" | cut -c1-12)" "$size" \
            "$(awk -v s="$size" 'BEGIN {printf "%.1f", s / 1e6}')"
    }
}

setup
case ${1:-build} in
    build) build ;;
    base) base ;;
    env) printf 'export CONTAINERS_CONF=%s CONTAINERS_STORAGE_CONF=%s CONTAINERS_REGISTRIES_CONF=%s\n' \
        "$CONTAINERS_CONF" "$CONTAINERS_STORAGE_CONF" "$CONTAINERS_REGISTRIES_CONF" ;;
    podman) shift; exec podman "$@" ;;
    *) echo "usage: $0 [build|base|env|podman ARGS]" >&2; exit 2 ;;
esac
