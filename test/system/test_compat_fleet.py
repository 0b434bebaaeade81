"""Mixed fleets (issue 14): replicas of the real Go K8 Highlander and of
highlander on one store and one tenant, on Redis and on one PostgreSQL
table (Go's storageType: db and its leader_locks table, shared).

Every replica's /status is polled every 100 ms for the whole run (over
60 s); each replica's claimed leading intervals are recorded from the
polls and no two may overlap, and some replica must lead most of the time.
Handovers by SIGTERM both ways: a Go leader to one of ours, ours to a Go
replica, and Go to ours again, each timed from the signal.

Skipped, saying why, when ../shared/peer is absent (the go_peer fixture)."""
import json
import os
import signal
import threading
import time
import urllib.request

import pytest

from conftest import wait_until
from lease_helpers import PgStore, RedisStore
from test_compat_go import free_port, go_peer, kubeconfig_named, our_crds_back  # noqa: F401

pytestmark = pytest.mark.cluster

POLL_S = 0.1
RUN_S = 62            # polled in total, at least
GO_TO_OURS_S = 5.0    # our retry period (2 s) plus slack
OURS_TO_GO_S = 10.0   # Go's 5 s tick, plus its leader look-up (up to 3 s when it sees none), plus slack

CONFIG = "cluster: {name: default}\nnamespace: %s\n"


class Replica:
    """Either binary, polled through /status."""
    go = False

    def __init__(self, name, port):
        self.name, self.port = name, port

    def status(self, timeout=0.5):
        with urllib.request.urlopen("http://127.0.0.1:%d/status" % self.port, timeout=timeout) as r:
            return json.loads(r.read())["data"]

    def leading(self):
        try:
            return self.status().get("isLeader") is True
        except (OSError, ValueError, KeyError):
            return False

    def answers(self):
        try:
            return "isLeader" in self.status()
        except (OSError, ValueError, KeyError):
            return False

    def alive(self):
        return self.proc.poll() is None

    def sigterm(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


class GoReplica(Replica):
    go = True

    def __init__(self, go_peer, kube, tmp, store, cfg, tenant, name):
        import subprocess
        super().__init__(name, free_port())
        os.makedirs(tmp, exist_ok=True)
        kc = os.path.join(tmp, "kubeconfig")
        kubeconfig_named(kube, "default", kc)
        env = {"PATH": os.environ["PATH"], "HOME": tmp, "HIGHLANDER_PORT": str(self.port),
               "HIGHLANDER_KUBECONFIG": kc, "HIGHLANDER_ID": name, "HIGHLANDER_TENANT": tenant}
        env.update(store.env())
        self.log_path = os.path.join(tmp, "go.log")
        self.proc = subprocess.Popen([go_peer, "--config", cfg], env=env, cwd=tmp,
                                     stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class OurReplica(Replica):
    def __init__(self, controller_factory, kube, store, cfg, tenant, name):
        env = dict(store.env(), HIGHLANDER_KUBECONFIG=kube.kubeconfig, HIGHLANDER_TENANT=tenant,
                   HIGHLANDER_CONFIG=cfg, HIGHLANDER_ID=name)
        # Our default lease timings, not the short ones of the other tests:
        # a fleet runs with what an operator gets.
        env.update({"HIGHLANDER_LEADER_LOCK_TTL": "15s", "HIGHLANDER_RENEW_DEADLINE": "10s",
                    "HIGHLANDER_LEADER_RENEW_INTERVAL": "2s"})
        self.c = controller_factory(env=env)
        super().__init__(name, self.c.port)
        self.proc = self.c.proc

    def log(self):
        return self.c.log()


class Poller(threading.Thread):
    """Polls every replica's /status every POLL_S; keeps, per replica, a
    list of (sent, received, isLeader or None when it did not answer)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.replicas = []
        self.obs = {}
        self.sweeps = []      # (time, number of replicas claiming to lead)
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, r):
        with self.lock:
            self.replicas.append(r)
            self.obs[r.name] = []

    def run(self):
        while not self.stopping.is_set():
            t0 = time.monotonic()
            with self.lock:
                rs = list(self.replicas)
            n = 0
            for r in rs:
                sent = time.monotonic()
                try:
                    v = r.status(timeout=0.3).get("isLeader") is True
                except (OSError, ValueError, KeyError):
                    v = None
                got = time.monotonic()
                self.obs[r.name].append((sent, got, v))
                n += v is True
            self.sweeps.append((t0, n))
            self.stopping.wait(max(0.0, POLL_S - (time.monotonic() - t0)))

    def stop(self):
        self.stopping.set()
        self.join(5)

    def intervals(self):
        """Per replica, the spans it certainly claimed to lead: from the
        receipt of the first poll of a run of leading answers to the sending
        of the last one (a claim was made somewhere between send and
        receipt).  A poll that says "not leader" ends a run; one that got no
        answer does not (the replica may be stopping, still leading)."""
        out = []
        for name, obs in self.obs.items():
            run = None
            for sent, got, v in obs:
                if v is True:
                    if run is None:
                        run = [got, sent]
                    run[1] = sent
                elif v is False and run is not None:
                    out.append((name, run[0], run[1]))
                    run = None
            if run is not None:
                out.append((name, run[0], run[1]))
        return sorted(out, key=lambda x: x[1])


def overlaps(intervals):
    """Pairs of intervals of two replicas that overlap in time."""
    bad = []
    for i, a in enumerate(intervals):
        for b in intervals[i + 1:]:
            if a[0] != b[0] and b[1] < a[2] and a[1] < b[2]:
                bad.append("%s [%.3f, %.3f] and %s [%.3f, %.3f]" % (a[0], a[1], a[2], b[0], b[1], b[2]))
    return bad


def handover(old, new_ones, bound, what, poller):
    """SIGTERMs old and waits for one of new_ones to lead; returns it and
    the seconds from the signal."""
    t0 = time.monotonic()
    old.sigterm()

    def leader():
        for r in new_ones:
            if r.leading():
                return r
        return None
    r = wait_until(leader, bound + 30, lambda: "%s: nobody took over; %s" % (
        what, {x.name: x.log()[-1500:] for x in [old] + new_ones}), interval=0.05)
    took = time.monotonic() - t0
    print("%s: %s leads %.2f s after the SIGTERM" % (what, r.name, took))
    old.proc.wait(40)
    return r, took


def follows(r, leader_name, what):
    """r answers /status and names leader_name as the current leader, not itself."""
    def ok():
        try:
            s = r.status()
        except (OSError, ValueError):
            return False
        return s.get("isLeader") is False and s.get("currentLeader") == leader_name
    wait_until(ok, 30, lambda: "%s follows %s (%s): %s" % (r.name, leader_name, what, r.log()[-2000:]),
               interval=0.1)


STORES = {"redis": RedisStore, "db": PgStore}


@pytest.mark.parametrize("store_name", ["redis", "db"])
def test_mixed_fleet_never_two_leaders(go_peer, kube, controller_factory, tmp_path, store_name):
    t_start = time.monotonic()
    ns = kube.namespace("compat-fleet-" + store_name)
    cfg = str(tmp_path / "config.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG % ns)
    store = STORES[store_name]()
    tenant = "fleet-" + store_name
    poller = Poller()
    gos = []
    figures = {}

    def go(name):
        g = GoReplica(go_peer, kube, str(tmp_path / name), store, cfg, tenant, name)
        gos.append(g)
        poller.add(g)
        return g

    def ours(name):
        o = OurReplica(controller_factory, kube, store, cfg, tenant, name)
        poller.add(o)
        return o

    try:
        poller.start()
        # A Go leader, and two of ours following it.
        go1 = go("go-1")
        wait_until(go1.leading, 30, lambda: "the Go leader: " + go1.log()[-3000:], interval=0.1)
        hl1, hl2 = ours("hl-1"), ours("hl-2")
        follows(hl1, "go-1", "Go leads")
        follows(hl2, "go-1", "Go leads")
        time.sleep(3)

        # Go -> ours.
        lead, figures["go_to_ours_1"] = handover(go1, [hl1, hl2], GO_TO_OURS_S, "Go -> highlander", poller)
        other = hl2 if lead is hl1 else hl1

        # A Go replica joins (two of ours and a Go on the tenant), then
        # ours step down, the follower first: the Go replica must take over.
        go2 = go("go-2")
        wait_until(go2.answers, 30, lambda: "the Go replica: " + go2.log()[-3000:], interval=0.1)
        follows(go2, lead.name, "ours lead")
        time.sleep(2)
        other.sigterm()
        other.proc.wait(20)
        _, figures["ours_to_go"] = handover(lead, [go2], OURS_TO_GO_S, "highlander -> Go", poller)

        # Ours joins again and takes over from the Go leader.
        hl3 = ours("hl-3")
        follows(hl3, "go-2", "Go leads again")
        time.sleep(2)
        _, figures["go_to_ours_2"] = handover(go2, [hl3], GO_TO_OURS_S, "Go -> highlander again", poller)

        # The rest of the run with one of ours leading and a Go follower.
        go3 = go("go-3")
        wait_until(go3.answers, 30, lambda: "the Go replica: " + go3.log()[-3000:], interval=0.1)
        remaining = RUN_S - (time.monotonic() - poller.sweeps[0][0])
        if remaining > 0:
            time.sleep(remaining)
        assert hl3.leading() and not go3.leading(), "the leader changed with nobody stopped"
    finally:
        poller.stop()
        for g in gos:
            g.kill()
        store.stop()
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)

    polled = poller.sweeps[-1][0] - poller.sweeps[0][0]
    iv = poller.intervals()
    bad = overlaps(iv)
    assert not bad, "two leaders at one instant:\n" + "\n".join(bad)
    # Some replica led most of the time: from the first leader on, the
    # sweeps without one are the handovers' (bounded above) and little else.
    first = next(i for i, (_, n) in enumerate(poller.sweeps) if n)
    after = poller.sweeps[first:]
    led = sum(1 for _, n in after if n) / len(after)
    names = sorted(set(x[0] for x in iv))
    print("%s: polled %.1f s, %d sweeps, led %.1f%% of them, leaders %s, handovers %s, test %.1f s" % (
        store_name, polled, len(poller.sweeps), 100 * led, names,
        {k: round(v, 2) for k, v in figures.items()}, time.monotonic() - t_start))
    assert polled >= 60, polled
    assert figures["go_to_ours_1"] <= GO_TO_OURS_S and figures["go_to_ours_2"] <= GO_TO_OURS_S, figures
    assert figures["ours_to_go"] <= OURS_TO_GO_S, figures
    assert led >= 0.8, "a leader in only %.1f%% of the sweeps" % (100 * led)
    assert {"go-1", "go-2", "hl-3"} <= set(names), names
