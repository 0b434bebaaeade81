#!/usr/bin/env python3
"""Reconcile benchmark against the local control plane and a real Redis:
1,000 WorkloadProcess resources, one controller replica (leader).

Prints: time from creating the resources until all are healthy (as the
controller reports) beside the least the client's rate limit allows (one
create per resource), the controller's CPU seconds over that time, RSS
of the controller before and after, and p50/p99 latency from a resource
update (a new image) to the new Pod Running, sampled over 30 updates.
Resources are created by 8 kubectl processes at once, in a namespace of
the run's own (deleted in the background afterwards).
  bench/reconcile/run.py [BINARY] [N]
"""
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../test/system"))
os.environ.setdefault("HIGHLANDER_BIN", os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                                                        os.path.join(HERE, "../../build/highlander")))
import conftest  # noqa: E402
from lease_helpers import RedisStore  # noqa: E402

N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000


class Api:
    """Direct HTTPS to the API server with the kubeconfig's client cert."""

    def __init__(self, kube):
        cfg = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json"))
        self.server = cfg["clusters"][0]["cluster"]["server"]
        user = cfg["users"][0]["user"]
        self.ctx = ssl.create_default_context(cafile=cfg["clusters"][0]["cluster"]["certificate-authority"])
        self.ctx.load_cert_chain(user["client-certificate"], user["client-key"])

    def get(self, path):
        return json.load(urllib.request.urlopen(self.server + path, context=self.ctx, timeout=10))

    def patch(self, path, body):
        req = urllib.request.Request(self.server + path, data=json.dumps(body).encode(), method="PATCH",
                                     headers={"Content-Type": "application/merge-patch+json"})
        return json.load(urllib.request.urlopen(req, context=self.ctx, timeout=10))


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_all(kube, items, parallel=8):
    chunks = [items[i::parallel] for i in range(parallel)]
    procs = [subprocess.Popen([os.path.join(kube.bin, "kubectl"), "--kubeconfig", kube.kubeconfig, "create", "-f",
                               "-", "-o", "name"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in chunks]
    for p, chunk in zip(procs, chunks):
        p.stdin.write(json.dumps({"apiVersion": "v1", "kind": "List", "items": chunk}).encode())
        p.stdin.close()
    for p in procs:
        assert p.wait(900) == 0, p.stderr.read().decode()[-2000:]


def main():
    p = subprocess.run(["bash", os.path.join(conftest.ROOT, "test/cluster/cluster.sh"), "up"], capture_output=True)
    kube = conftest.Kube(p.stdout.decode().strip().splitlines()[-1].split("=", 1)[1])
    kube.kubectl("apply", "-f", os.path.join(conftest.ROOT, "manifests/crds.yaml"))
    # kwok's fake nodes take 110 pods each: make room for N.
    nodes = N // 100 + 2
    subprocess.run([os.path.join(kube.bin, "kwokctl"), "scale", "node", "--replicas", str(nodes), "--name",
                    os.path.basename(kube.dir)], capture_output=True,
                   env=dict(os.environ, KWOK_WORKDIR=os.path.dirname(os.path.dirname(kube.dir))))
    print("%d fake nodes" % nodes)
    ns = "bench-reconcile-%d" % os.getpid()
    kube.kubectl("create", "namespace", ns)
    api = Api(kube)
    store = RedisStore()
    qps = os.environ.get("BENCH_KUBE_QPS", "200")
    c = conftest.Controller(env=dict(store.env(), HIGHLANDER_KUBECONFIG=kube.kubeconfig, HIGHLANDER_ID="bench",
                                     HIGHLANDER_LOG_LEVEL="warn", HIGHLANDER_KUBE_QPS=qps,
                                     HIGHLANDER_KUBE_BURST=qps))
    print("controller Kubernetes client limit: %s QPS" % qps)
    try:
        deadline = time.time() + 20
        while not c.get_json("/status")[1]["data"]["isLeader"] and time.time() < deadline:
            time.sleep(0.1)
        rss0 = rss(c.proc.pid)
        cpu0 = cpu_seconds(c.proc.pid)
        items = [{"apiVersion": "highlander.plexobject.io/v1", "kind": "WorkloadProcess",
                  "metadata": {"name": "p%04d" % i, "namespace": ns},
                  "spec": {"image": "busybox:1", "script": {"commands": ["sleep 3600"]}}} for i in range(N)]
        t0 = time.time()
        create_all(kube, items)
        t_created = time.time()
        while time.time() - t0 < 1800:
            s = c.get_json("/status")[1]["data"]["workloadSummary"]
            if s["healthy"] >= N:
                break
            time.sleep(0.5)
        t_healthy = time.time()
        cpu1 = cpu_seconds(c.proc.pid)
        rss1 = rss(c.proc.pid)
        lat = []
        for i in range(30):
            name = "p%04d" % (i * 7 % N)
            image = "busybox:%d" % (i + 2)
            t = time.time()
            api.patch("/apis/highlander.plexobject.io/v1/namespaces/%s/workloadprocesses/%s" % (ns, name),
                      {"spec": {"image": image}})
            while time.time() - t < 30:
                try:
                    pod = api.get("/api/v1/namespaces/%s/pods/%s-pod" % (ns, name))
                    if pod["spec"]["containers"][0]["image"] == image and pod["status"].get("phase") == "Running":
                        break
                except Exception:
                    pass
                time.sleep(0.005)
            lat.append(time.time() - t)
        lat.sort()
        print("%d WorkloadProcess resources: created in %.1f s, all healthy %.1f s after the first create "
              "(the rate limit alone: %.1f s for %d creates at %s QPS)"
              % (N, t_created - t0, t_healthy - t0, N / float(qps), N, qps))
        print("controller CPU: %.1f s over those %.1f s (%.0f %% of one core)"
              % (cpu1 - cpu0, t_healthy - t0, 100 * (cpu1 - cpu0) / max(t_healthy - t0, 0.001)))
        print("controller RSS: %.1f MiB before, %.1f MiB with %d workloads" % (rss0, rss1, N))
        print("update -> new pod Running, %d samples: p50 %.3f s, p99 %.3f s"
              % (len(lat), statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]))
    finally:
        c.terminate()
        store.stop()
        kube.kubectl("delete", "namespace", ns, "--wait=false")


if __name__ == "__main__":
    main()
