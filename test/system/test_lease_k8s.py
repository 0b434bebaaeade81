"""The Kubernetes Lease store against the real control plane: a Lease
deleted behind its holder's back, a replica that never saw the Lease, the
fencing-token annotation and leaseTransitions, and a Lease made by client-go
(no annotation).  Skipped when the local cluster cannot start."""
import json
import signal
import time

import pytest

from conftest import holds_for, wait_until
from lease_helpers import LEASE_S, RENEW_DEADLINE_S, Cluster, LeaseStore, mono_ns, read_intervals

TOKEN_ANNOTATION = "k8-highlander.io/fencing-token"
LEASE_NAME = "highlander-default"
_counter = [0]


@pytest.fixture
def store(request):
    try:
        kube = request.getfixturevalue("kube")
    except Exception as e:  # cluster.sh up failed, binaries missing, timeout
        pytest.skip("the local control plane did not start: %s" % str(e)[-300:])
    _counter[0] += 1
    s = LeaseStore(kube, kube.namespace("lease-k8s-%d" % _counter[0]))
    yield s
    s.stop()


def make(factory, store, n=3):
    return Cluster(factory, None, n=n, store=store)


def get_lease(store, name=LEASE_NAME):
    """The Lease as JSON, or None when it does not exist."""
    out = store.kube.kubectl("get", "lease", name, "-n", store.ns, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def lease_token(lease):
    return int(lease["metadata"]["annotations"][TOKEN_ANNOTATION])


def status(c):
    return c.get_json("/status")[1]["data"]


def wait_leader_stable(cl, timeout):
    """One leader whose Lease shows it as the holder."""
    leader = cl.wait_one_leader(timeout=timeout)
    lease = wait_until(lambda: (lambda x: x and x["spec"].get("holderIdentity") == leader.rid and x)(
        get_lease(cl.store)), 5, "the Lease does not show %s as its holder" % leader.rid, interval=0.1)
    return leader, lease


def wait_stopped(c, timeout):
    wait_until(lambda: not status(c)["isLeader"], timeout, "%s still leads" % c.rid)


def test_lease_deleted_under_the_leader(controller_factory, store):
    """kubectl delete lease while a leader holds: the leader stops at its
    next renewal, nobody recreates the Lease before one full lease after the
    deletion, a new leader comes within about three lease durations, tokens
    grow and no two leaderships overlap."""
    cl = make(controller_factory, store)
    leader, lease = wait_leader_stable(cl, timeout=15)
    old_token = lease_token(lease)
    time.sleep(1.0)
    before = mono_ns()
    store.kube.kubectl("delete", "lease", LEASE_NAME, "-n", store.ns)
    after = mono_ns()
    # The old leader finds the Lease gone when it renews (every 0.4 s).
    wait_stopped(leader, RENEW_DEADLINE_S + 1)
    new = cl.wait_one_leader(timeout=3 * LEASE_S)
    iv = cl.check()
    since = [x for x in iv if x[1] > before]
    assert len(since) == 1, "leaderships since the deletion: %s" % since
    prev, cur = iv[-2], iv[-1]
    assert prev[0] == old_token, "the last leadership before the deletion was not token %d: %s" % (old_token, iv)
    assert prev[2] is not None and prev[2] <= after + int(RENEW_DEADLINE_S * 1e9), \
        "the old leader kept its authority %.3f s after the deletion" % ((prev[2] - after) / 1e9)
    waited = (cur[1] - before) / 1e9
    assert waited >= LEASE_S, "a new leadership began %.3f s after the deletion, before one lease (%.1f s)" % (
        waited, LEASE_S)
    assert waited <= 3 * LEASE_S, "the new leader took %.3f s" % waited
    assert cur[0] > old_token
    lease = get_lease(store)
    assert lease is not None and lease["spec"]["holderIdentity"] == new.rid
    assert lease_token(lease) == cur[0] == status(new)["fencingToken"]
    # A recreated Lease starts counting transitions again, as client-go's does.
    assert lease["spec"]["leaseTransitions"] == 0
    time.sleep(1.0)
    assert cl.leaders() == [new]
    cl.check()


def test_lease_recreated_empty_is_not_a_release(controller_factory, store):
    """The Lease is deleted under its leader and at once made again with no
    holder (kubectl apply of a manifest, a backup restore): an empty holder
    on a new object (new uid) is no proof of a release, so nobody takes it
    before one lease after the deletion."""
    cl = make(controller_factory, store)
    leader, lease = wait_leader_stable(cl, timeout=15)
    old_token = lease_token(lease)
    uid = lease["metadata"]["uid"]
    time.sleep(1.0)
    manifest = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": LEASE_NAME, "namespace": store.ns},
                "spec": {"holderIdentity": "", "leaseDurationSeconds": int(LEASE_S), "leaseTransitions": 0}}
    before = mono_ns()
    store.kube.kubectl("delete", "lease", LEASE_NAME, "-n", store.ns)
    store.kube.kubectl("create", "-f", "-", input=json.dumps(manifest).encode())
    after = mono_ns()
    lease = get_lease(store)
    assert lease["metadata"]["uid"] != uid
    wait_stopped(leader, RENEW_DEADLINE_S + 1)
    new = cl.wait_one_leader(timeout=3 * LEASE_S)
    iv = cl.check()
    since = [x for x in iv if x[1] > before]
    assert len(since) == 1, "leaderships since the deletion: %s" % since
    prev, cur = iv[-2], iv[-1]
    assert prev[0] == old_token
    assert prev[2] is not None and prev[2] <= after + int(RENEW_DEADLINE_S * 1e9)
    waited = (cur[1] - before) / 1e9
    assert waited >= LEASE_S, "the recreated Lease was taken %.3f s after the deletion" % waited
    assert cur[0] > old_token
    lease = get_lease(store)
    assert lease["spec"]["holderIdentity"] == new.rid and lease_token(lease) == cur[0]
    cl.check()


def test_replica_that_never_saw_the_lease_waits(controller_factory, store):
    """The leader is paused (it still believes it leads), the Lease is
    deleted and a new replica starts: it never saw the Lease, so it must not
    take it within one lease duration of starting, even though the API
    server says there is none."""
    cl = make(controller_factory, store, n=1)
    old, lease = wait_leader_stable(cl, timeout=15)
    old_token = lease_token(lease)
    old.proc.send_signal(signal.SIGSTOP)
    try:
        store.kube.kubectl("delete", "lease", LEASE_NAME, "-n", store.ns)
        started = mono_ns()
        new = cl.add("late")
        # Not before one lease from its first sight of the missing Lease.
        def not_leading():
            assert not status(new)["isLeader"], "the new replica took a Lease it never saw at once"
        holds_for(not_leading, LEASE_S * 0.9)
        assert get_lease(store) is None, "the Lease was recreated within the first lease duration"
        cl.wait_one_leader(timeout=LEASE_S + 5, among=[new])
    finally:
        old.proc.send_signal(signal.SIGCONT)
    iv = read_intervals(cl.log_path)
    cur = iv[-1]
    assert cur[0] > old_token
    waited = (cur[1] - started) / 1e9
    assert waited >= LEASE_S, "the new replica led %.3f s after it started" % waited
    assert "not taking it" in new.log()
    # The paused leader notices its deadline passed and does not act.
    time.sleep(1.0)
    assert status(old)["isLeader"] is False
    assert cl.leaders() == [new]
    cl.check()


def test_token_annotation_and_transitions(controller_factory, store):
    """The token is in the annotation, above the wall clock in ms at each
    acquisition; it stays fixed while renewing; leaseTransitions counts
    acquisitions by one, as client-go does, and stays an int32."""
    wall_ms = int(time.time() * 1000)
    cl = make(controller_factory, store, n=2)
    leader, lease = wait_leader_stable(cl, timeout=15)
    tok1 = lease_token(lease)
    assert tok1 > wall_ms, "token %d not above the wall clock %d" % (tok1, wall_ms)
    assert tok1 == status(leader)["fencingToken"]
    tr1 = lease["spec"]["leaseTransitions"]
    assert 0 <= tr1 < 1000
    rv1 = lease["metadata"]["resourceVersion"]
    time.sleep(1.0)
    lease = get_lease(store)
    assert lease["metadata"]["resourceVersion"] != rv1, "the leader did not renew"
    assert lease_token(lease) == tok1 and lease["spec"]["leaseTransitions"] == tr1
    # A handover: release, then the other replica acquires.
    wall_ms = int(time.time() * 1000)
    assert leader.terminate() == 0
    other = [c for c in cl.replicas if c is not leader]
    new, lease = wait_leader_stable(cl, timeout=5)
    assert new is other[0]
    tok2 = lease_token(lease)
    assert tok2 > tok1 and tok2 > wall_ms
    assert lease["spec"]["leaseTransitions"] == tr1 + 1
    assert lease["spec"]["leaseTransitions"] < 1000
    cl.check()


def test_lease_made_by_client_go(controller_factory, store):
    """A Lease without the annotation (client-go, the Go controller) is read
    with token = leaseTransitions; a live holder is respected until it has
    not changed for leaseDurationSeconds on our clock; taking it writes the
    annotation and adds one to leaseTransitions."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    manifest = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": LEASE_NAME, "namespace": store.ns},
                "spec": {"holderIdentity": "go-controller", "leaseDurationSeconds": int(LEASE_S),
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 7}}
    store.kube.kubectl("create", "-f", "-", input=json.dumps(manifest).encode())
    created = mono_ns()
    cl = make(controller_factory, store, n=1)
    c = cl.replicas[0]
    def not_leading():
        assert not status(c)["isLeader"], "took a Lease held by a live client-go holder"
    holds_for(not_leading, 0.8 * LEASE_S)
    assert status(c)["currentLeader"] == "go-controller"
    cl.wait_one_leader(timeout=LEASE_S + 5)
    iv = read_intervals(cl.log_path)
    assert (iv[-1][1] - created) / 1e9 >= LEASE_S
    lease = get_lease(store)
    assert lease["spec"]["holderIdentity"] == c.rid
    assert lease["spec"]["leaseTransitions"] == 8
    assert lease_token(lease) == iv[-1][0] > 7
    cl.check()
