#!/usr/bin/env python3
"""Seeded fault campaign against highlander's leader election (`make chaos`).

For each store (redis, sentinel, db, lease) three replicas of one tenant run
against a real store on 127.0.0.1, redis and db through a per-replica TCP
proxy (proxy.py) so that one replica can be cut off.  A seeded plan of faults
is injected one at a time; after each the harness waits (bounded) for a
single leader and keeps three replicas alive.  Every process life writes its
own HIGHLANDER_LEADERSHIP_LOG; checker.py merges them and judges overlaps,
fencing tokens, leaderless time and recovery bounds.  A table is printed at
the end.

  chaos.py [--seed N] [--faults N] [--stores redis,sentinel,db,lease]
           [--bin PATH] [--out DIR] [--max-seconds S] [--results FILE]
           [--sequential] [--plan] [--kinds KIND,...]

--faults is the total, shared by the stores (sentinel and lease faults take
longer, so sentinel gets half a share and lease 0.3); a store given as STORE:COUNT gets
exactly COUNT faults and the others share the rest.  --plan prints the fault sequence of the seed and
exits (same seed, same sequence).  --results appends "chaos PASSED FAILED"
(one per store run: passed when it had no overlap and no token regression
or repeat).  Exit status 1 on any overlap or token regression/repeat (or a
store run that failed to run), else 0.

Standard library only.
"""
import argparse
import collections
import ctypes
import glob
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, HERE)

import checker  # noqa: E402
from proxy import Proxy  # noqa: E402

LEASE_ENV = {"HIGHLANDER_LEADER_LOCK_TTL": "2s", "HIGHLANDER_RENEW_DEADLINE": "1200ms",
             "HIGHLANDER_LEADER_RENEW_INTERVAL": "400ms"}
LEASE_S, RENEW_S, RETRY_S, SLACK_S = 2.0, 1.2, 0.4, 1.0
BOUND_S = LEASE_S + RENEW_S + RETRY_S + SLACK_S        # 4.6 s
BOUND_LOSS_S = BOUND_S + LEASE_S                       # data-loss faults: one more lease
TENANT = "chaos"
N_REPLICAS = 3

mono_ns = time.monotonic_ns  # CLOCK_MONOTONIC, the clock of the leadership log


def log(msg):
    sys.stdout.write("[chaos %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


# ---- child processes: every one is registered and killed at exit ----------

_libc = ctypes.CDLL(None, use_errno=True)
CHILDREN = []


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def spawn(argv, **kw):
    p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw)
    CHILDREN.append(p)
    return p


def reap(p, sig=signal.SIGKILL, timeout=5):
    if p.poll() is None:
        try:
            p.send_signal(sig)
            if sig != signal.SIGKILL:
                p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        except OSError:
            pass
    if p.poll() is None:
        try:
            p.kill()
        except OSError:
            pass
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        pass


def kill_all_children():
    for p in CHILDREN:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
            except OSError:
                pass
    for p in CHILDREN:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


# ---- a minimal RESP client ----------------------------------------------

def resp(port, *args, timeout=2.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")

        def read():
            line = f.readline()
            if not line:
                raise OSError("connection closed")
            t, rest = line[:1], line[1:-2]
            if t == b"+":
                return rest.decode()
            if t == b"-":
                return RuntimeError(rest.decode())
            if t == b":":
                return int(rest)
            if t == b"$":
                n = int(rest)
                if n < 0:
                    return None
                d = f.read(n + 2)
                return d[:-2].decode(errors="replace")
            if t == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise OSError("bad reply %r" % line)
        return read()


def resp_ok(port, *args):
    try:
        r = resp(port, *args, timeout=1.0)
        return None if isinstance(r, Exception) else r
    except OSError:
        return None


# ---- stores ---------------------------------------------------------------

class RedisProc:
    """One redis-server on loopback.  aof=True: appendonly with fsync on
    every write, so kill -9 keeps the data (a crash with a durable disk)."""

    def __init__(self, dir, port=None, aof=False, replicaof=None, extra=()):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.port = port or free_port()
        self.aof = aof
        self.extra = list(extra)
        self.proc = None
        self.start(replicaof)

    def start(self, replicaof=None):
        argv = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")]
        argv += ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        argv += self.extra
        if replicaof:
            argv += ["--replicaof", "127.0.0.1", str(replicaof)]
        self.proc = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(lambda: resp_ok(self.port, "PING") == "PONG", 15):
            raise RuntimeError("redis-server on %d did not start" % self.port)

    def kill9(self):
        reap(self.proc)

    def wipe(self):
        for p in glob.glob(os.path.join(self.dir, "appendonlydir")) + glob.glob(os.path.join(self.dir, "*.rdb")):
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)


class PgProc:
    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL is required: make deps")
        self.bin = bins[-1]
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="hl-chaos-pg-")
        self.prefix = []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
            # setpriv execs (runuser would fork), so the pid is the postmaster's.
            self.prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        subprocess.run(self.prefix + [os.path.join(self.bin, "initdb"), "-D", os.path.join(self.dir, "data"),
                                      "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
        self.proc = None
        self.start()

    def start(self):
        logf = open(os.path.join(self.dir, "log"), "ab")
        self.proc = spawn(self.prefix + [os.path.join(self.bin, "postgres"), "-D", os.path.join(self.dir, "data"),
                                         "-p", str(self.port), "-k", self.dir, "-h", "127.0.0.1",
                                         "-c", "fsync=off", "-c", "max_connections=60"],
                          stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        if not wait_until(lambda: self.sql("SELECT 1", timeout=2) == "1", 30, 0.1):
            raise RuntimeError("postgres did not start")

    def sql(self, q, timeout=10):
        try:
            out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tA",
                                  "-c", q], capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return out.stdout.decode().strip() if out.returncode == 0 else None

    def crash(self):
        """Immediate shutdown (SIGQUIT): no checkpoint, WAL replay on start,
        committed data kept.  Then kill -9 if it lingers."""
        reap(self.proc, signal.SIGQUIT, 10)

    def destroy(self):
        if self.proc:
            reap(self.proc, signal.SIGQUIT, 10)
        shutil.rmtree(self.dir, ignore_errors=True)


REPLICA_KINDS = ["kill9-leader", "kill9-random", "sigstop-leader", "sigterm-leader"]
PROXY_KINDS = ["partition-leader", "partition-all", "proxy-reset"]


class Store:
    name = "?"
    kinds = []
    has_proxy = True
    share = 1.0

    def __init__(self, run):
        self.run = run

    def setup(self):
        pass

    def slot_env(self, slot):
        return {}

    def prepare(self, kind):
        """Called before the settle pause (not counted in the fault window)."""

    def inject(self, kind, p, ldr):
        raise NotImplementedError(kind)

    def teardown(self):
        pass


class RedisStore(Store):
    name = "redis"
    kinds = REPLICA_KINDS + PROXY_KINDS + ["restart-kept", "restart-empty", "outage-fresh-replica-kept",
                                           "outage-fresh-replica-empty", "restart-empty-fresh-replica",
                                           "lock-deleted", "flushall"]

    def setup(self):
        self.server = RedisProc(os.path.join(self.run.dir, "redis"), aof=True)
        self.proxy = Proxy()
        self.links = [self.proxy.link(("127.0.0.1", self.server.port)) for _ in range(N_REPLICAS)]

    def slot_env(self, slot):
        return {"HIGHLANDER_REDIS_ADDR": "127.0.0.1:%d" % self.links[slot].port}

    def inject(self, kind, p, ldr):
        run = self.run
        if kind in ("restart-kept", "restart-empty"):
            # kill -9 of the store; its disk kept (AOF, fsync always) or lost.
            self.server.kill9()
            if kind == "restart-empty":
                self.server.wipe()
            time.sleep(p["dur"])
            self.server.start()
            return mono_ns(), BOUND_LOSS_S if kind == "restart-empty" else BOUND_S
        if kind == "restart-empty-fresh-replica":
            # Redis restarted empty while a fresh replica starts: the fresh
            # one reaches the empty store at once, the old leader only after
            # its reconnect backoff.
            slot = run.pick_follower(p["pick"], ldr)
            run.kill_slot(slot)
            self.server.kill9()
            self.server.wipe()
            self.server.start()
            ref = mono_ns()
            run.start_slot(slot, same_id=False, wait=False)
            return ref, BOUND_LOSS_S
        if kind in ("lock-deleted", "flushall"):
            # Another client deletes the record (or everything) under a live leader.
            if kind == "lock-deleted":
                resp_ok(self.server.port, "DEL", "highlander-leader-lock:" + TENANT)
            else:
                resp_ok(self.server.port, "FLUSHALL")
            return mono_ns(), BOUND_LOSS_S
        if kind.startswith("outage-fresh-replica"):
            # A follower is replaced by a fresh replica started while the
            # store is down; the store then comes back (kept or empty).
            slot = run.pick_follower(p["pick"], ldr)
            run.kill_slot(slot)
            self.server.kill9()
            lost = kind.endswith("empty")
            if lost:
                self.server.wipe()
            run.start_slot(slot, same_id=False, wait=False)
            time.sleep(p["dur"])
            self.server.start()
            return mono_ns(), BOUND_LOSS_S if lost else BOUND_S
        return run.inject_common(kind, p, ldr, self)

    def teardown(self):
        self.proxy.stop()
        self.server.kill9()


class SentinelStore(Store):
    name = "sentinel"
    has_proxy = False
    share = 0.5
    kinds = REPLICA_KINDS + ["sentinel-failover", "master-crash", "fresh-replica-during-failover"]

    def setup(self):
        d = os.path.join(self.run.dir, "redis")
        self.servers = {}
        # The Sentinel assumption of docs/lease.md: a master that has lost
        # its replicas (deposed, or cut off while the sentinels promote
        # another) refuses writes, so two masters never both take a renewal.
        # Two replicas, so that one down does not stop the writes.
        fenced = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"]
        a = RedisProc(os.path.join(d, "a"), extra=fenced)
        b = RedisProc(os.path.join(d, "b"), replicaof=a.port, extra=fenced)
        c = RedisProc(os.path.join(d, "c"), replicaof=a.port, extra=fenced)
        self.servers = {a.port: a, b.port: b, c.port: c}
        for r in (b, c):
            wait_until(lambda: "master_link_status:up" in (resp_ok(r.port, "INFO", "replication") or ""), 15)
        self.sentinels = []
        for i in range(3):
            port = free_port()
            sd = os.path.join(d, "sentinel%d" % i)
            os.makedirs(sd, exist_ok=True)
            conf = os.path.join(sd, "sentinel.conf")
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"
                        "sentinel monitor mymaster 127.0.0.1 %d 2\n"
                        "sentinel down-after-milliseconds mymaster 800\n"
                        "sentinel failover-timeout mymaster 4000\n"
                        "sentinel parallel-syncs mymaster 1\n" % (port, sd, os.path.join(sd, "log"), a.port))
            spawn([shutil.which("redis-sentinel"), conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.sentinels.append(port)
        for port in self.sentinels:
            if not wait_until(lambda: resp_ok(port, "PING") == "PONG", 10):
                raise RuntimeError("sentinel did not start")
        self.cfg = os.path.join(self.run.dir, "sentinel-config.yaml")
        with open(self.cfg, "w") as f:
            f.write("redis:\n  sentinel:\n    masterName: mymaster\n    addrs: [%s]\n" %
                    ", ".join("'127.0.0.1:%d'" % s for s in self.sentinels))
        self.wait_replica_ready(30)

    def slot_env(self, slot):
        return {"HIGHLANDER_CONFIG": self.cfg, "HIGHLANDER_REDIS_ADDR": "unused:1"}

    def master(self):
        votes = collections.Counter()
        for s in self.sentinels:
            r = resp_ok(s, "SENTINEL", "get-master-addr-by-name", "mymaster")
            if isinstance(r, list) and len(r) == 2:
                votes[int(r[1])] += 1
        return votes.most_common(1)[0][0] if votes else None

    def wait_replica_ready(self, timeout):
        """Both replicas are in sync and at least two sentinels consider
        one good, so that a failover can pick it and the other one keeps
        the new master writable."""
        def ready():
            m = self.master()
            if m is None:
                return False
            info = resp_ok(m, "INFO", "replication") or ""
            if "role:master" not in info or info.count("state=online") < 2:
                return False
            good = 0
            for s in self.sentinels:
                r = resp_ok(s, "SENTINEL", "replicas", "mymaster")
                for rep in r or []:
                    d = dict(zip(rep[::2], rep[1::2]))
                    if d.get("flags") == "slave" and d.get("master-link-status") == "ok":
                        good += 1
                        break
            return good >= 2
        return wait_until(ready, timeout, 0.2)

    def prepare(self, kind):
        if kind in ("sentinel-failover", "master-crash", "fresh-replica-during-failover"):
            if not self.wait_replica_ready(30):
                log("sentinel: the replica is not ready for a failover after 30 s; injecting anyway")

    def wait_master_change(self, old, timeout):
        return wait_until(lambda: (lambda m: m if m not in (None, old) else None)(self.master()), timeout, 0.05)

    def inject(self, kind, p, ldr):
        run = self.run
        if kind == "sentinel-failover":
            old = self.master()
            s = self.sentinels[p["pick"] % len(self.sentinels)]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                r = resp_ok(s, "SENTINEL", "FAILOVER", "mymaster")
                if r == "OK":
                    break
                time.sleep(0.3)
            new = self.wait_master_change(old, 20)
            if new is None:
                log("sentinel: no failover within 20 s")
            return mono_ns(), BOUND_LOSS_S
        if kind in ("master-crash", "fresh-replica-during-failover"):
            old = self.master()
            slot = None
            if kind == "fresh-replica-during-failover":
                slot = run.pick_follower(p["pick"], ldr)
                run.kill_slot(slot)
            self.servers[old].kill9()
            if slot is not None:
                run.start_slot(slot, same_id=False, wait=False)
            new = self.wait_master_change(old, 30)
            ref = mono_ns()
            if new is None:
                log("sentinel: no failover within 30 s after the master's crash")
                self.servers[old].start()
            else:
                self.servers[old].start(replicaof=new)  # comes back empty, as a replica
            return ref, BOUND_LOSS_S
        return run.inject_common(kind, p, ldr, self)

    def teardown(self):
        for s in self.servers.values():
            s.kill9()


class PgStore(Store):
    name = "db"
    kinds = REPLICA_KINDS + PROXY_KINDS + ["restart-kept", "rows-deleted", "table-truncated",
                                           "outage-fresh-replica", "rows-deleted-fresh-replica"]

    def setup(self):
        self.pg = PgProc()
        self.proxy = Proxy()
        self.links = [self.proxy.link(("127.0.0.1", self.pg.port)) for _ in range(N_REPLICAS)]

    def slot_env(self, slot):
        return {"HIGHLANDER_STORAGE_TYPE": "db",
                "HIGHLANDER_DATABASE_URL": "postgres://postgres@127.0.0.1:%d/postgres" % self.links[slot].port}

    def inject(self, kind, p, ldr):
        run = self.run
        if kind == "restart-kept":
            self.pg.crash()
            time.sleep(p["dur"])
            self.pg.start()
            return mono_ns(), BOUND_S
        if kind == "rows-deleted":
            self.pg.sql("DELETE FROM leader_locks")
            return mono_ns(), BOUND_LOSS_S
        if kind == "table-truncated":
            self.pg.sql("TRUNCATE leader_locks")
            return mono_ns(), BOUND_LOSS_S
        if kind == "outage-fresh-replica":
            slot = run.pick_follower(p["pick"], ldr)
            run.kill_slot(slot)
            self.pg.crash()
            run.start_slot(slot, same_id=False, wait=False)
            time.sleep(p["dur"])
            self.pg.start()
            return mono_ns(), BOUND_S
        if kind == "rows-deleted-fresh-replica":
            slot = run.pick_follower(p["pick"], ldr)
            run.kill_slot(slot)
            run.start_slot(slot, same_id=False, wait=False)
            time.sleep(p["dur"] / 4)
            self.pg.sql("DELETE FROM leader_locks")
            return mono_ns(), BOUND_LOSS_S
        return run.inject_common(kind, p, ldr, self)

    def teardown(self):
        self.proxy.stop()
        try:
            shutil.copy(os.path.join(self.pg.dir, "log"), os.path.join(self.run.dir, "postgres.log"))
        except OSError:
            pass
        self.pg.destroy()


class Kube:
    """A control plane of test/cluster/cluster.sh, enough of it for faults:
    kubectl, and kill -9 / start of kube-apiserver (etcd keeps the data)."""
    VERSION = os.environ.get("K8S_VERSION", "v1.36.3")
    CACHE = os.environ.get("HIGHLANDER_CACHE", os.path.expanduser("~/.cache/highlander"))
    BIN = os.path.join(CACHE, "k8s-" + VERSION, "bin")

    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig
        self.dir = os.path.dirname(kubeconfig)
        self.pidfile = os.path.join(self.dir, "pids", "kube-apiserver.pid")
        self.argv = self.cwd = None

    def kubectl(self, *args, timeout=60):
        return subprocess.run([os.path.join(self.BIN, "kubectl"), "--kubeconfig", self.kubeconfig] + list(args),
                              capture_output=True, timeout=timeout)

    def ready(self):
        try:
            return self.kubectl("get", "--raw", "/readyz", timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def stop_apiserver(self):
        pid = int(open(self.pidfile).read().strip())
        if self.argv is None:
            self.argv = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")[:-1]
            self.cwd = os.readlink("/proc/%d/cwd" % pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_until(lambda: not os.path.exists("/proc/%d" % pid) or
                   open("/proc/%d/stat" % pid).read().split()[2] == "Z", 10)
        port = int([a for a in self.argv if a.startswith(b"--secure-port=")][0].split(b"=")[1])

        def port_free():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) != 0
        wait_until(port_free, 10)

    def start_apiserver(self):
        logf = open(os.path.join(self.dir, "logs", "kube-apiserver.log"), "ab")
        for _ in range(5):
            p = subprocess.Popen(self.argv, cwd=self.cwd, stdout=logf, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            with open(self.pidfile, "w") as f:
                f.write(str(p.pid))
            time.sleep(0.5)
            if p.poll() is None:
                break
            time.sleep(0.5)  # the port was not free yet
        logf.close()
        if not wait_until(self.ready, 60, 0.1):
            raise RuntimeError("kube-apiserver did not become ready")


class LeaseStore(Store):
    """The Kubernetes Lease store on a control plane of its own (cluster
    hl-chaos, one fake node), so that restarting kube-apiserver never
    disturbs a cluster other tests use.  Needs the cached control-plane
    binaries (test/cluster/build.sh); this harness never builds them."""
    name = "lease"
    share = 0.3
    CLUSTER = os.environ.get("CHAOS_KWOK_CLUSTER", "hl-chaos")
    kinds = REPLICA_KINDS + PROXY_KINDS + ["apiserver-restart", "lease-deleted", "outage-fresh-replica"]

    @classmethod
    def available(cls):
        for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok",
                  "kwokctl"):
            if not os.access(os.path.join(Kube.BIN, b), os.X_OK):
                return None
        return Kube.BIN

    def cluster_env(self):
        e = dict(os.environ)
        e.update({"HIGHLANDER_KWOK_CLUSTER": self.CLUSTER, "HIGHLANDER_CLUSTER_NODES": "1"})
        return e

    def setup(self):
        self.up = True
        p = subprocess.run(["bash", os.path.join(ROOT, "test/cluster/cluster.sh"), "up"], capture_output=True,
                           timeout=600, env=self.cluster_env())
        lines = p.stdout.decode().strip().splitlines()
        if p.returncode != 0 or not lines or not lines[-1].startswith("KUBECONFIG="):
            raise RuntimeError("cluster-up failed: " + p.stderr.decode()[-2000:])
        kc = lines[-1].split("=", 1)[1]
        self.kube = Kube(kc)
        self.ns = "chaos"
        # The workload CRDs, so the controllers' informers do not retry forever.
        self.kube.kubectl("apply", "-f", os.path.join(ROOT, "manifests/crds.yaml"))
        self.kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", timeout=90)
        self.kube.kubectl("delete", "namespace", self.ns, "--ignore-not-found", "--wait=true", timeout=120)
        self.kube.kubectl("create", "namespace", self.ns)
        import re
        with open(kc) as f:
            text = f.read()
        m = re.search(r"server:\s*https://127\.0\.0\.1:(\d+)", text)
        if not m:
            raise RuntimeError("kubeconfig server is not https://127.0.0.1:PORT")
        self.api_port = int(m.group(1))
        self.proxy = Proxy()
        self.links, self.kubeconfigs = [], []
        for i in range(N_REPLICAS):
            l = self.proxy.link(("127.0.0.1", self.api_port))
            path = os.path.join(self.run.dir, "kubeconfig-%d.yaml" % i)
            with open(path, "w") as f:
                f.write(text.replace("127.0.0.1:%d" % self.api_port, "127.0.0.1:%d" % l.port))
            self.links.append(l)
            self.kubeconfigs.append(path)

    def slot_env(self, slot):
        return {"HIGHLANDER_STORAGE_TYPE": "lease", "HIGHLANDER_KUBECONFIG": self.kubeconfigs[slot],
                "HIGHLANDER_NAMESPACE": self.ns}

    def inject(self, kind, p, ldr):
        run = self.run
        if kind == "apiserver-restart":
            # kill -9 of kube-apiserver; etcd keeps the Lease.
            self.kube.stop_apiserver()
            time.sleep(p["dur"])
            self.kube.start_apiserver()
            return mono_ns(), BOUND_S
        if kind == "lease-deleted":
            self.kube.kubectl("-n", self.ns, "delete", "lease", "highlander-" + TENANT, "--ignore-not-found")
            return mono_ns(), BOUND_LOSS_S
        if kind == "outage-fresh-replica":
            slot = run.pick_follower(p["pick"], ldr)
            run.kill_slot(slot)
            self.kube.stop_apiserver()
            run.start_slot(slot, same_id=False, wait=False)
            time.sleep(p["dur"])
            self.kube.start_apiserver()
            return mono_ns(), BOUND_S
        return run.inject_common(kind, p, ldr, self)

    def teardown(self):
        if not getattr(self, "up", False):
            return
        self.up = False
        if getattr(self, "proxy", None):
            self.proxy.stop()
        try:
            logs = os.path.join(self.kube.dir, "logs")
            shutil.copytree(logs, os.path.join(self.run.dir, "cluster-logs"), dirs_exist_ok=True)
        except (OSError, AttributeError):
            pass
        subprocess.run(["bash", os.path.join(ROOT, "test/cluster/cluster.sh"), "down"], capture_output=True,
                       timeout=300, env=self.cluster_env())


STORES = {"redis": RedisStore, "sentinel": SentinelStore, "db": PgStore, "lease": LeaseStore}

DUR = {"sigstop-leader": (2.5, 4.0), "partition-leader": (1.0, 5.0), "partition-all": (1.0, 4.0),
       "restart-kept": (0.1, 2.0), "restart-empty": (0.1, 2.0), "apiserver-restart": (0.0, 2.0),
       # short: the old leader's authority may still run when the fresh one asks
       "outage-fresh-replica-empty": (0.05, 0.5)}


def make_plan(store_cls, n, seed, only=None):
    """The seeded fault sequence: every kind once per shuffled round."""
    rng = random.Random("%s/%s" % (seed, store_cls.name))
    out = []
    pool = [k for k in store_cls.kinds if not only or k in only]
    if not pool:
        return []
    while len(out) < n:
        kinds = list(pool)
        rng.shuffle(kinds)
        for k in kinds:
            lo, hi = DUR.get(k, (0.1, 0.8))
            out.append((k, {"settle": round(rng.uniform(0.2, 0.8), 3), "dur": round(rng.uniform(lo, hi), 3),
                            "delay": round(rng.uniform(0.0, 1.0), 3), "same_id": rng.random() < 0.3,
                            "pick": rng.randrange(1 << 16)}))
    return out[:n]


# ---- replicas ---------------------------------------------------------------

class Replica:
    def __init__(self, run, slot, life, rid):
        self.slot, self.life, self.rid = slot, life, rid
        self.port = free_port()
        self.lead = os.path.join(run.dir, "lives", "s%d-l%d.lead" % (slot, life))
        self.tmp = os.path.join(run.dir, "home", "s%d-l%d" % (slot, life))
        os.makedirs(self.tmp, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIGHLANDER_")}
        env.update(LEASE_ENV)
        env.update({"HIGHLANDER_ID": rid, "HIGHLANDER_TENANT": TENANT, "HIGHLANDER_PORT": str(self.port),
                    "HIGHLANDER_BIND_ADDRESS": "127.0.0.1", "HOME": self.tmp, "HIGHLANDER_LEADERSHIP_LOG": self.lead})
        env.update(run.store.slot_env(slot))
        self.logf = open(os.path.join(run.dir, "logs", "s%d-l%d.log" % (slot, life)), "wb")
        self.proc = spawn([run.bin], env=env, cwd=self.tmp, stdout=self.logf, stderr=subprocess.STDOUT)
        self.stopped = False
        self.expected_exit = False  # set when the harness kills or stops it

    def alive(self):
        return self.proc.poll() is None

    def status(self):
        if self.stopped or not self.alive():
            return None
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
        try:
            c.request("GET", "/status")
            return json.loads(c.getresponse().read())["data"]
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            return None
        finally:
            c.close()

    def wait_http(self, timeout=10):
        def up():
            if not self.alive():
                return True
            return self.status() is not None
        wait_until(up, timeout)

    def kill9(self):
        self.expected_exit = True
        reap(self.proc)
        self.logf.close()

    def term(self, timeout=10):
        self.expected_exit = True
        reap(self.proc, signal.SIGTERM, timeout)
        self.logf.close()


class Run:
    def __init__(self, store_cls, bin, dir, seed, nfaults, max_seconds, only=None):
        self.bin, self.dir, self.seed, self.nfaults = bin, dir, seed, nfaults
        self.only = only
        self.max_seconds = max_seconds
        shutil.rmtree(dir, ignore_errors=True)
        for d in ("lives", "logs", "home"):
            os.makedirs(os.path.join(dir, d))
        self.store = store_cls(self)
        self.slots = [None] * N_REPLICAS
        self.lives = [0] * N_REPLICAS
        self.ids = [None] * N_REPLICAS
        self.faults_f = open(os.path.join(dir, "faults.jsonl"), "w")
        self.crashes_f = open(os.path.join(dir, "crashes.jsonl"), "w")
        self.crashes = 0
        self.rescues = 0
        self.rescues_f = open(os.path.join(dir, "rescues.jsonl"), "w")

    def record_rescue(self, i, kind):
        st = {}
        for r in self.slots:
            if r is not None:
                with open(r.logf.name, "rb") as f:
                    st[r.rid] = f.read()[-1200:].decode(errors="replace")
        self.rescues_f.write(json.dumps({"at_ns": mono_ns(), "after_fault": i, "kind": kind, "log_tails": st}) + "\n")
        self.rescues_f.flush()

    def record(self, d):
        self.faults_f.write(json.dumps(d) + "\n")
        self.faults_f.flush()

    def start_slot(self, slot, same_id=False, wait=True):
        life = self.lives[slot]
        self.lives[slot] += 1
        if not (same_id and self.ids[slot]):
            self.ids[slot] = "%s-%d-%d" % (self.store.name, slot, life)
        r = Replica(self, slot, life, self.ids[slot])
        self.slots[slot] = r
        if wait:
            r.wait_http()
        return r

    def kill_slot(self, slot):
        if self.slots[slot] is not None:
            self.slots[slot].kill9()

    def ensure_alive(self):
        self.check_crashes()
        for i, r in enumerate(self.slots):
            if r is None or not r.alive():
                if r is not None and not r.logf.closed:
                    r.logf.close()
                self.start_slot(i)

    def check_crashes(self):
        """A replica that exited on its own (not killed or stopped by the
        harness) is a finding: recorded in crashes.jsonl, then restarted."""
        for i, r in enumerate(self.slots):
            if r is None or r.expected_exit or r.alive():
                continue
            r.expected_exit = True
            if not r.logf.closed:
                r.logf.close()
            with open(r.logf.name, "rb") as f:
                tail = f.read()[-1500:].decode(errors="replace")
            self.crashes += 1
            self.crashes_f.write(json.dumps({"at_ns": mono_ns(), "rid": r.rid, "slot": i, "life": r.life,
                                             "returncode": r.proc.returncode, "log_tail": tail}) + "\n")
            self.crashes_f.flush()
            log("%s: replica %s exited by itself with status %s (see %s)" % (self.store.name, r.rid,
                                                                            r.proc.returncode, r.logf.name))
            self.start_slot(i)

    def leaders(self):
        self.check_crashes()
        return [r for r in self.slots if r is not None and (r.status() or {}).get("isLeader")]

    def wait_leader(self, timeout):
        """Exactly one leader among the live replicas, or None."""
        def one():
            ls = self.leaders()
            return ls[0] if len(ls) == 1 else None
        return wait_until(one, timeout, 0.1)

    def pick_follower(self, pick, ldr):
        cands = [i for i, r in enumerate(self.slots) if r is not None and r is not ldr and r.alive()]
        return cands[pick % len(cands)] if cands else pick % N_REPLICAS

    def inject_common(self, kind, p, ldr, store):
        target = ldr if ldr is not None else self.slots[p["pick"] % N_REPLICAS]
        if kind == "kill9-leader" or kind == "kill9-random":
            if kind == "kill9-random":
                target = self.slots[p["pick"] % N_REPLICAS]
            target.kill9()
            t = mono_ns()
            time.sleep(p["delay"])
            self.start_slot(target.slot, same_id=p["same_id"])
            return t, BOUND_S
        if kind == "sigstop-leader":
            target.proc.send_signal(signal.SIGSTOP)
            target.stopped = True
            t = mono_ns()
            time.sleep(p["dur"])
            target.proc.send_signal(signal.SIGCONT)
            target.stopped = False
            return t, BOUND_S
        if kind == "sigterm-leader":
            t = mono_ns()
            target.term(10)
            time.sleep(p["delay"])
            self.start_slot(target.slot, same_id=p["same_id"])
            return t, BOUND_S
        if kind == "partition-leader":
            link = store.links[target.slot]
            link.partition()
            t = mono_ns()
            time.sleep(p["dur"])
            link.heal()
            return t, BOUND_S
        if kind == "partition-all":
            for l in store.links:
                l.partition()
            time.sleep(p["dur"])
            for l in store.links:
                l.heal()
            return mono_ns(), BOUND_S
        if kind == "proxy-reset":
            for l in store.links:
                l.reset()
            return mono_ns(), BOUND_S
        raise ValueError(kind)

    def execute(self):
        t0 = time.monotonic()
        plan = make_plan(type(self.store), self.nfaults, self.seed, self.only)
        self.store.setup()
        for i in range(N_REPLICAS):
            self.start_slot(i)
        if not self.wait_leader(30):
            raise RuntimeError("no first leader within 30 s")
        self.record({"kind": "start", "inject_ns": mono_ns()})
        done = 0
        for i, (kind, p) in enumerate(plan):
            if time.monotonic() - t0 > self.max_seconds:
                log("%s: time budget of %d s reached after %d faults" % (self.store.name, self.max_seconds, done))
                break
            self.store.prepare(kind)
            ldr = self.wait_leader(15)
            time.sleep(p["settle"])
            if ldr is not None and (ldr.stopped or not ldr.alive() or not (ldr.status() or {}).get("isLeader")):
                ldr = self.wait_leader(5)
            inject_ns = mono_ns()
            ref, bound = self.store.inject(kind, p, ldr)
            self.record({"i": i, "kind": kind, "params": p, "inject_ns": inject_ns, "ref_ns": ref,
                         "bound_ns": int(bound * 1e9), "leader": ldr.rid if ldr else None})
            done += 1
            self.ensure_alive()
            if not self.wait_leader(BOUND_LOSS_S + 15):
                # Stuck: recorded (the window stays leaderless, so it is a
                # recovery miss too), then every replica is restarted so the
                # campaign can go on.
                self.rescues += 1
                log("%s: fault %d (%s): no single leader %.0f s after it; restarting every replica (rescue %d)"
                    % (self.store.name, i, kind, BOUND_LOSS_S + 15, self.rescues))
                self.record_rescue(i, kind)
                for slot in range(N_REPLICAS):
                    self.kill_slot(slot)
                    self.start_slot(slot)
                self.wait_leader(BOUND_LOSS_S + 15)
            if done % 25 == 0:
                log("%s: %d faults done (%.0f s)" % (self.store.name, done, time.monotonic() - t0))
        self.record({"kind": "end", "inject_ns": mono_ns()})
        self.check_crashes()
        for r in self.slots:
            if r is not None:
                r.term(10)
        self.store.teardown()
        return done, time.monotonic() - t0

    def close(self):
        try:
            for r in self.slots:
                if r is not None and r.alive():
                    r.kill9()
            self.store.teardown()
        except Exception:
            pass


# ---- analysis and the table -------------------------------------------------

def analyse(rundir):
    r = checker.check_dir(rundir)
    faults = sorted(r["faults"], key=lambda f: f["inject_ns"])
    starts = [f["inject_ns"] for f in faults]

    def kind_at(ns):
        import bisect
        k = bisect.bisect_right(starts, ns) - 1
        return faults[k]["kind"] if k >= 0 else "(before the first fault)"
    by = collections.OrderedDict()
    for f in faults:
        by.setdefault(f["kind"], {"n": 0, "overlaps": 0, "tokens": 0, "misses": 0, "rec": []})
        by[f["kind"]]["n"] += 1
    for o in r["overlaps"]:
        by.setdefault(kind_at(o["at_ns"]), {"n": 0, "overlaps": 0, "tokens": 0, "misses": 0, "rec": []})
        by[kind_at(o["at_ns"])]["overlaps"] += 1
    for t in r["tokens"]:
        by.setdefault(kind_at(t["at_ns"]), {"n": 0, "overlaps": 0, "tokens": 0, "misses": 0, "rec": []})
        by[kind_at(t["at_ns"])]["tokens"] += 1
    for x in r["recovery"]:
        by[x["kind"]]["rec"].append(x["recovery_s"])
        if x["miss"]:
            by[x["kind"]]["misses"] += 1
    r["by_kind"] = by
    return r


def fmt(x):
    return "-" if x is None else "%.2f" % x


def print_table(results):
    print()
    print("=" * 100)
    print("chaos: %s" % " ".join("%s=%d" % (s, res["faults_run"]) for s, res in results.items()))
    print("=" * 100)
    hdr = "%-9s %-30s %6s %8s %7s %7s %8s %8s" % ("store", "fault", "count", "overlaps", "tokens", "misses",
                                                  "rec p50", "rec max")
    tot = {"faults": 0, "overlaps": 0, "tokens": 0, "misses": 0, "gaps": [], "errors": 0, "crashes": 0, "rescues": 0}
    for s, res in results.items():
        if "error" in res:
            print("%-9s ERROR: %s" % (s, res["error"]))
            continue
        a = res["analysis"]
        print(hdr)
        for kind, d in a["by_kind"].items():
            print("%-9s %-30s %6d %8d %7d %7d %8s %8s" % (s, kind, d["n"], d["overlaps"], d["tokens"], d["misses"],
                                                         fmt(checker.pct(d["rec"], 50)),
                                                         fmt(max(d["rec"]) if d["rec"] else None)))
        g = a["gaps_s"]
        misses = sum(1 for x in a["recovery"] if x["miss"])
        print("%-9s faults %d in %.0f s | overlaps %d | token regressions/repeats %d | leaderless (n=%d) "
              "p50 %s p99 %s max %s s | recovery bound misses %d | log errors %d | lives %d | replica crashes %d | "
              "rescues %d"
              % (s, len(a["faults"]), res["seconds"], len(a["overlaps"]), len(a["tokens"]), len(g),
                 fmt(checker.pct(g, 50)), fmt(checker.pct(g, 99)), fmt(max(g) if g else None), misses,
                 len(a["errors"]), a["lives"], res.get("crashes", 0), res.get("rescues", 0)))
        for o in a["overlaps"][:5]:
            print("   overlap %.1f ms: %s / %s" % (o["ms"] or -1, o["earlier"], o["later"]))
        for t in a["tokens"][:5]:
            print("   token %s: %s" % (t["kind"], t["interval"]))
        for e in a["errors"][:5]:
            print("   log error: %s" % e)
        print("-" * 100)
        tot["faults"] += len(a["faults"])
        tot["overlaps"] += len(a["overlaps"])
        tot["tokens"] += len(a["tokens"])
        tot["misses"] += misses
        tot["gaps"] += g
        tot["errors"] += len(a["errors"])
        tot["crashes"] += res.get("crashes", 0)
        tot["rescues"] += res.get("rescues", 0)
    g = tot["gaps"]
    print("TOTAL     faults %d | overlaps %d | token regressions/repeats %d | leaderless (n=%d) p50 %s p99 %s "
          "max %s s | recovery bound misses %d | log errors %d | replica crashes %d | rescues %d"
          % (tot["faults"], tot["overlaps"], tot["tokens"], len(g), fmt(checker.pct(g, 50)),
             fmt(checker.pct(g, 99)), fmt(max(g) if g else None), tot["misses"], tot["errors"], tot["crashes"],
             tot["rescues"]))
    if tot["rescues"]:
        print("WARNING: %d time(s) no leader emerged %.0f s after a fault and every replica was restarted "
              "(rescues.jsonl)" % (tot["rescues"], BOUND_LOSS_S + 15))
    if tot["crashes"]:
        print("WARNING: %d replica(s) exited by themselves (crashes.jsonl in each store's directory)"
              % tot["crashes"])
    print("(bounds: %.1f s after the fault, %.1f s for data-loss faults; a miss is a leaderless stretch "
          "ending later)" % (BOUND_S, BOUND_LOSS_S))
    return tot


# ---- entry points -----------------------------------------------------------

def run_one(args):
    """Child mode: one store's campaign; writes OUT/STORE/result.json."""
    store_cls = STORES[args.one]
    rundir = os.path.join(args.out, args.one)
    res = {"store": args.one}
    run = None

    def on_term(signum, frame):
        raise SystemExit(130)
    signal.signal(signal.SIGTERM, on_term)
    try:
        run = Run(store_cls, args.bin, rundir, args.seed, args.faults, args.max_seconds, kinds_of(args))
        done, secs = run.execute()
        res.update({"faults_run": done, "seconds": secs, "crashes": run.crashes, "rescues": run.rescues})
    except BaseException as e:
        res.update({"error": "%s: %s" % (type(e).__name__, e), "faults_run": 0,
                    "trace": traceback.format_exc()})
        if run is not None:
            run.close()
        if isinstance(e, KeyboardInterrupt) or (isinstance(e, SystemExit) and e.code == 130):
            kill_all_children()
            raise
    finally:
        kill_all_children()
    os.makedirs(rundir, exist_ok=True)
    with open(os.path.join(rundir, "result.json"), "w") as f:
        json.dump(res, f)
    return 0


def kinds_of(args):
    return [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None


def split(total, stores):
    shares = [STORES[s].share for s in stores]
    out = [max(1, int(round(total * sh / sum(shares)))) for sh in shares]
    out[0] += total - sum(out)
    return dict(zip(stores, out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", type=int, default=150)
    ap.add_argument("--stores", default="redis,sentinel,db,lease")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/highlander"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build/chaos-run"))
    ap.add_argument("--max-seconds", type=float, default=24 * 3600)
    ap.add_argument("--results")
    ap.add_argument("--sequential", action="store_true")
    ap.add_argument("--plan", action="store_true")
    ap.add_argument("--kinds", help="only these fault kinds (comma-separated), for a focused run")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    args.out = os.path.abspath(args.out)
    if args.one:
        return run_one(args)

    stores, fixed = [], {}
    for item in (x.strip() for x in args.stores.split(",")):
        if not item:
            continue
        name, _, n = item.partition(":")
        if name not in STORES:
            ap.error("unknown store %s (known: %s)" % (name, ", ".join(STORES)))
        stores.append(name)
        if n:
            fixed[name] = int(n)
    if "lease" in stores and not args.plan and not LeaseStore.available():
        log("lease store SKIPPED: the control-plane binaries are not in %s (test/cluster/build.sh makes "
            "them; this harness never builds them)" % Kube.BIN)
        stores.remove("lease")
    counts = split(args.faults, stores) if stores else {}
    if fixed:  # STORE:COUNT items fix their counts; the rest share what is left
        rest = [x for x in stores if x not in fixed]
        counts = dict(fixed)
        if rest:
            counts.update(split(max(len(rest), args.faults - sum(fixed.values())), rest))
    if args.plan:
        for s in stores:
            plan = make_plan(STORES[s], counts[s], args.seed, kinds_of(args))
            h = hashlib.sha256(json.dumps(plan).encode()).hexdigest()[:12]
            print("%s: %d faults, plan sha256 %s" % (s, len(plan), h))
            for i, (k, p) in enumerate(plan):
                print("  %4d %-28s %s" % (i, k, json.dumps(p, sort_keys=True)))
        return 0
    if not os.access(args.bin, os.X_OK):
        ap.error("no binary at %s" % args.bin)
    checker.selftest()  # the judge first: it must find what it is shown
    os.makedirs(args.out, exist_ok=True)
    log("seed %d, binary %s, faults %s, output %s" % (args.seed, args.bin, counts, args.out))
    for s in stores:
        plan = make_plan(STORES[s], counts[s], args.seed, kinds_of(args))
        log("%s: plan sha256 %s (chaos.py --plan prints it)" % (
            s, hashlib.sha256(json.dumps(plan).encode()).hexdigest()[:12]))
    procs = {}
    results = {}

    def child(s):
        cmd = [sys.executable, os.path.abspath(__file__), "--one", s, "--seed", str(args.seed), "--faults",
               str(counts[s]), "--bin", args.bin, "--out", args.out, "--max-seconds", str(args.max_seconds)]
        if args.kinds:
            cmd += ["--kinds", args.kinds]
        return subprocess.Popen(cmd, start_new_session=True)
    try:
        if args.sequential:
            for s in stores:
                procs[s] = child(s)
                procs[s].wait()
        else:
            for s in stores:
                procs[s] = child(s)
            for p in procs.values():
                p.wait()
    except BaseException:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        raise
    for s in stores:
        path = os.path.join(args.out, s, "result.json")
        try:
            with open(path) as f:
                res = json.load(f)
        except (OSError, ValueError):
            res = {"error": "the store run left no result", "faults_run": 0}
        if "error" in res:
            log("%s failed to run: %s\n%s" % (s, res["error"], res.get("trace", "")))
        else:
            res["analysis"] = analyse(os.path.join(args.out, s))
        results[s] = res
    print_table(results)
    passed = failed = 0
    for s, res in results.items():
        a = res.get("analysis")
        if a is None or a["overlaps"] or a["tokens"]:
            failed += 1
        else:
            passed += 1
    summary = {s: {k: v for k, v in res.items() if k != "analysis"} for s, res in results.items()}
    for s, res in results.items():
        a = res.get("analysis")
        if a:
            g = a["gaps_s"]
            summary[s].update({"faults": len(a["faults"]), "overlaps": len(a["overlaps"]),
                               "tokens": len(a["tokens"]), "log_errors": len(a["errors"]),
                               "leaderless": {"n": len(g), "p50": checker.pct(g, 50), "p99": checker.pct(g, 99),
                                              "max": max(g) if g else None},
                               "misses": sum(1 for x in a["recovery"] if x["miss"]),
                               "by_kind": {k: {kk: vv for kk, vv in d.items() if kk != "rec"}
                                           for k, d in a["by_kind"].items()}})
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"seed": args.seed, "bin": args.bin, "stores": summary}, f, indent=1)
    if args.results:
        os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
        with open(args.results, "a") as f:
            f.write("chaos %d %d\n" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
