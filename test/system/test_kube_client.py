"""The C Kubernetes client (via test/tools/kube_driver) against the real
local control plane."""
import os
import signal
import time

import pytest

pytestmark = pytest.mark.cluster


def lines(out):
    return [l for l in out.splitlines() if l.strip()]


def test_crud_configmap_and_custom_resource(kube):
    ns = kube.namespace("t-crud")
    rc, out = kube.driver("crud", ns)
    got = {l.split()[0]: l.split()[1:] for l in lines(out)}
    assert got["create-cm"][0] == "201"
    assert got["get-cm"][0] == "200"
    assert got["update-stale-cm"][:2] == ["409", "Conflict"]
    assert got["merge-patch-cm"][0] == "200"
    assert got["apply-cm"][0] == "200"
    assert got["apply-data"] == ["a=1", "b=2", "c=3"]
    assert got["delete-cm"][0] == "200"
    assert got["get-deleted-cm"][:2] == ["404", "NotFound"]
    assert got["create-cr"][0] == "201"
    assert got["patch-cr"][0] == "200"
    assert got["status-cr"][0] == "200"
    assert got["delete-cr"][0] == "200"


def test_pagination_over_5000(kube):
    ns = kube.namespace("t-page")
    rc, out = kube.driver("--qps", "2000", "--burst", "2000", "create-many", ns, "5000", check=True)
    assert "failed 0" in out
    rc, out = kube.driver("list", "", "v1", "configmaps", ns, "500", check=True)
    items, pages = int(out.split()[1]), int(out.split()[3])
    assert items == 5001  # plus kube-root-ca.crt
    assert pages == 11


def read_until(proc, pred, timeout=30):
    deadline = time.time() + timeout
    seen = []
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while time.time() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                seen.append(line.decode())
                if pred(seen):
                    return seen
        else:
            time.sleep(0.05)
    raise AssertionError("timed out; seen: %s" % seen[-20:])


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def test_watch_sees_every_change_in_order(kube):
    ns = kube.namespace("t-watch")
    w = kube.driver_bg("watch", "", "v1", "configmaps", ns)
    try:
        read_until(w, lambda s: any(l.startswith("SYNCED") for l in s))
        kube.kubectl("-n", ns, "create", "configmap", "a", "--from-literal=k=1")
        kube.kubectl("-n", ns, "create", "configmap", "b", "--from-literal=k=1")
        kube.kubectl("-n", ns, "patch", "configmap", "a", "-p", '{"data":{"k":"2"}}')
        kube.kubectl("-n", ns, "delete", "configmap", "b")
        kube.kubectl("-n", ns, "patch", "configmap", "a", "-p", '{"data":{"k":"3"}}')
        kube.kubectl("-n", ns, "delete", "configmap", "a")
        seen = read_until(w, lambda s: sum(1 for l in s if l.startswith(("ADDED a", "ADDED b", "MODIFIED a",
                                                                          "DELETED a", "DELETED b"))) >= 6)
    finally:
        stop(w)
    events = [l.split()[0] + " " + l.split()[1] for l in seen if l.split()[1] in ("a", "b")]
    assert events == ["ADDED a", "ADDED b", "MODIFIED a", "DELETED b", "MODIFIED a", "DELETED a"]


def test_gone_410_relists_without_loss_or_duplicates(kube):
    """The watch's resourceVersion is compacted away while the watch is
    broken (API server restarted, serving watches from etcd rather than its
    watch cache, which would otherwise still cover the old version): the
    informer gets 410 Gone, relists and reports exactly the differences."""
    ns = kube.namespace("t-gone")
    for n in ("keep", "change", "remove"):
        kube.kubectl("-n", ns, "create", "configmap", n, "--from-literal=k=1")
    w = kube.driver_bg("watch", "", "v1", "configmaps", ns)
    try:
        read_until(w, lambda s: any(l.startswith("SYNCED 4") for l in s))
        w.send_signal(signal.SIGSTOP)
        kube.restart_apiserver(extra_args=["--watch-cache=false"])
        kube.kubectl("-n", ns, "create", "configmap", "new", "--from-literal=k=1")
        kube.kubectl("-n", ns, "patch", "configmap", "change", "-p", '{"data":{"k":"2"}}')
        kube.kubectl("-n", ns, "delete", "configmap", "remove")
        for i in range(20):  # move the store's revision well past the watch
            kube.kubectl("-n", "default", "create", "configmap", "churn-%d" % i)
            kube.kubectl("-n", "default", "delete", "configmap", "churn-%d" % i)
        kube.etcd_compact()
        w.send_signal(signal.SIGCONT)
        seen = read_until(w, lambda s: any(l.startswith("SYNCED") for l in s), timeout=60)
        time.sleep(1.0)
    finally:
        w.send_signal(signal.SIGCONT)
        out = stop(w)
        kube.restart_apiserver()
    after = seen + lines(out)
    changes = sorted(l.split()[0] + " " + l.split()[1] for l in after
                     if l.startswith(("ADDED", "MODIFIED", "DELETED")))
    assert changes == ["ADDED new", "DELETED remove", "MODIFIED change"], after
    stats = [l for l in after if l.startswith("STATS")][0]
    assert "gone=1" in stats, stats


def test_watch_resumes_after_apiserver_restart(kube):
    ns = kube.namespace("t-restart")
    w = kube.driver_bg("watch", "", "v1", "configmaps", ns)
    try:
        read_until(w, lambda s: any(l.startswith("SYNCED") for l in s))
        kube.kubectl("-n", ns, "create", "configmap", "before")
        first = read_until(w, lambda s: any(l.startswith("ADDED before") for l in s))
        kube.restart_apiserver(down_seconds=1.0)
        kube.kubectl("-n", ns, "create", "configmap", "after")
        seen = first + read_until(w, lambda s: any(l.startswith("ADDED after") for l in s), timeout=60)
    finally:
        out = stop(w)
    # Resumed, not replayed: "before" is reported once.
    assert sum(1 for l in seen + lines(out) if l.startswith("ADDED before")) == 1
    assert "reconnects" in lines(out)[-1] or any(l.startswith("STATS") for l in lines(out))


def test_wrong_ca_is_a_clear_tls_error(kube, tmp_path):
    ca = tmp_path / "other-ca.pem"
    ca.write_text(open("/etc/ssl/certs/ca-certificates.crt").read())
    rc, out = kube.driver("--ca", str(ca), "get", "/api/v1/namespaces")
    assert rc == 1
    assert "TLS error" in out or "certificate" in out.lower(), out


def test_bad_token_is_401(kube):
    rc, out = kube.driver("--token", "not-a-valid-token", "get", "/api/v1/namespaces")
    assert rc == 1
    assert out.startswith("status 401 Unauthorized"), out


def test_update_conflict_is_retried(kube):
    ns = kube.namespace("t-conflict")
    kube.kubectl("-n", ns, "create", "configmap", "counter")
    rc, out = kube.driver("modify", ns, "counter", "10", check=True)
    assert out.count("modify 200") == 10
    assert kube.kubectl("-n", ns, "get", "configmap", "counter", "-o", "jsonpath={.data.counter}") == "10"


def test_rate_limit_is_honoured(kube):
    # 5 at once (burst), then 10 per second: 25 requests take about 2 s.
    rc, out = kube.driver("--qps", "10", "--burst", "5", "burst", "/api/v1/namespaces/default/configmaps", "25",
                          check=True)
    secs = float(out.split()[4])
    assert 1.8 <= secs <= 3.0, out


def test_priorities_under_the_rate_limit(kube):
    """Held back by the limit (1 at once, then 5/s), normal requests all go
    before low ones (status write-back, events) issued earlier, and a
    lease request goes at once, ahead of both."""
    rc, out = kube.driver("--qps", "5", "--burst", "1", "priority", "/api/v1/namespaces/default/configmaps", "6",
                          check=True)
    got = dict(l.split(None, 1) for l in lines(out))
    assert got["order"].replace("L", "") == "n" * 6 + "l" * 6, out
    assert int(got["lease-latency-ms"]) < 150, out


def test_events_aggregate_repeats(kube):
    import json
    ns = kube.namespace("t-events")
    kube.kubectl("-n", ns, "create", "configmap", "subject")
    rc, out = kube.driver("event", ns, "subject", "7", check=True)
    evs = json.loads(kube.kubectl("-n", ns, "get", "events", "--field-selector", "involvedObject.name=subject",
                                  "-o", "json"))["items"]
    assert len(evs) == 1, evs
    e = evs[0]
    assert e["count"] == 7
    assert e["type"] == "Warning" and e["reason"] == "InvalidSpec"
    assert e["involvedObject"]["kind"] == "ConfigMap" and e["involvedObject"]["uid"]
    assert e["source"]["component"] == "highlander"


def test_label_selector_and_idle_reconnect(kube):
    """Only matching objects are seen; a watch silent for longer than the
    idle timeout (1.5 s here, 150 s by default) is replaced, and nothing is
    lost across the reconnect."""
    ns = kube.namespace("t-select")
    w = kube.driver_bg("watch", "", "v1", "configmaps", ns, "app=x", env={"DRIVER_IDLE_MS": "1500"})
    try:
        read_until(w, lambda s: any(l.startswith("SYNCED 0") for l in s))
        time.sleep(4.0)
        kube.kubectl("-n", ns, "create", "configmap", "other")
        kube.kubectl("-n", ns, "create", "configmap", "mine")
        kube.kubectl("-n", ns, "label", "configmap", "mine", "app=x")
        seen = read_until(w, lambda s: any(l.startswith("ADDED mine") for l in s), timeout=30)
    finally:
        out = stop(w)
    assert not any("other" in l for l in seen + lines(out))
    stats = [l for l in lines(out) if l.startswith("STATS")][0]
    reconnects = int(stats.split("reconnects=")[1].split()[0])
    assert reconnects >= 1, stats
