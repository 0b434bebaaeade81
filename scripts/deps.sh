#!/bin/sh
# Installs what building and testing highlander needs, from Debian's
# packages (and pytest from PyPI when the machine lacks it).  Idempotent and
# quiet when everything is there.  The Kubernetes control plane is built by
# test/cluster/build.sh, which `make cluster-up` and the tests call.
set -eu

PKGS="build-essential pkg-config libuv1-dev libhiredis-dev libcurl4-openssl-dev libcyaml-dev
libyaml-dev libjansson-dev libpq-dev libcmocka-dev node-llhttp redis-server redis-sentinel
redis-tools postgresql postgresql-client prometheus wrk valgrind clang libclang-rt-14-dev
faketime curl procps iproute2 chromium podman runc debootstrap"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Node.js and npm run the browser tests; a machine may have them from
# elsewhere (Debian's npm would conflict with that), so only when absent.
if ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi

if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

# The Debian packages start their daemons on install; the tests start
# their own servers on free ports, so stop the system ones if they run.
for svc in redis-server redis-sentinel postgresql prometheus; do
    if command -v service >/dev/null 2>&1; then
        service "$svc" stop >/dev/null 2>&1 || true
    fi
done

if ! python3 -m pytest --version >/dev/null 2>&1; then
    echo "deps: installing pytest"
    python3 -m pip install -q pytest
fi

# playwright-core (the browser tests' driver; it uses Debian's chromium,
# never a downloaded browser), pinned by test/browser/package-lock.json.
if [ ! -d test/browser/node_modules/playwright-core ]; then
    echo "deps: installing playwright-core (npm)"
    (cd test/browser && npm ci --no-audit --no-fund --silent)
fi

# llhttp sources into third_party/ (see third_party/README).
make -s third_party/llhttp/llhttp.h
