"""Probes, status routes and the JSON envelope, against the real binary."""
import json
import time

from conftest import wait_until
from lease_helpers import RedisStore


STATUS_KEYS = {"isLeader", "leaderSince", "lastLeaderTransition", "uptime", "leaderID", "currentLeader",
               "lastLeader", "clusterName", "clusterHealth", "dbConnected", "storageType", "controllerState",
               "fencingToken", "readyForTraffic", "version", "buildInfo", "failoverCount",
               "leadershipTransitions", "lastLeadershipChangeReason"}


def test_probes(controller):
    assert controller.get("/healthz")[0] == 200
    assert controller.get("/healthz")[2] == b"ok"
    for path in ("/readyz", "/health"):
        status, headers, body = controller.get(path)
        assert status in (200, 503)
        if status == 503:
            assert body.startswith(b"not ready - ")


def test_status_shape(controller_factory):
    c = controller_factory(env={"HIGHLANDER_ID": "replica-7", "HIGHLANDER_CLUSTER_NAME": "east"})
    for path in ("/status", "/api/status"):
        status, doc = c.get_json(path)
        assert status == 200
        assert doc["status"] == "success"
        data = doc["data"]
        assert STATUS_KEYS <= set(data), STATUS_KEYS - set(data)
        assert data["leaderID"] == "replica-7"
        assert data["clusterName"] == "east"
        assert data["storageType"] == "redis"
        assert isinstance(data["fencingToken"], int)
        # The Go controller's JSON types: a Duration in nanoseconds, a bool,
        # a string, its two states, a map of workloads per type.
        assert isinstance(data["uptime"], int) and data["uptime"] >= 0
        assert isinstance(data["clusterHealth"], bool)
        assert isinstance(data["buildInfo"], str) and data["build"]["version"]
        assert data["controllerState"] in ("Normal", "Degraded") and data["state"] == "running"
        assert isinstance(data["workloadStatus"], dict)
        for key in ("currentLeader", "lastLeader", "lastLeadershipChangeReason", "leaderSince",
                    "lastLeaderTransition"):
            assert isinstance(data[key], str), key


def test_debug_status(controller):
    status, doc = controller.get_json("/debug/status")
    assert status == 200
    d = doc["data"]
    assert d["memory"]["rssBytes"] > 0
    assert d["memory"]["peakRssBytes"] >= d["memory"]["rssBytes"] // 2
    assert d["openFds"] > 0
    loop = d["eventLoop"]
    assert loop["iterations"] > 0
    assert loop["activeHandles"] > 0
    assert loop["lagP99Ms"] >= 0 and loop["lagMaxMs"] >= loop["lagP99Ms"]
    assert isinstance(d["leadershipHistory"], list)
    assert d["startTime"].endswith("Z")
    # The Go controller's keys, with this process's figures.
    assert d["healthStatus"]["leaderID"] == doc["data"]["leaderID"]
    assert d["goroutineCount"] >= 1
    assert d["memoryStats"]["alloc"] > 0 and d["memoryStats"]["sys"] >= d["memoryStats"]["alloc"]
    assert d["memoryStats"]["numGC"] == 0
    assert d["serverInfo"]["port"] == str(controller.port)


def test_cluster_health_is_the_kubernetes_api(controller_factory, tmp_path):
    """clusterHealth and k8_highlander_cluster_health{cluster} say whether
    the Kubernetes API answers (as in the Go controller), not the store:
    with the store up and an API server that refuses connections, both
    are false/0 and the reason is logged; without a kubeconfig, too."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "
                          "'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\n"
                          "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    store = RedisStore()
    try:
        unreachable = controller_factory(env=dict(store.env(), HIGHLANDER_KUBECONFIG=str(kubeconfig),
                                                  HIGHLANDER_TENANT="kh-a"))
        none = controller_factory(env=dict(store.env(), HIGHLANDER_TENANT="kh-b"))
        check_unhealthy(unreachable, none)
    finally:
        store.stop()


def check_unhealthy(unreachable, none):
    for c in (unreachable, none):
        wait_until(lambda: c.get_json("/status")[1]["data"]["isLeader"], 10, c.log)
        d = c.get_json("/status")[1]["data"]
        assert d["dbConnected"] is True and d["clusterHealth"] is False, d
        assert 'k8_highlander_cluster_health{cluster="default"} 0' in c.get("/metrics")[2].decode()
    wait_until(lambda: "the Kubernetes API of cluster default is unreachable" in unreachable.log(), 10,
               unreachable.log)


def test_errors_are_json(controller):
    status, headers, body = controller.get("/no/such/path")
    assert status == 404
    assert json.loads(body) == {"status": "error", "error": "not found"}
    status, headers, body = controller.request("POST", "/status", body=b"{}")
    assert status == 405
    assert json.loads(body)["status"] == "error"
    assert "GET" in headers["Allow"]


def test_head(controller):
    status, headers, body = controller.request("HEAD", "/status")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) > 10


def test_keepalive_and_pipelining(controller):
    import socket
    s = socket.create_connection(("127.0.0.1", controller.port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /status HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"\r\n\r\nok") < data.index(b"isLeader")


def test_bearer_token(controller_factory):
    c = controller_factory(env={"HIGHLANDER_API_TOKEN": "t0ken"})
    assert c.get("/api/status")[0] == 401
    assert c.get("/debug/status")[0] == 401
    assert c.get("/api/status", {"Authorization": "Bearer wrong"})[0] == 401
    assert c.get("/api/status", {"Authorization": "Bearer t0ken"})[0] == 200
    assert c.get("/debug/status", {"Authorization": "Bearer t0ken"})[0] == 200
    # Probes and metrics stay open.
    assert c.get("/healthz")[0] == 200
    assert c.get("/metrics")[0] == 200
    assert c.get("/status")[0] == 200
    # The dashboard's page and files are open; its data is not.
    assert c.get("/")[0] == 200
    assert c.get("/assets/app.js")[0] == 200
    assert c.get("/api/dashboard")[0] == 401
    assert c.get("/api/dashboard", {"Authorization": "Bearer t0ken"})[0] == 200


def test_dashboard_files(controller):
    """The dashboard is served from the binary with a strict CSP; every 200
    carries an ETag and If-None-Match gets 304 with no body."""
    status, headers, body = controller.get("/")
    h = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and h["content-type"].startswith("text/html")
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert b'<script src="/assets/app.js"' in body and b"http://" not in body and b"https://" not in body
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")):
        status, headers, body = controller.get("/assets/" + name)
        h = {k.lower(): v for k, v in headers.items()}
        assert status == 200 and h["content-type"].startswith(ctype) and body, name
        assert b"innerHTML" not in body and b"https://" not in body, name
        tag = h["etag"]
        status, headers, body = controller.get("/assets/" + name, {"If-None-Match": tag})
        assert status == 304 and body == b"", name
        assert controller.get("/assets/" + name, {"If-None-Match": '"other"'})[0] == 200
    assert controller.get("/assets/nope.js")[0] == 404
    assert controller.get("/assets/../api/status")[0] == 404
    status, doc = controller.get_json("/api/dashboard")
    assert status == 200 and set(doc["data"]) == {"status", "store", "workloads", "pods", "history", "timeline"}
    assert controller.request("POST", "/")[0] == 405


def test_timeline_route(controller_factory):
    """/api/timeline: the data of the dashboard's pictures, the same as in
    /api/dashboard; a leader that has run for a moment has one open span of
    its own (the first it saw)."""
    from lease_helpers import LEASE_ENV, RedisServer
    redis = RedisServer()
    try:
        controller = controller_factory(env=dict(LEASE_ENV, HIGHLANDER_REDIS_ADDR="127.0.0.1:%d" % redis.port,
                                                 HIGHLANDER_ID="tl-1"))
        check_timeline(controller)
    finally:
        redis.stop()


def check_timeline(controller):
    def timeline():
        status, doc = controller.get_json("/api/timeline")
        assert status == 200
        return doc["data"]["spans"] and doc["data"]
    tl = wait_until(timeline, 10, "a span in /api/timeline", interval=0.1)
    assert tl["bucketSeconds"] == 10 and tl["windowSeconds"] == 3600
    assert isinstance(tl["series"], list)
    own = tl["spans"][-1]
    assert own["end"] is None and own["how"] == "first" and own["gapSeconds"] is None and own["ended"] == ""
    assert own["fencingToken"] > 0 and abs(own["start"] - time.time()) < 60
    assert own["leader"] == "tl-1"
    assert controller.get_json("/api/dashboard")[1]["data"]["timeline"]["spans"][-1]["leader"] == "tl-1"


def test_dashboard_polls_get_304_while_nothing_changes(controller):
    """The dashboard's data leaves out what changes by itself (uptime, ages),
    so an idle controller answers its polls with 304 and no body."""
    answers = []
    for _ in range(3):  # a store reconnect attempt between two polls may change the data: try again
        status, headers, body = controller.get("/api/dashboard")
        doc = json.loads(body)["data"]
        assert "uptime" not in doc["status"] and doc["status"]["startTime"]
        assert all("age" not in p for p in doc["pods"])
        time.sleep(0.05)  # uptime, were it there, would have changed
        answers.append(controller.get("/api/dashboard", {"If-None-Match": headers["ETag"]})[::2])
        if answers[-1] == (304, b""):
            break
    assert answers[-1] == (304, b""), answers
