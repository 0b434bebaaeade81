"""Real Redis servers and the leadership-interval checker for lease tests."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

from conftest import Controller, free_port, wait_until

LEASE_ENV = {"HIGHLANDER_LEADER_LOCK_TTL": "2s", "HIGHLANDER_RENEW_DEADLINE": "1200ms",
             "HIGHLANDER_LEADER_RENEW_INTERVAL": "400ms"}
LEASE_S = 2.0
RENEW_DEADLINE_S = 1.2


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


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
        # A second start would lose the first process (it would leak on stop).
        assert self.proc is None or self.proc.poll() is not None, "redis-server already running"
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir] + self.extra,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: (lambda r: r == "PONG" or r.startswith("NOAUTH"))(self.cmd("PING")), 10,
                   "redis-server did not start", ignore=(OSError,))

    def cmd(self, *args):
        exe = shutil.which("redis-cli")
        opts, args = list(args), []
        # Leading redis-cli options (--user, --pass, -n) go before the command.
        while opts and str(opts[0]).startswith("-"):
            args += [str(opts.pop(0)), str(opts.pop(0))]
        out = subprocess.run([exe, "-p", str(self.port), "--raw", "--no-auth-warning"] + args +
                             [str(a) for a in opts], capture_output=True, timeout=5)
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


def token_of(c):
    """The fencing token a replica reports in /status."""
    return c.get_json("/status")[1]["data"]["fencingToken"]


def starts_after(path, t_ns):
    """Leadership intervals of the log that began after t_ns."""
    return [iv for iv in read_intervals(path) if iv[1] > t_ns]


class Cluster:
    """N replicas of one tenant on one Redis, sharing a leadership log."""

    def __init__(self, factory, redis, n=3, tenant="default", extra_env=None, log_path=None, store=None):
        self.redis = redis
        self.store = store
        self.log_path = log_path or os.path.join(tempfile.mkdtemp(prefix="hl-lead-"), "leadership.log")
        self.replicas = []
        self.factory = factory
        self.tenant = tenant
        self.extra_env = extra_env or {}
        for i in range(n):
            self.add("r%d-%s" % (i, tenant))

    def add(self, rid, override=None):
        env = dict(LEASE_ENV)
        env.update({"HIGHLANDER_ID": rid, "HIGHLANDER_TENANT": self.tenant,
                    "HIGHLANDER_LEADERSHIP_LOG": self.log_path})
        if self.store is not None:
            env.update(self.store.env())
        else:
            env["HIGHLANDER_REDIS_ADDR"] = "127.0.0.1:%d" % self.redis.port
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
        # Two at one poll are not two at one instant (the polls are apart);
        # overlaps are the interval checker's (check()).
        ls = wait_until(lambda: (lambda x: len(x) == 1 and x)(self.leaders(among)), timeout,
                        lambda: "no single leader; leaders=%s" % [c.rid for c in self.leaders(among)])
        return ls[0]

    def check(self):
        return check_no_overlap(self.log_path)


class PgServer:
    """A real PostgreSQL server: initdb in a temporary folder, loopback port.
    PostgreSQL refuses to run as root, so it runs as the postgres user when
    the tests run as root."""

    def __init__(self):
        import glob
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        assert bins, "PostgreSQL is required: make deps"
        self.bin = bins[-1]
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="hl-pg-")
        self.prefix = []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        subprocess.run(self.prefix + [os.path.join(self.bin, "initdb"), "-D", os.path.join(self.dir, "data"),
                                      "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen(self.prefix + [os.path.join(self.bin, "postgres"), "-D",
                                                    os.path.join(self.dir, "data"), "-p", str(self.port), "-k",
                                                    self.dir, "-h", "127.0.0.1", "-c", "fsync=off"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(self.port), 30, "postgres did not start")
        time.sleep(0.3)

    def url(self):
        return "postgres://postgres@127.0.0.1:%d/postgres" % self.port

    def sql(self, q):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tA", "-c", q],
                             capture_output=True, timeout=10)
        return out.stdout.decode().strip()

    def script(self, q):
        """Statements run one by one from a script (BEGIN ... COMMIT work),
        every result printed; stops at the first error."""
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tA", "-v",
                              "ON_ERROR_STOP=1", "-f", "-"], input=q.encode(), capture_output=True, timeout=10)
        assert out.returncode == 0, out.stderr.decode()
        return out.stdout.decode().strip()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            subprocess.run(self.prefix + [os.path.join(self.bin, "pg_ctl"), "-D", os.path.join(self.dir, "data"),
                                          "stop", "-m", "immediate"], capture_output=True)
            self.proc.wait(10)
        self.log.close()

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisStore:
    name = "redis"

    def __init__(self):
        self.server = RedisServer()

    def env(self):
        return {"HIGHLANDER_REDIS_ADDR": "127.0.0.1:%d" % self.server.port}

    def kill(self):
        self.server.kill()

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop()


class PgStore:
    name = "db"

    def __init__(self):
        self.server = PgServer()

    def env(self):
        return {"HIGHLANDER_STORAGE_TYPE": "db", "HIGHLANDER_DATABASE_URL": self.server.url()}

    def kill(self):
        self.server.kill()

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop()


class LeaseStore:
    name = "lease"

    def __init__(self, kube, ns):
        self.kube = kube
        self.ns = ns

    def env(self):
        return {"HIGHLANDER_STORAGE_TYPE": "lease", "HIGHLANDER_KUBECONFIG": self.kube.kubeconfig,
                "HIGHLANDER_NAMESPACE": self.ns}

    def kill(self):
        self.kube.stop_apiserver()

    def start(self):
        self.kube.start_apiserver()

    def stop(self):
        self.kube.start_apiserver()
