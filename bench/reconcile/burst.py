#!/usr/bin/env python3
"""Bulk work: N WorkloadProcess resources (200) applied at once with
kubectl, against the local control plane and a real Redis, one leader.

For each controller, RUNS times (3): the time kubectl apply takes, and the
time from its start until all N pods exist in the API server (listed every
50 ms); the median of each, and the ratio of the second to the first.
Controllers: ours (BINARY, default build/highlander), and with --go also
the Go K8 Highlander built from ../shared/peer by test/compat/build-peer.sh,
both at the Go controller's client rate limit (200 QPS, its hard-coded
value) unless BENCH_KUBE_QPS says otherwise for ours.
  bench/reconcile/burst.py [--go] [--runs N] [--n N] [BINARY ...]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../test/system"))
os.environ.setdefault("HIGHLANDER_BIN", os.path.join(HERE, "../../build/highlander"))
import conftest  # noqa: E402
from lease_helpers import LEASE_ENV, RedisStore  # noqa: E402


def cluster():
    p = subprocess.run(["bash", os.path.join(conftest.ROOT, "test/cluster/cluster.sh"), "up"], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    return conftest.Kube(p.stdout.decode().strip().splitlines()[-1].split("=", 1)[1])


def our_crds(kube):
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                 os.path.join(conftest.ROOT, "manifests/crds.yaml"))
    kube.kubectl("wait", "--for=condition=Established", "crd/workloadprocesses.highlander.plexobject.io",
                 "--timeout=30s")


def pods(kube, ns):
    out = kube.kubectl("get", "pods", "-n", ns, "-o", "name", check=False)
    return sum(1 for l in out.splitlines() if l.strip())


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_ours(binary, kube, store, ns):
    qps = os.environ.get("BENCH_KUBE_QPS", "200")
    env = dict(LEASE_ENV, **store.env())
    env.update(HIGHLANDER_KUBECONFIG=kube.kubeconfig, HIGHLANDER_ID="bench", HIGHLANDER_LOG_LEVEL="warn",
               HIGHLANDER_KUBE_QPS=qps, HIGHLANDER_KUBE_BURST=qps, HIGHLANDER_NAMESPACE=ns,
               HIGHLANDER_CRD_NAMESPACES=ns)
    os.environ["HIGHLANDER_BIN"] = binary
    conftest.BIN = binary
    c = conftest.Controller(env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if c.get_json("/status")[1]["data"]["isLeader"]:
                return c.proc.pid, lambda: c.terminate(timeout=30)
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("ours did not lead: " + c.log()[-2000:])


def start_go(go_bin, kube, store, ns, tmp):
    import test_compat_go as compat
    port = conftest.free_port()
    env = {"PATH": os.environ["PATH"], "HOME": tmp, "HIGHLANDER_PORT": str(port),
           "HIGHLANDER_KUBECONFIG": os.path.join(tmp, "kubeconfig"), "HIGHLANDER_ID": "go-bench",
           "HIGHLANDER_TENANT": "bench-go", "HIGHLANDER_NAMESPACE": ns}
    compat.kubeconfig_named(kube, "default", env["HIGHLANDER_KUBECONFIG"])
    env.update(store.env())
    log = open(os.path.join(tmp, "go.log"), "wb")
    p = subprocess.Popen([go_bin], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if compat.http_json(port, "/status")["data"]["isLeader"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    else:
        raise AssertionError("Go did not lead")
    time.sleep(3)  # it rewrites the CRDs, then starts its watches

    def stop():
        # On SIGTERM it stops its workloads first; with N pods that can
        # outlast the run: after 60 s it is killed.
        p.terminate()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        our_crds(kube)
    return p.pid, stop


def one_run(kube, n, start):
    ns = kube.namespace("bench-burst")
    store = RedisStore()
    tmp = tempfile.mkdtemp(prefix="hl-burst-")
    pid, stop = start(store, ns, tmp)
    try:
        cpu0 = cpu_seconds(pid)
        items = [{"apiVersion": "highlander.plexobject.io/v1", "kind": "WorkloadProcess",
                  "metadata": {"name": "b%03d" % i, "namespace": ns},
                  "spec": {"image": "busybox:1", "script": {"commands": ["sleep 3600"]}}} for i in range(n)]
        path = os.path.join(tmp, "burst.json")
        with open(path, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
        t0 = time.time()
        kube.kubectl("apply", "-f", path, timeout=600)
        t_apply = time.time() - t0
        while pods(kube, ns) < n and time.time() - t0 < 300:
            time.sleep(0.05)
        t_pods = time.time() - t0
        got = pods(kube, ns)
        assert got >= n, "only %d of %d pods after %.0f s" % (got, n, t_pods)
        return t_apply, t_pods, cpu_seconds(pid) - cpu0
    finally:
        stop()
        store.stop()
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--go", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("binaries", nargs="*", default=[os.environ["HIGHLANDER_BIN"]])
    a = ap.parse_args()
    kube = cluster()
    our_crds(kube)
    subprocess.run([os.path.join(kube.bin, "kwokctl"), "scale", "node", "--replicas", str(a.n // 100 + 2), "--name",
                    os.path.basename(kube.dir)], capture_output=True,
                   env=dict(os.environ, KWOK_WORKDIR=os.path.dirname(os.path.dirname(kube.dir))))
    rows = []
    subjects = [(os.path.relpath(b), lambda s, ns, tmp, b=b: start_ours(os.path.abspath(b), kube, s, ns))
                for b in a.binaries]
    if a.go:
        p = subprocess.run(["bash", os.path.join(conftest.ROOT, "test/compat/build-peer.sh")], capture_output=True)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        go_bin = p.stdout.decode().strip().splitlines()[-1]
        subjects.append(("Go K8 Highlander", lambda s, ns, tmp: start_go(go_bin, kube, s, ns, tmp)))
    print("%d WorkloadProcess applied at once, %d runs each; ours at %s QPS" %
          (a.n, a.runs, os.environ.get("BENCH_KUBE_QPS", "200")))
    for name, start in subjects:
        res = [one_run(kube, a.n, start) for _ in range(a.runs)]
        ap_med = statistics.median(r[0] for r in res)
        pods_med = statistics.median(r[1] for r in res)
        cpu_med = statistics.median(r[2] for r in res)
        rows.append((name, ap_med, pods_med))
        print("%-28s kubectl apply %.1f s, all pods %.1f s (median; runs: %s), ratio to apply %.2f, "
              "controller CPU %.2f s" % (name, ap_med, pods_med, ", ".join("%.1f" % r[1] for r in res),
                                         pods_med / ap_med, cpu_med))
    if a.go and len(rows) >= 2:
        go = rows[-1][2]
        for name, _, t in rows[:-1]:
            print("%-28s all pods in %.2f x the Go controller's time" % (name, t / go))


if __name__ == "__main__":
    main()
