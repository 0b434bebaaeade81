"""The dashboard in a real browser: test/browser/dashboard.mjs drives
Debian's chromium with playwright-core against three real replicas (real
Redis, the local control plane).  The replica ids and a resource's error
carry markup, so the page must render them as text.  At the end the leader
is stopped (a handover) and its successor killed (a failover), both watched
live on the pictures of the replicas that take over."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT
from lease_helpers import Cluster, RedisStore

pytestmark = pytest.mark.cluster

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE_MODULES = os.path.join(ROOT, "test", "browser", "node_modules", "playwright-core")
LEADER_ID = "a<script>window.__pwned=1</script>"
FOLLOWER_ID = "b<img/src=x/onerror=window.__pwned=2>"
THIRD_ID = "c-third"

RESOURCES = """
apiVersion: highlander.plexobject.io/v1
kind: WorkloadProcess
metadata: {{name: dash-proc, namespace: {ns}}}
spec: {{image: busybox, script: {{commands: ["sleep 3600"]}}}}
---
apiVersion: highlander.plexobject.io/v1
kind: WorkloadCronJob
metadata: {{name: dash-bad, namespace: {ns}}}
spec: {{image: busybox, schedule: "<img/src=x/onerror=window.__pwned=3>", script: {{commands: [date]}}}}
"""


def test_dashboard_in_browser(kube, controller_factory):
    assert os.access(CHROMIUM, os.X_OK), "chromium missing: run make deps"
    assert os.path.isdir(NODE_MODULES), "playwright-core missing: run make deps"
    ns = kube.namespace("wl-dashboard")
    kube.kubectl("apply", "-f", "-", input=RESOURCES.format(ns=ns).encode())
    store = RedisStore()
    cl = Cluster(controller_factory, None, n=0, store=store, extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig})
    try:
        first = cl.add(LEADER_ID)
        cl.wait_one_leader(timeout=15, among=[first])
        second = cl.add(FOLLOWER_ID)
        third = cl.add(THIRD_ID)
        out_dir = os.path.join(ROOT, "build", "browser")
        shutil.rmtree(out_dir, ignore_errors=True)
        env = dict(os.environ, LEADER_URL="http://127.0.0.1:%d" % first.port,
                   FOLLOWER_URL="http://127.0.0.1:%d" % second.port, LEADER_ID=LEADER_ID, FOLLOWER_ID=FOLLOWER_ID,
                   FOLLOWER_PID=str(second.proc.pid), LEADER_PID=str(first.proc.pid),
                   THIRD_URL="http://127.0.0.1:%d" % third.port, THIRD_ID=THIRD_ID, THIRD_PID=str(third.proc.pid),
                   KUBECTL=os.path.join(kube.bin, "kubectl"),
                   KUBECONFIG=kube.kubeconfig, NS=ns, OUT_DIR=out_dir, CHROMIUM=CHROMIUM)
        p = subprocess.run(["node", os.path.join(ROOT, "test", "browser", "dashboard.mjs")], env=env,
                           capture_output=True, timeout=240)
        print(p.stdout.decode())
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
        for shot in ("leader", "follower", "workload-details", "hostile", "hostile-pod", "unreachable", "mobile",
                     "pictures", "handover", "failover"):
            assert os.path.getsize(os.path.join(out_dir, shot + ".png")) > 1000, shot
        # The leader stopped cleanly; of the other two, the one that took
        # over was killed and the last one leads.
        assert first.proc.wait(timeout=10) == 0
        assert len(cl.alive()) == 1 and cl.leaders() == cl.alive()
    finally:
        for c in cl.alive():
            c.terminate()
        store.stop()
        kube.kubectl("delete", "-n", ns, "workloadprocesses,workloadcronjobs", "--all", "--wait=false", check=False)
    cl.check()
