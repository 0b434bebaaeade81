#!/usr/bin/env python3
"""Our HTTP routes against the Go K8 Highlander's, side by side.

Both controllers lead their own tenant on one Redis and the local control
plane (test/cluster/cluster.sh up), each pinned to CPU 0 from its start
(so the Go runtime sees one CPU), wrk on CPU 1: 1 thread, 100 connections,
SECONDS per route.  Prints requests/s per route and ours / Go.

    python3 bench/http/compare.py [BINARY] [SECONDS]

The Go binary is built from ../shared/peer by test/compat/build-peer.sh
(cached); without it only our figures are printed.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../test/system"))
sys.path.insert(0, os.path.join(HERE, "../reconcile"))
os.environ.setdefault("HIGHLANDER_BIN", os.path.join(HERE, "../../build/highlander"))
import conftest  # noqa: E402
from burst import cluster  # noqa: E402
from lease_helpers import LEASE_ENV, RedisStore  # noqa: E402

ROUTES = ["/healthz", "/status", "/api/status", "/metrics"]


def wrk(port, path, seconds):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c100", "-d%ds" % seconds, "--latency",
                          "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True).stdout
    rps = float(re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert bad is None, "%s answered errors: %s" % (path, out)
    return rps


def wait_leading(port, what, log):
    import test_compat_go as compat
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if compat.http_json(port, "/status")["data"]["isLeader"]:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError("%s did not lead:\n%s" % (what, open(log).read()[-2000:]))


def start(argv, env, tmp, name):
    log = os.path.join(tmp, name + ".log")
    p = subprocess.Popen(["taskset", "-c", "0"] + argv, env=env, cwd=tmp, stdout=open(log, "wb"),
                         stderr=subprocess.STDOUT, start_new_session=True)
    return p, log


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.environ["HIGHLANDER_BIN"])
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    kube = cluster()
    store = RedisStore()
    tmp = tempfile.mkdtemp(prefix="hl-httpcmp-")
    procs = []
    subjects = []
    try:
        port = conftest.free_port()
        env = dict(os.environ, **LEASE_ENV, **store.env())
        env.update(HIGHLANDER_KUBECONFIG=kube.kubeconfig, HIGHLANDER_ID="bench-c", HIGHLANDER_TENANT="httpcmp-c",
                   HIGHLANDER_PORT=str(port), HIGHLANDER_BIND_ADDRESS="127.0.0.1", HIGHLANDER_LOG_LEVEL="warn",
                   HOME=tmp)
        p, log = start([binary], env, tmp, "ours")
        procs.append(p)
        wait_leading(port, "ours", log)
        subjects.append(("ours", port))
        b = subprocess.run(["bash", os.path.join(conftest.ROOT, "test/compat/build-peer.sh")], capture_output=True)
        if b.returncode == 0:
            import test_compat_go as compat
            go_bin = b.stdout.decode().strip().splitlines()[-1]
            gport = conftest.free_port()
            genv = {"PATH": os.environ["PATH"], "HOME": tmp, "HIGHLANDER_PORT": str(gport),
                    "HIGHLANDER_KUBECONFIG": os.path.join(tmp, "kubeconfig"), "HIGHLANDER_ID": "bench-go",
                    "HIGHLANDER_TENANT": "httpcmp-go"}
            compat.kubeconfig_named(kube, "default", genv["HIGHLANDER_KUBECONFIG"])
            genv.update(store.env())
            gp, glog = start([go_bin], genv, tmp, "go")
            procs.append(gp)
            wait_leading(gport, "Go", glog)
            time.sleep(3)  # it rewrites the CRDs, then starts its watches
            subjects.append(("Go", gport))
        else:
            print("Go peer not built (%s): our figures only" % b.stderr.decode().strip()[-200:])
        figures = {}
        for name, prt in subjects:
            for path in ROUTES:
                wrk(prt, path, 1)  # warm up
                figures[(name, path)] = wrk(prt, path, seconds)
        print("%-12s %14s %14s %8s" % ("route", "ours req/s", "Go req/s", "ours/Go"))
        for path in ROUTES:
            ours = figures[("ours", path)]
            go = figures.get(("Go", path))
            print("%-12s %14.0f %14s %8s" % (path, ours, "%.0f" % go if go else "-", "%.2f" % (ours / go) if go else "-"))
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        store.stop()
        if len(subjects) > 1:
            from burst import our_crds
            our_crds(kube)


if __name__ == "__main__":
    main()
