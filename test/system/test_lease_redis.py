"""Leader election on a real redis-server: exactly one leader, failover,
handover, self-fencing, store outages and tenants.  Every test ends with
the overlap checker on the replicas' leadership logs."""
import json
import re
import socket
import time

import pytest

from conftest import free_port, wait_until
from lease_helpers import LEASE_S, Cluster, RedisServer


@pytest.fixture
def redis():
    r = RedisServer()
    yield r
    r.stop()


def test_record_format_and_metrics(controller_factory, redis):
    """What only Redis has: the Go controller's record shape, the state key
    and the metrics.  (Election, failover, handover and outages run for
    every store in test_lease_backends.py; data loss in
    test_lease_data_loss.py.)"""
    cl = Cluster(controller_factory, redis, n=2)
    leader = cl.wait_one_leader(timeout=LEASE_S + 8)
    time.sleep(1.0)  # renewals
    d = leader.get_json("/status")[1]["data"]
    assert d["dbConnected"] and d["fencingToken"] >= time.time() * 1000 - 60000
    for c in cl.replicas:
        if c is not leader:
            assert c.get("/readyz")[0] == 200
    state = redis.cmd("GET", "highlander-leader-state:default").split("|")
    assert int(state[0]) == d["fencingToken"] and state[2] == "0", state
    raw = json.loads(redis.cmd("GET", "highlander-leader-lock:default"))
    assert raw["value"] == leader.rid
    assert raw["ttl"] == 2_000_000_000
    assert set(raw) >= {"value", "clusterName", "createdAt", "updatedAt", "expiresAt", "ttl", "version",
                        "fencingToken"}
    text = leader.get("/metrics")[2].decode()
    assert "k8_highlander_is_leader 1" in text
    assert "k8_highlander_fencing_token %d" % d["fencingToken"] in text
    # Go's operation names: SETNX to acquire, EXPIRE to renew.
    assert re.search(r'k8_highlander_db_operations_total\{operation="setNX"\} [1-9]', text), text
    assert re.search(r'k8_highlander_db_operations_total\{operation="expire"\} [1-9]', text), text
    cl.check()


def test_remains_follower_never_leads(controller_factory, redis):
    cl = Cluster(controller_factory, redis, n=1, extra_env={"HIGHLANDER_REMAINS_FOLLOWER": "true"})
    time.sleep(1.5)
    assert cl.leaders() == []
    assert cl.replicas[0].get("/readyz")[0] == 200  # knows nobody leads
    cl.add("leader-x", {"HIGHLANDER_REMAINS_FOLLOWER": "false"})
    leader = cl.wait_one_leader()
    assert leader.rid == "leader-x"
    time.sleep(1.0)
    assert cl.replicas[0].get_json("/status")[1]["data"]["currentLeader"] == "leader-x"


def test_go_controller_lock_is_respected(controller_factory, redis):
    """A lock written the Go controller's way (no fencingToken) is honoured."""
    go_lock = json.dumps({"value": "go-replica", "clusterName": "default", "createdAt": "2026-01-01T00:00:00Z",
                          "updatedAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-01-01T00:00:03Z",
                          "ttl": 3000000000, "version": 1})
    redis.cmd("SET", "highlander-leader-lock:default", go_lock, "PX", "3000")
    cl = Cluster(controller_factory, redis, n=1)
    time.sleep(1.0)
    assert cl.leaders() == []
    assert cl.replicas[0].get_json("/status")[1]["data"]["currentLeader"] == "go-replica"
    cl.wait_one_leader(timeout=5)  # after the Go lock expires


def test_dbinfo_masks_password(controller_factory):
    r = RedisServer(extra=["--requirepass", "s3cr3t-pw"])
    try:
        c = controller_factory(env={"HIGHLANDER_REDIS_ADDR": "redis://:s3cr3t-pw@127.0.0.1:%d/0" % r.port})
        wait_until(lambda: c.get_json("/status")[1]["data"]["isLeader"], 5, lambda: c.log()[-2000:])
        status, doc = c.get_json("/api/dbinfo")
        assert doc["data"]["connected"] is True
        assert doc["data"]["type"] == "redis"
        text = json.dumps(doc) + c.log() + c.get("/debug/status")[2].decode()
        assert "s3cr3t-pw" not in text
    finally:
        r.stop()


def test_wrong_password_is_reported(controller_factory):
    r = RedisServer(extra=["--requirepass", "right"])
    try:
        c = controller_factory(env={"HIGHLANDER_REDIS_ADDR": "127.0.0.1:%d" % r.port,
                                    "HIGHLANDER_REDIS_PASSWORD": "wrong-secret"})
        time.sleep(1.0)
        assert c.get("/readyz")[0] == 503
        assert b"not ready - lease store unavailable" in c.get("/readyz")[2]
        assert "wrong-secret" not in c.log()
    finally:
        r.stop()


def test_acl_username_and_database_index(controller_factory):
    """An ACL user with a password and a non-zero database, from a redis:// URL."""
    r = RedisServer(extra=["--user", "default", "off", "--user", "hl", "on", ">hl-pass", "~*", "&*", "+@all"])
    try:
        c = controller_factory(env={"HIGHLANDER_REDIS_ADDR": "redis://hl:hl-pass@127.0.0.1:%d/3" % r.port})
        wait_until(lambda: c.get_json("/status")[1]["data"]["isLeader"], 5, lambda: c.log()[-2000:])
        assert c.get_json("/status")[1]["data"]["isLeader"] is True
        out = r.cmd("--user", "hl", "--pass", "hl-pass", "-n", "3", "EXISTS", "highlander-leader-lock:default")
        assert out.endswith("1")
        assert "hl-pass" not in c.log()
    finally:
        r.stop()


def test_unreachable_store_is_logged_and_counted_from_the_first_attempt(controller_factory):
    """Nothing listens: every failed connect is a warning, a failure in
    /api/dbinfo and a db_errors_total sample with Go's labels (the read
    that could not be made, a refused connection)."""
    port = free_port()
    c = controller_factory(env={"HIGHLANDER_REDIS_ADDR": "127.0.0.1:%d" % port})
    time.sleep(1.5)
    db = c.get_json("/api/dbinfo")[1]["data"]
    assert db["connected"] is False and db["failures"] >= 2, db
    assert db["lastError"], db
    assert c.log().count("cannot connect to the store") >= 2, c.log()[-2000:]
    text = c.get("/metrics")[2].decode()
    assert re.search(r'k8_highlander_db_errors_total\{operation="get",error_type="connection_refused"\} [1-9]', text)
    assert c.get("/readyz")[0] == 503


def test_silent_peer_is_not_a_connected_store(controller_factory):
    """A proxy in front of a dead Redis accepts and never answers: the store
    is not connected (INFO never answers), and that is counted."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    try:
        c = controller_factory(env={"HIGHLANDER_REDIS_ADDR": "127.0.0.1:%d" % srv.getsockname()[1]})
        time.sleep(2.5)  # past one command timeout (1 s)
        db = c.get_json("/api/dbinfo")[1]["data"]
        assert db["connected"] is False, db
        assert db["failures"] >= 1 and "timed out" in (db["lastError"] or ""), db
        assert c.get("/readyz")[0] == 503
        assert "lease: store connected" not in c.log()
    finally:
        srv.close()
