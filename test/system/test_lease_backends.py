"""The lease system tests, for every store: Redis, PostgreSQL and the
Kubernetes Lease.  Each test ends with the leadership overlap checker."""
import os
import signal
import time

import pytest

from conftest import ASAN, wait_until
from lease_helpers import (LEASE_S, RENEW_DEADLINE_S, Cluster, LeaseStore, PgStore, RedisStore, mono_ns,
                           read_intervals)

_counter = [0]


@pytest.fixture(params=["redis", "db", "lease"])
def store(request):
    if request.param == "redis":
        s = RedisStore()
    elif request.param == "db":
        s = PgStore()
    else:
        kube = request.getfixturevalue("kube")
        _counter[0] += 1
        s = LeaseStore(kube, kube.namespace("lease-%d" % _counter[0]))
    yield s
    s.stop()


def make(factory, store, n=3, tenant="default"):
    return Cluster(factory, None, n=n, tenant=tenant, store=store)


def test_exactly_one_leader(controller_factory, store):
    cl = make(controller_factory, store)
    leader = cl.wait_one_leader(timeout=15)
    time.sleep(2.0)
    assert cl.leaders() == [leader]
    for c in cl.replicas:
        d = c.get_json("/status")[1]["data"]
        assert d["currentLeader"] == leader.rid and d["storageType"] == store.name
    cl.check()


def test_kill9_failover(controller_factory, store):
    cl = make(controller_factory, store)
    leader = cl.wait_one_leader(timeout=15)
    time.sleep(1.0)
    leader.proc.kill()
    killed = mono_ns()
    others = [c for c in cl.replicas if c is not leader]
    new = cl.wait_one_leader(timeout=LEASE_S + 5, among=others)
    iv = cl.check()
    # The dead leader renewed at most one retry period before the kill, so
    # the record expired at most one lease after the kill.
    took = (iv[-1][1] - killed) / 1e9
    assert took <= LEASE_S + 0.5, "took %.3f s" % took
    assert iv[-1][0] > iv[-2][0]
    assert new.get_json("/status")[1]["data"]["lastLeader"] == leader.rid


def test_sigterm_handover(controller_factory, store):
    cl = make(controller_factory, store)
    leader = cl.wait_one_leader(timeout=15)
    time.sleep(0.5)
    assert leader.terminate() == 0
    others = [c for c in cl.replicas if c is not leader]
    cl.wait_one_leader(timeout=3, among=others)
    iv = cl.check()
    gap = (iv[-1][1] - iv[-2][2]) / 1e9
    assert gap <= 0.3, "handover took %.3f s" % gap
    assert "released the lease" in leader.log()


def test_sigstop_beyond_lease(controller_factory, store):
    cl = make(controller_factory, store)
    leader = cl.wait_one_leader(timeout=15)
    leader.proc.send_signal(signal.SIGSTOP)
    others = [c for c in cl.replicas if c is not leader]
    cl.wait_one_leader(timeout=LEASE_S + 5, among=others)
    time.sleep(0.5)
    leader.proc.send_signal(signal.SIGCONT)
    time.sleep(1.0)
    assert leader.get_json("/status")[1]["data"]["isLeader"] is False
    assert len(cl.leaders()) == 1
    cl.check()


def test_store_outage(controller_factory, store):
    cl = make(controller_factory, store, n=2)
    cl.wait_one_leader(timeout=15)
    time.sleep(0.5)
    store.kill()
    killed = mono_ns()
    wait_until(lambda: cl.leaders() == [], RENEW_DEADLINE_S + 3, "a leader without its store")
    iv = read_intervals(cl.log_path)
    assert iv[-1][2] is not None and iv[-1][2] <= killed + int(RENEW_DEADLINE_S * 1e9)
    for c in cl.replicas:
        assert c.get("/readyz")[0] == 503
        assert c.get_json("/status")[1]["data"]["dbConnected"] is False
    store.start()
    cl.wait_one_leader(timeout=LEASE_S + 30)
    cl.check()


def test_tenants(controller_factory, store):
    a = make(controller_factory, store, n=2, tenant="alpha")
    b = make(controller_factory, store, n=2, tenant="beta")
    la = a.wait_one_leader(timeout=15)
    lb = b.wait_one_leader(timeout=15)
    time.sleep(1.0)
    assert a.leaders() == [la] and b.leaders() == [lb]
    a.check()
    b.check()


@pytest.mark.skipif(ASAN, reason="libfaketime cannot be preloaded before the ASan runtime")
def test_pg_clock_skew_does_not_steal_a_live_lease(controller_factory):
    """A replica whose wall clock is an hour ahead (libfaketime) must not
    take over: every comparison of time happens on the database server."""
    store = PgStore()
    try:
        cl = make(controller_factory, store, n=1)
        leader = cl.wait_one_leader(timeout=15)
        lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
        assert os.path.exists(lib), "faketime is required: make deps"
        skewed = cl.add("skewed", {"LD_PRELOAD": lib, "FAKETIME": "+1h", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                                   "FAKETIME_NO_CACHE": "1"})
        time.sleep(3.0)
        assert cl.leaders() == [leader]
        d = skewed.get_json("/status")[1]["data"]
        assert d["currentLeader"] == leader.rid and d["isLeader"] is False
        assert d["uptime"] < 100e9  # uptime (ns) is monotonic: the skew does not show
        leader.terminate()
        cl.wait_one_leader(timeout=5, among=[skewed])
        cl.check()
    finally:
        store.stop()
