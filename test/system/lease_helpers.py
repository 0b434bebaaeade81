"""Real Redis servers and the leadership-interval checker for lease tests."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from conftest import Controller, free_port

LEASE_ENV = {"HIGHLANDER_LEADER_LOCK_TTL": "2s", "HIGHLANDER_RENEW_DEADLINE": "1200ms",
             "HIGHLANDER_LEADER_RENEW_INTERVAL": "400ms"}
LEASE_S = 2.0
RENEW_DEADLINE_S = 1.2


class RedisServer:
    def __init__(self, port=None, extra=()):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="hl-redis-")
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self):
        exe = shutil.which("redis-server")
        assert exe, "redis-server is required: make deps"
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir] + self.extra,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.cmd("PING") in ("PONG", "NOAUTH Authentication required."):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def cmd(self, *args):
        exe = shutil.which("redis-cli")
        out = subprocess.run([exe, "-p", str(self.port), "--raw"] + [str(a) for a in args],
                             capture_output=True, timeout=5)
        if out.returncode != 0 or out.stdout.startswith(b"Could not connect"):
            raise OSError(out.stderr.decode() or out.stdout.decode())
        return out.stdout.decode().strip()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def read_intervals(path):
    """Leadership intervals from a HIGHLANDER_LEADERSHIP_LOG file: a list of
    [token, start_ns, stop_ns or None] ordered by start.  Lines: lead-start,
    lead-stop (authority ended: release or fence deadline) and lead-until
    (the authority deadline after each confirmed renewal)."""
    starts, stops, until = {}, {}, {}
    if not os.path.exists(path):
        return []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3:
                continue
            kind, token, ns = parts[0], int(parts[1]), int(parts[2])
            if kind == "lead-start":
                assert token not in starts, "token %d started twice" % token
                starts[token] = ns
            elif kind == "lead-until":
                # A process killed with -9 writes no lead-stop; its authority
                # provably ended at the last deadline it confirmed.
                until[token] = max(until.get(token, 0), ns)
            elif kind == "lead-stop":
                assert token not in stops, "token %d stopped twice" % token
                stops[token] = ns
    out = [[t, s, stops.get(t)] for t, s in starts.items()]
    for iv in out:
        if iv[2] is not None and iv[0] in until:
            assert iv[2] <= until[iv[0]], "token %d stopped after its own deadline" % iv[0]
    last = max(starts.values()) if starts else None
    for iv in out:
        if iv[2] is None and iv[1] != last and iv[0] in until:
            iv[2] = until[iv[0]]
    out.sort(key=lambda x: x[1])
    return out


def check_no_overlap(path):
    """No two leadership intervals overlap and tokens strictly increase."""
    iv = read_intervals(path)
    for i in range(1, len(iv)):
        prev, cur = iv[i - 1], iv[i]
        assert prev[2] is not None, "token %d never stopped but token %d started" % (prev[0], cur[0])
        assert cur[1] > prev[2], "overlap: token %d started %.3f ms before token %d stopped" % (
            cur[0], (prev[2] - cur[1]) / 1e6, prev[0])
        assert cur[0] > prev[0], "tokens not increasing: %d after %d" % (cur[0], prev[0])
    return iv


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Cluster:
    """N replicas of one tenant on one Redis, sharing a leadership log."""

    def __init__(self, factory, redis, n=3, tenant="default", extra_env=None, log_path=None):
        self.redis = redis
        self.log_path = log_path or os.path.join(tempfile.mkdtemp(prefix="hl-lead-"), "leadership.log")
        self.replicas = []
        self.factory = factory
        self.tenant = tenant
        self.extra_env = extra_env or {}
        for i in range(n):
            self.add("r%d-%s" % (i, tenant))

    def add(self, rid, override=None):
        env = dict(LEASE_ENV)
        env.update({"HIGHLANDER_ID": rid, "HIGHLANDER_REDIS_ADDR": "127.0.0.1:%d" % self.redis.port,
                    "HIGHLANDER_TENANT": self.tenant, "HIGHLANDER_LEADERSHIP_LOG": self.log_path})
        env.update(self.extra_env)
        env.update(override or {})
        c = self.factory(env=env)
        c.rid = rid
        self.replicas.append(c)
        return c

    def alive(self):
        return [c for c in self.replicas if c.proc.poll() is None]

    def leaders(self, among=None):
        out = []
        for c in among or self.alive():
            try:
                status, doc = c.get_json("/status")
                if doc["data"]["isLeader"]:
                    out.append(c)
            except (OSError, ValueError):
                pass
        return out

    def wait_one_leader(self, timeout=10, among=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            ls = self.leaders(among)
            if len(ls) == 1:
                return ls[0]
            assert len(ls) <= 1 or True
            time.sleep(0.05)
        raise AssertionError("no single leader; leaders=%s" % [c.rid for c in self.leaders(among)])

    def check(self):
        return check_no_overlap(self.log_path)
