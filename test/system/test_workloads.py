"""Workloads against the real control plane (kwok nodes make pods Running)
with real Redis: config and custom-resource workloads, status, in-place
updates, adoption on failover, recreation, invalid resources."""
import json
import re
import time

import pytest

from conftest import wait_until
from lease_helpers import Cluster, RedisStore

pytestmark = pytest.mark.cluster


def wait(pred, timeout=30, what="condition"):
    return wait_until(pred, timeout, what, interval=0.2, ignore=(AssertionError, KeyError, ValueError, IndexError,
                                                                 OSError))


def get(kube, ns, *what):
    return json.loads(kube.kubectl("-n", ns, "get", *what, "-o", "json"))


def config_for(ns):
    return """
workloads:
  processes:
    - name: proc
      namespace: {ns}
      image: busybox
      script: {{commands: ["sleep 3600"]}}
      env: {{MODE: test}}
      labels: {{team: core}}
  cronJobs:
    - name: tick
      namespace: {ns}
      image: busybox
      schedule: "*/5 * * * *"
      script: {{commands: [date]}}
  services:
    - name: web
      namespace: {ns}
      image: nginx
      replicas: 2
      script: {{commands: [nginx]}}
      ports: [{{name: http, containerPort: 80, servicePort: 8080}}]
  persistentSets:
    - name: store
      namespace: {ns}
      image: redis
      replicas: 1
      script: {{commands: [redis-server]}}
""".format(ns=ns)


@pytest.fixture
def setup(kube, controller_factory, tmp_path, request):
    ns = kube.namespace("wl-" + request.node.name.replace("_", "-")[5:30].strip("-"))
    store = RedisStore()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_for(ns))
    cl = Cluster(controller_factory, None, n=2, store=store,
                 extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig, "HIGHLANDER_CONFIG": str(cfg)})
    yield kube, ns, cl
    for c in cl.alive():
        c.terminate()
    store.stop()
    # Resources left behind would be workloads of every later test's controllers.
    kube.kubectl("delete", "-n", ns, "workloadprocesses,workloadcronjobs,workloadservices,workloadpersistents",
                 "--all", "--wait=false", check=False)


class PodWatcher:
    """An external watch on the pods of a namespace for a whole test (the
    kube_driver tool prints "TYPE name" per event).  live_max() replays the
    events: the most pods of one name that existed at once."""

    def __init__(self, kube, ns):
        self.proc = kube.driver_bg("watch", "", "v1", "pods", ns)
        self.out = None

    def stop(self):
        if self.out is None:
            self.proc.send_signal(15)
            self.out = self.proc.communicate(timeout=10)[0].decode()
        return self.out

    def events(self, name):
        return [p[0] for p in (line.split() for line in self.stop().splitlines()) if len(p) >= 2 and p[1] == name]

    def live_max(self, name):
        live = most = 0
        for ev in self.events(name):
            live += {"ADDED": 1, "DELETED": -1}.get(ev, 0)
            most = max(most, live)
        return most


def workloads(c, ns):
    """The workloads in namespace ns (resources of other tests' namespaces
    are workloads too: the controller watches every namespace)."""
    return {w["name"]: w for w in c.get_json("/api/workloads?view=list")[1]["data"] if w["namespace"] == ns}


def test_config_workloads_become_healthy(setup):
    kube, ns, cl = setup
    leader = cl.wait_one_leader(timeout=15)
    try:
        wait(lambda: all(w["healthy"] for w in workloads(leader, ns).values()) and len(workloads(leader, ns)) == 4,
             90, "all four healthy")
    except AssertionError:
        raise AssertionError(json.dumps({n: (w["phase"], w["lastError"]) for n, w in workloads(leader, ns).items()}))
    token = str(leader.get_json("/status")[1]["data"]["fencingToken"])
    pod = get(kube, ns, "pod", "proc-pod")
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "proc" and labels["managed-by"] == "k8-highlander" and labels["team"] == "core"
    assert labels["highlander.plexobject.io/workload-type"] == "process"
    ann = pod["metadata"]["annotations"]
    assert ann["k8-highlander.io/leader-id"] == leader.rid
    assert ann["k8-highlander.io/fencing-token"] == token
    assert ann["k8-highlander.io/spec-hash"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["HIGHLANDER_FENCING_TOKEN"] == token and env["MODE"] == "test"
    assert pod["spec"]["containers"][0]["command"] == ["/bin/sh"]
    assert pod["spec"]["containers"][0]["args"][1].startswith("set -e\n")
    dep = get(kube, ns, "deployment", "web")
    assert "k8-highlander.io/leader-id" not in (dep["spec"]["template"]["metadata"].get("annotations") or {})
    svc = get(kube, ns, "service", "web")
    assert svc["spec"]["ports"][0]["port"] == 8080 and svc["spec"]["ports"][0]["targetPort"] == 80
    sts = get(kube, ns, "statefulset", "store")
    assert sts["spec"]["serviceName"] == "store"
    assert get(kube, ns, "service", "store")["spec"]["clusterIP"] == "None"
    cj = get(kube, ns, "cronjob", "tick")
    assert cj["spec"]["suspend"] is False and cj["spec"]["schedule"] == "*/5 * * * *"
    # The follower writes nothing and knows what the leader runs.
    follower = [c for c in cl.replicas if c is not leader][0]
    data = leader.get_json("/status")[1]["data"]
    st = data["workloadSummary"]
    assert st["managed"] is True and st["healthy"] >= 4
    # Go's shape: {type: {name: {active, namespace}}}.
    assert data["workloadStatus"]["process"]["proc"]["active"] is True
    assert data["workloadStatus"]["cronjob"]["tick"]["namespace"] == ns
    pods = leader.get_json("/api/pods")[1]["data"]
    assert {p["name"] for p in pods} >= {"proc-pod"}
    # The Go controller's keys and types, ours beside them.
    pod = [p for p in pods if p["name"] == "proc-pod" and p["namespace"] == ns][0]
    assert pod["status"] == "Running" and pod["phase"] == "Running"
    assert pod["controllerId"] == leader.rid and isinstance(pod["clusterName"], str)
    assert pod["labels"]["app"] == "proc" and isinstance(pod["annotations"], dict)
    assert isinstance(pod["node"], str) and isinstance(pod["age"], str)
    names = leader.get_json("/api/workload-names")[1]["data"]
    assert names[:4] == ["processes", "cronjobs", "service", "persistent"] and "proc" in names
    # Go's /api/workloads: an object keyed by manager, workloads under details.
    by_mgr = leader.get_json("/api/workloads")[1]["data"]
    assert set(by_mgr) == {"processes", "cronjobs", "service", "persistent"}
    assert by_mgr["processes"]["type"] == "processManager" and by_mgr["processes"]["active"] is True
    assert by_mgr["processes"]["details"]["processes"]["proc"]["type"] == "process"
    assert by_mgr["cronjobs"]["details"]["cronJobs"]["tick"]["healthy"] is True
    status, doc = leader.get_json("/api/workloads/processes")  # a manager's name, as Go takes it
    assert status == 200 and doc["data"]["name"] == "processes"
    assert "proc" in doc["data"]["details"]["processes"]
    one = leader.get_json("/api/workloads/web?namespace=" + ns)[1]["data"]
    assert one["details"]["replicas"] == 2 and one["type"] == "service"
    # Go's detail keys beside ours, and its lastTransition on managers too.
    assert one["details"]["readyReplicas"] == 2 and one["details"]["availableReplicas"] == 2
    proc = by_mgr["processes"]["details"]["processes"]["proc"]["details"]
    assert proc["podPhase"] == "Running" and proc["nodeName"] and proc["containerReady"] is True
    for mgr in by_mgr.values():
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", mgr["lastTransition"]), mgr
        assert mgr["lastTransition"] != "0001-01-01T00:00:00Z", mgr  # its workloads have changed
    text = leader.get("/metrics")[2].decode()
    # Every metric name of SPEC section 7 is exported by a leader with workloads.
    for name in ("is_leader", "leadership_transitions_total", "leadership_duration_seconds",
                 "leadership_acquisitions_total", "leadership_losses_total", "leadership_failed_attempts_total",
                 "last_leader_transition_timestamp_seconds", "workload_status", "workload_startup_duration_seconds",
                 "workload_shutdown_duration_seconds", "workload_operations_total", "workload_errors_total",
                 "failover_total", "failover_duration_seconds", "failover_errors_total", "db_operations_total",
                 "db_errors_total", "db_latency_seconds", "db_lock_ttl_seconds", "cluster_health",
                 "cluster_transitions_total", "controller_state", "process_status", "cronjob_status",
                 "service_status", "persistent_status", "workload_retry_attempts_total",
                 "workload_retry_success_total", "memory_usage_bytes", "system_load", "fencing_token"):
        assert "# TYPE k8_highlander_%s " % name in text, name
    assert 'k8_highlander_workload_status{type="process",name="proc",namespace="%s"} 1' % ns in text
    assert 'k8_highlander_process_status{name="proc",namespace="%s"} 1' % ns in text
    # The Go controller's label values, which its alerts and dashboards key on.
    assert 'k8_highlander_workload_status{type="cronjob",name="tick",namespace="%s"} 1' % ns in text
    assert 'k8_highlander_workload_status{type="persistent",name="store",namespace="%s"} 1' % ns in text
    assert 'k8_highlander_workload_operations_total{type="process",name="proc",operation="startup"} 1' in text
    # The Go managers' start-up, once per kind for this term.
    for mtype, mname in (("processManager", "processes"), ("cronjobManager", "cronjobs"),
                         ("serviceManager", "service"), ("persistentManager", "persistent")):
        assert 'k8_highlander_workload_operations_total{type="%s",name="%s",operation="startup"} 1' % (
            mtype, mname) in text, mtype
        assert 'k8_highlander_workload_startup_duration_seconds_count{type="%s",name="%s"} 1' % (mtype, mname) in text
    assert 'k8_highlander_workload_startup_duration_seconds_bucket{type="process",name="proc",le="51.2"} 1' in text
    assert 'k8_highlander_controller_state{state="normal"} 1' in text
    assert 'k8_highlander_controller_state{state="degraded"} 0' in text
    cl.check()


def test_failover_adopts_without_restarting(setup):
    """kill -9 of the leader: the new leader adopts (same pod UID, same
    ReplicaSets); a replica that starts afterwards in the same cluster
    leaves the objects alone; a watcher sees one pod for the whole test."""
    kube, ns, cl = setup
    watcher = PodWatcher(kube, ns)
    leader = cl.wait_one_leader(timeout=15)
    wait(lambda: all(w["healthy"] for w in workloads(leader, ns).values()) and len(workloads(leader, ns)) == 4, 60)
    uid = get(kube, ns, "pod", "proc-pod")["metadata"]["uid"]
    rs_before = sorted(r["metadata"]["name"] for r in get(kube, ns, "replicasets")["items"])
    leader.proc.kill()
    new = cl.wait_one_leader(timeout=10, among=[c for c in cl.replicas if c is not leader])
    late = cl.add("r9-default")
    wait(lambda: late.get("/readyz")[0] == 200, 15, "the late replica ready")
    time.sleep(3.0)
    assert all(w["healthy"] for w in workloads(new, ns).values())
    assert get(kube, ns, "pod", "proc-pod")["metadata"]["uid"] == uid
    assert sorted(r["metadata"]["name"] for r in get(kube, ns, "replicasets")["items"]) == rs_before
    assert "start-up: stopping" not in late.log()
    assert watcher.events("proc-pod") and "DELETED" not in watcher.events("proc-pod"), watcher.stop()
    assert watcher.live_max("proc-pod") == 1
    cl.check()


def test_failed_pod_restarted_up_to_max_restarts(kube, controller_factory, tmp_path):
    """kwok's pod-container-running-failed stage fails a running pod that
    carries its label.  The leader replaces the failed pod (old one gone
    first) maxRestarts times, then gives up and says so."""
    ns = kube.namespace("wl-maxrestarts")
    store = RedisStore()
    cfg = tmp_path / "config.yaml"
    cfg.write_text("""
workloads:
  processes:
    - name: crash
      namespace: {ns}
      image: busybox
      maxRestarts: 2
      restartPolicy: Never
      script: {{commands: ["exit 1"]}}
      labels: {{"pod-container-running-failed.stage.kwok.x-k8s.io": "true"}}
""".format(ns=ns))
    watcher = PodWatcher(kube, ns)
    cl = Cluster(controller_factory, None, n=1, store=store,
                 extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig, "HIGHLANDER_CONFIG": str(cfg)})
    try:
        leader = cl.wait_one_leader(timeout=15)
        w = wait(lambda: (lambda w: w if "maxRestarts" in (w["lastError"] or "") else None)(
            workloads(leader, ns)["crash"]), 90, "the controller giving up")
        assert not w["healthy"]
        assert "gave up after 2 restarts" in w["lastError"], w
        pod = get(kube, ns, "pod", "crash-pod")
        assert pod["status"]["phase"] == "Failed"
        time.sleep(3.0)  # and it stays given up
        assert get(kube, ns, "pod", "crash-pod")["metadata"]["uid"] == pod["metadata"]["uid"]
    finally:
        for c in cl.alive():
            c.terminate()
        store.stop()
    events = watcher.events("crash-pod")
    assert events.count("ADDED") == 3, events  # the first pod and two restarts
    assert watcher.live_max("crash-pod") == 1, events
    cl.check()


def test_failed_write_counted_with_go_error_type(kube, controller_factory, tmp_path):
    """A write the API server refuses: a process in a namespace that does
    not exist (its create answers 404 NotFound).  The error is counted
    with the Go controller's error_type ("not_found"), named in the
    workload's lastError, retried, and the other workload still runs."""
    ns = kube.namespace("wl-errtype")
    store = RedisStore()
    cfg = tmp_path / "config.yaml"
    cfg.write_text("""
workloads:
  processes:
    - name: ghost
      namespace: wl-errtype-absent
      image: busybox
      script: {{commands: ["sleep 3600"]}}
    - name: fine
      namespace: {ns}
      image: busybox
      script: {{commands: ["sleep 3600"]}}
""".format(ns=ns))
    cl = Cluster(controller_factory, None, n=1, store=store,
                 extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig, "HIGHLANDER_CONFIG": str(cfg)})
    try:
        leader = cl.wait_one_leader(timeout=15)
        series = 'k8_highlander_workload_errors_total{type="process",name="ghost",error_type="not_found"} '

        def errors():
            for line in leader.get("/metrics")[2].decode().splitlines():
                if line.startswith(series):
                    return float(line.split()[-1])
            return 0
        wait(lambda: errors() >= 2, 30, "two failed creates counted as not_found")  # retried
        w = workloads(leader, "wl-errtype-absent")["ghost"]
        assert not w["healthy"] and "not found" in w["lastError"], w
        wait(lambda: workloads(leader, ns)["fine"]["healthy"], 60, "the other workload runs")
        assert 'name="ghost",error_type="unknown"' not in leader.get("/metrics")[2].decode()
    finally:
        for c in cl.alive():
            c.terminate()
        store.stop()
    cl.check()


def test_deleted_pod_is_recreated(setup):
    kube, ns, cl = setup
    leader = cl.wait_one_leader(timeout=15)
    wait(lambda: workloads(leader, ns)["proc"]["healthy"], 60)
    uid = get(kube, ns, "pod", "proc-pod")["metadata"]["uid"]
    kube.kubectl("-n", ns, "delete", "pod", "proc-pod", "--wait=false")
    wait(lambda: get(kube, ns, "pod", "proc-pod")["metadata"]["uid"] != uid and
         get(kube, ns, "pod", "proc-pod")["status"].get("phase") == "Running", 60, "a new pod")


CRS = """
apiVersion: highlander.plexobject.io/v1
kind: WorkloadProcess
metadata: {{name: cr-proc, namespace: {ns}}}
spec: {{image: busybox, script: {{commands: ["sleep 100"]}}}}
---
apiVersion: highlander.plexobject.io/v1
kind: WorkloadCronJob
metadata: {{name: cr-cron, namespace: {ns}}}
spec: {{image: busybox, schedule: "*/10 * * * *", script: {{commands: [date]}}}}
---
apiVersion: highlander.plexobject.io/v1
kind: WorkloadService
metadata: {{name: cr-svc, namespace: {ns}}}
spec: {{image: nginx, replicas: 1, script: {{commands: [nginx]}}}}
---
apiVersion: highlander.plexobject.io/v1
kind: WorkloadPersistent
metadata: {{name: cr-db, namespace: {ns}}}
spec: {{image: redis, replicas: 1, script: {{commands: [redis-server]}}}}
---
apiVersion: highlander.plexobject.io/v1
kind: WorkloadCronJob
metadata: {{name: cr-bad, namespace: {ns}}}
spec: {{image: busybox, schedule: "whenever", script: {{commands: [date]}}}}
"""


def test_custom_resources(setup):
    kube, ns, cl = setup
    leader = cl.wait_one_leader(timeout=15)
    kube.kubectl("apply", "-f", "-", input=CRS.format(ns=ns).encode())
    for kind, name in (("wlp", "cr-proc"), ("wlc", "cr-cron"), ("wls", "cr-svc"), ("wlper", "cr-db")):
        try:
            wait(lambda: get(kube, ns, kind, name).get("status", {}).get("healthy") is True, 60, name + " healthy")
        except AssertionError as e:
            raise AssertionError("%s\n--- status: %s\n--- objects:\n%s\n--- api: %s\n--- leader log:\n%s" % (
                e, json.dumps(get(kube, ns, kind, name).get("status")), kube.kubectl("-n", ns, "get", "all"),
                json.dumps(workloads(leader, ns).get(name)), leader.log()[-6000:]))
        st = get(kube, ns, kind, name)["status"]
        assert st["active"] is True and st["leaderId"] == leader.rid and st["fencingToken"] >= 1
        assert {c["type"]: c["status"] for c in st["conditions"]} == {"Ready": "True", "Degraded": "False"}
    table = kube.kubectl("-n", ns, "get", "wlp,wlc,wls,wlper")
    assert "cr-proc" in table and "true" in table
    # Objects made for a resource carry an ownerReference to it.
    owner = get(kube, ns, "deployment", "cr-svc")["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "WorkloadService" and owner["name"] == "cr-svc"
    # The invalid one names its field, and the others stay healthy.
    bad = wait(lambda: get(kube, ns, "wlc", "cr-bad").get("status"), 30, "cr-bad status")
    ready = [c for c in bad["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "False" and "spec.schedule" in ready["message"]
    events = kube.kubectl("-n", ns, "get", "events", "--field-selector", "involvedObject.name=cr-bad")
    assert "InvalidSpec" in events
    assert all(w["healthy"] for n, w in workloads(leader, ns).items() if n != "cr-bad")

    # Update in place: the same Deployment (UID) with new replicas; the
    # CronJob's schedule follows.
    uid = get(kube, ns, "deployment", "cr-svc")["metadata"]["uid"]
    kube.kubectl("-n", ns, "patch", "wls", "cr-svc", "--type", "merge", "-p", '{"spec":{"replicas":2}}')
    wait(lambda: get(kube, ns, "deployment", "cr-svc")["spec"]["replicas"] == 2, 30, "replicas 2")
    assert get(kube, ns, "deployment", "cr-svc")["metadata"]["uid"] == uid
    kube.kubectl("-n", ns, "patch", "wlc", "cr-cron", "--type", "merge", "-p", '{"spec":{"schedule":"0 * * * *"}}')
    wait(lambda: get(kube, ns, "cronjob", "cr-cron")["spec"]["schedule"] == "0 * * * *", 30, "new schedule")
    # No change at all when the spec is unchanged.
    time.sleep(2.0)
    rv = get(kube, ns, "deployment", "cr-svc")["metadata"]["resourceVersion"]
    kube.kubectl("apply", "-f", "-", input=CRS.format(ns=ns).replace("replicas: 1, script", "replicas: 2, script", 1)
                 .encode())
    time.sleep(3.0)
    assert get(kube, ns, "deployment", "cr-svc")["metadata"]["resourceVersion"] == rv

    # Deleting a resource removes what was made for it.
    kube.kubectl("-n", ns, "delete", "wls", "cr-svc")
    wait(lambda: "cr-svc" not in kube.kubectl("-n", ns, "get", "deployments", "-o", "name"), 60, "deployment gone")
    cl.check()


def test_stop_mode_handover(kube, controller_factory, tmp_path):
    """workloadHandover: stop.  On SIGTERM the leader deletes the pod, scales
    the Deployment to zero, and only then releases; the next leader starts
    them again.  A watcher records every pod event: the old pod is gone
    before the new one appears, never two at once."""
    from conftest import TOOLS  # noqa: F401
    ns = kube.namespace("wl-stopmode")
    store = RedisStore()
    cfg = tmp_path / "config.yaml"
    cfg.write_text("workloadHandover: stop\n" + config_for(ns))
    watcher = PodWatcher(kube, ns)
    cl = Cluster(controller_factory, None, n=2, store=store,
                 extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig, "HIGHLANDER_CONFIG": str(cfg)})
    try:
        leader = cl.wait_one_leader(timeout=15)
        try:
            wait(lambda: all(w["healthy"] for w in workloads(leader, ns).values()) and len(workloads(leader, ns)) == 4, 90)
        except AssertionError:
            raise AssertionError(json.dumps({n: (w["phase"], w["lastError"]) for n, w in workloads(leader, ns).items()})
                                 + kube.kubectl("-n", ns, "get", "all"))
        uid = get(kube, ns, "pod", "proc-pod")["metadata"]["uid"]
        # A Job of the CronJob that is still running (suspended, so that kwok
        # cannot complete it first): stopping the CronJob removes it; a Job
        # owned by nothing of ours stays.
        job = json.loads(kube.kubectl("-n", ns, "create", "job", "--from=cronjob/tick", "tick-manual",
                                      "--dry-run=client", "-o", "json"))
        job["spec"]["suspend"] = True
        assert job["metadata"]["ownerReferences"][0]["name"] == "tick"
        kube.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(job).encode())
        kube.kubectl("-n", ns, "create", "job", "other", "--image=busybox")
        kube.kubectl("-n", ns, "patch", "job", "other", "-p", '{"spec":{"suspend":true}}')
        assert leader.terminate() == 0
        log = leader.log()
        assert "removing Job %s/tick-manual" % ns in log
        wait(lambda: "tick-manual" not in kube.kubectl("-n", ns, "get", "jobs", "-o", "name"), 30, "the Job gone")
        assert "job.batch/other" in kube.kubectl("-n", ns, "get", "jobs", "-o", "name")
        assert log.index("workloadHandover stop: stopping") < log.index("released the lease")
        for kind, name in (("process", "proc"), ("cronJob", "tick"), ("service", "web"), ("persistentSet", "store")):
            assert log.index("stopped %s %s in " % (kind, name)) < log.index("released the lease")
        new = cl.wait_one_leader(timeout=10, among=[c for c in cl.replicas if c is not leader])
        wait(lambda: get(kube, ns, "pod", "proc-pod")["metadata"]["uid"] != uid and
             all(w["healthy"] for w in workloads(new, ns).values()), 90, "restarted by the new leader")
        assert get(kube, ns, "deployment", "web")["spec"]["replicas"] == 2
        assert get(kube, ns, "cronjob", "tick")["spec"]["suspend"] is False
        time.sleep(1.0)
    finally:
        watcher.stop()
        for c in cl.alive():
            c.terminate()
        store.stop()
    assert "DELETED" in watcher.events("proc-pod")
    assert watcher.live_max("proc-pod") == 1, watcher.stop()
    cl.check()


def test_stop_mode_start_up_rule(kube, controller_factory, tmp_path):
    """workloadHandover: stop across clusters.  The leader of cluster east
    dies (kill -9) with its objects running; a replica of cluster west
    takes the lease (it has no Kubernetes access here: its objects would be
    in its own cluster).  A replica of east that starts now, as a follower,
    stops east's objects, which carry an older token than west's leader."""
    ns = kube.namespace("wl-startup")
    store = RedisStore()
    cfg = tmp_path / "config.yaml"
    cfg.write_text("workloadHandover: stop\n" + config_for(ns))
    cl = Cluster(controller_factory, None, n=0, store=store,
                 extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig, "HIGHLANDER_CONFIG": str(cfg),
                            "HIGHLANDER_CLUSTER_NAME": "east"})
    try:
        east = cl.add("east-1")
        cl.wait_one_leader(timeout=15)
        wait(lambda: all(w["healthy"] for w in workloads(east, ns).values()) and len(workloads(east, ns)) == 4, 90)
        old_token = int(get(kube, ns, "pod", "proc-pod")["metadata"]["annotations"]["k8-highlander.io/fencing-token"])
        east.proc.kill()
        west = cl.add("west-1", {"HIGHLANDER_CLUSTER_NAME": "west", "HIGHLANDER_KUBECONFIG": ""})
        cl.wait_one_leader(timeout=10, among=[west])
        assert west.get_json("/status")[1]["data"]["fencingToken"] > old_token
        # Nothing was stopped yet: west cannot reach this cluster.
        assert get(kube, ns, "pod", "proc-pod")["status"]["phase"] == "Running"
        late = cl.add("east-2")
        wait(lambda: "start-up: stopping" in late.log(), 20, "the start-up rule")
        wait(lambda: not [p for p in get(kube, ns, "pods")["items"] if p["metadata"]["name"] == "proc-pod"], 30,
             "the stale pod gone")
        # The four stop requests went out together; each lands on its own.
        try:
            wait(lambda: get(kube, ns, "cronjob", "tick")["spec"]["suspend"] is True, 10, "CronJob suspended")
            wait(lambda: get(kube, ns, "deployment", "web")["spec"]["replicas"] == 0, 10, "Deployment at 0")
            wait(lambda: get(kube, ns, "statefulset", "store")["spec"]["replicas"] == 0, 10, "StatefulSet at 0")
        except AssertionError as e:
            raise AssertionError("%s\n--- east-2 log:\n%s" % (e, late.log()[-4000:]))
        assert not late.get_json("/status")[1]["data"]["isLeader"]
    finally:
        for c in cl.alive():
            c.terminate()
        store.stop()
    cl.check()


def test_crd_namespaces_limit_what_is_watched(kube, controller_factory):
    """crdNamespaces: resources elsewhere are not workloads of this controller."""
    ns_in, ns_out = kube.namespace("wl-crdns-in"), kube.namespace("wl-crdns-out")
    for ns in (ns_in, ns_out):
        kube.kubectl("apply", "-f", "-", input=("""
apiVersion: highlander.plexobject.io/v1
kind: WorkloadProcess
metadata: {name: only, namespace: %s}
spec: {image: busybox, script: {commands: ["sleep 100"]}}
""" % ns).encode())
    store = RedisStore()
    cl = Cluster(controller_factory, None, n=1, store=store,
                 extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig, "HIGHLANDER_CRD_NAMESPACES": ns_in})
    try:
        leader = cl.wait_one_leader(timeout=15)
        wait(lambda: workloads(leader, ns_in).get("only", {}).get("healthy"), 60, "the watched one healthy")
        names = {(w["namespace"], w["name"]) for w in leader.get_json("/api/workloads?view=list")[1]["data"]}
        assert (ns_out, "only") not in names and all(ns == ns_in for ns, _ in names), names
        assert "only-pod" not in kube.kubectl("-n", ns_out, "get", "pods", "-o", "name")
    finally:
        for c in cl.alive():
            c.terminate()
        store.stop()
        for ns in (ns_in, ns_out):
            kube.kubectl("-n", ns, "delete", "workloadprocess", "only", "--wait=false", check=False)
    cl.check()


def test_crd_without_status_subresource(setup):
    """What a Go replica does at its start: it rewrites the CRDs without
    the status subresource.  Reconciling goes on, one clear warning says
    why no status is written, and nothing is reapplied by us."""
    import os
    kube, ns, cl = setup
    leader = cl.wait_one_leader(timeout=15)
    crd = "workloadprocesses.highlander.plexobject.io"
    kube.kubectl("patch", "crd", crd, "--type=json", "-p", '[{"op":"remove","path":"/spec/versions/0/subresources"}]')
    try:
        kube.kubectl("apply", "-f", "-", input=("apiVersion: highlander.plexobject.io/v1\nkind: WorkloadProcess\n"
                                               "metadata: {name: nostatus, namespace: %s}\n"
                                               "spec: {image: busybox, script: {commands: [\"sleep 100\"]}}\n"
                                               % ns).encode())
        wait(lambda: get(kube, ns, "pod", "nostatus-pod")["status"].get("phase") == "Running", 60, "the pod runs")
        wait(lambda: workloads(leader, ns).get("nostatus", {}).get("healthy"), 30, "healthy in the API")
        wait(lambda: "has no status subresource" in leader.log(), 30, "the warning")
        time.sleep(2.0)
        log = leader.log()
        assert log.count("has no status subresource") == 1, log[-4000:]
        assert "workloadprocesses.highlander.plexobject.io has no status subresource" in log
        assert "nostatus: status update failed" not in log
        # We did not put the subresource back ourselves.
        assert "subresources" not in kube.kubectl("get", "crd", crd, "-o", "jsonpath={.spec.versions[0]}")
    finally:
        kube.kubectl("apply", "-f", os.path.join(os.path.dirname(__file__), "../../manifests/crds.yaml"))
        kube.kubectl("wait", "--for=condition=Established", "crd/" + crd, "--timeout=30s", check=False)


GO_MADE = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
  labels: {{app: web, managed-by: k8-highlander, controller-id: go-1}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web, managed-by: k8-highlander}}}}
    spec: {{containers: [{{name: main, image: nginx, imagePullPolicy: IfNotPresent}}]}}
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
  namespace: {ns}
  labels: {{app: tick, managed-by: k8-highlander}}
spec:
  schedule: "*/5 * * * *"
  suspend: true
  jobTemplate:
    spec:
      template:
        metadata: {{labels: {{app: tick, managed-by: k8-highlander}}}}
        spec: {{restartPolicy: OnFailure, containers: [{{name: main, image: busybox}}]}}
"""


def test_go_made_objects_are_adopted_and_restored(kube, controller_factory, tmp_path):
    """What a Go leader leaves at its SIGTERM: a Deployment scaled to 0
    with Go's {app} selector (immutable), a suspended CronJob, its pods
    deleted; none carries the tenant label.  A highlander leader adopts the
    very objects (same UIDs) and brings them back."""
    ns = kube.namespace("wl-go-made")
    kube.kubectl("apply", "-f", "-", input=GO_MADE.format(ns=ns).encode())
    dep_uid = get(kube, ns, "deployment", "web")["metadata"]["uid"]
    cj_uid = get(kube, ns, "cronjob", "tick")["metadata"]["uid"]
    store = RedisStore()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_for(ns))
    cl = Cluster(controller_factory, None, n=1, store=store,
                 extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig, "HIGHLANDER_CONFIG": str(cfg)})
    try:
        leader = cl.wait_one_leader(timeout=15)
        wait(lambda: get(kube, ns, "deployment", "web")["spec"]["replicas"] == 2, 30, "the Deployment scaled back")
        dep = get(kube, ns, "deployment", "web")
        assert dep["metadata"]["uid"] == dep_uid
        assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
        wait(lambda: get(kube, ns, "cronjob", "tick")["spec"]["suspend"] is False, 30, "the CronJob resumed")
        assert get(kube, ns, "cronjob", "tick")["metadata"]["uid"] == cj_uid
        wait(lambda: get(kube, ns, "pod", "proc-pod")["status"].get("phase") == "Running", 60, "the process pod")
        wait(lambda: workloads(leader, ns).get("web", {}).get("healthy"), 60, "web healthy")
        assert "field is immutable" not in leader.log()
    finally:
        for c in cl.alive():
            c.terminate()
        store.stop()


def test_resource_named_like_a_config_entry_wins_while_it_exists(setup):
    """As in the Go controller, a custom resource with the name of a
    configured workload replaces its spec; deleted, the config's is back."""
    kube, ns, cl = setup
    leader = cl.wait_one_leader(timeout=15)
    wait(lambda: get(kube, ns, "deployment", "web")["spec"]["replicas"] == 2, 60, "config's 2 replicas")
    kube.kubectl("apply", "-f", "-", input=("apiVersion: highlander.plexobject.io/v1\nkind: WorkloadService\n"
                                           "metadata: {name: web, namespace: %s}\n"
                                           "spec: {image: nginx, replicas: 1, script: {commands: [nginx]}}\n"
                                           % ns).encode())
    wait(lambda: get(kube, ns, "deployment", "web")["spec"]["replicas"] == 1, 30, "the resource's 1 replica")
    wait(lambda: (get(kube, ns, "wls", "web").get("status") or {}).get("active") is True, 30, "status on the resource")
    kube.kubectl("-n", ns, "delete", "wls", "web")
    wait(lambda: get(kube, ns, "deployment", "web")["spec"]["replicas"] == 2, 90, "the config's spec again")
    assert "the resource's spec is used while it exists" in leader.log()
    cl.check()


def test_crd_ref_falls_back_to_the_inline_spec(kube, controller_factory, tmp_path):
    """A workloadCRDRef entry whose resource is missing runs its own spec
    (as the Go controller does), named after the resource; the resource,
    once there, wins; deleted, the fallback runs again. Never both."""
    ns = kube.namespace("wl-crd-ref")
    store = RedisStore()
    cfg = tmp_path / "config.yaml"
    cfg.write_text("""
workloads:
  processes:
    - name: entry-name
      image: busybox:fallback
      script: {commands: ["sleep 3600"]}
      workloadCRDRef: {apiVersion: highlander.plexobject.io/v1, kind: WorkloadProcess, name: from-crd, namespace: %s}
    - name: no-fallback
      workloadCRDRef: {apiVersion: highlander.plexobject.io/v1, kind: WorkloadProcess, name: absent, namespace: %s}
""" % (ns, ns))
    cl = Cluster(controller_factory, None, n=1, store=store,
                 extra_env={"HIGHLANDER_KUBECONFIG": kube.kubeconfig, "HIGHLANDER_CONFIG": str(cfg)})
    watcher = PodWatcher(kube, ns)
    try:
        leader = cl.wait_one_leader(timeout=15)

        def image():
            return get(kube, ns, "pod", "from-crd-pod")["spec"]["containers"][0]["image"]
        wait(lambda: image() == "busybox:fallback", 60, "the fallback pod")
        wait(lambda: workloads(leader, ns)["from-crd"]["healthy"], 60, "the fallback healthy")
        names = [p["metadata"]["name"] for p in get(kube, ns, "pods")["items"]]
        assert names == ["from-crd-pod"], names  # no entry-name-pod, nothing for the reference without a spec
        kube.kubectl("apply", "-f", "-", input=("apiVersion: highlander.plexobject.io/v1\nkind: WorkloadProcess\n"
                                               "metadata: {name: from-crd, namespace: %s}\n"
                                               "spec: {image: 'busybox:resource', script: {commands: ['sleep 3600']}}\n"
                                               % ns).encode())
        wait(lambda: image() == "busybox:resource", 60, "the resource's pod")
        kube.kubectl("-n", ns, "delete", "wlp", "from-crd")
        wait(lambda: image() == "busybox:fallback", 90, "the fallback again")
        cl.check()
    finally:
        assert watcher.live_max("from-crd-pod") == 1, watcher.events("from-crd-pod")
        for c in cl.alive():
            c.terminate()
        store.stop()
