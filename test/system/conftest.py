"""Shared helpers for the system tests: they run the real binary.

Only the standard library is used (plus pytest itself).
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

BIN = os.environ.get("HIGHLANDER_BIN", os.path.join(os.path.dirname(__file__), "../../build/highlander"))
ASAN = os.environ.get("HIGHLANDER_ASAN") == "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.05, ignore=()):
    """Polls pred until it returns a true value, which is returned; fails
    with `what` (a string, or a callable giving one) and pred's last answer
    after timeout s.  Exceptions of the types in ignore count as false."""
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            v = last = pred()
        except ignore as e:  # noqa: B030 (a tuple of types, maybe empty)
            v, last = None, e
        if v:
            return v
        if time.time() >= deadline:
            raise AssertionError("timed out after %.1f s: %s (last: %r)"
                                 % (timeout, what() if callable(what) else what, last))
        time.sleep(interval)


def holds_for(check, duration, interval=0.05):
    """Calls check, which asserts, again and again for duration s: the
    negative form of wait_until (a refusal that must last)."""
    deadline = time.time() + duration
    while time.time() < deadline:
        check()
        time.sleep(interval)


TEST_LEASE_ENV = {"HIGHLANDER_LEADER_LOCK_TTL": "2s", "HIGHLANDER_RENEW_DEADLINE": "1200ms",
                  "HIGHLANDER_LEADER_RENEW_INTERVAL": "400ms"}


class Controller:
    """One highlander process on a loopback port, with its log captured."""

    def __init__(self, args=(), env=None, config=None, port=None, wait=True, wrap=(), exact_env=False):
        """wrap: a command prefix (the binary is exec'd by it).  exact_env:
        the environment is env alone (plus sanitizer options), as a pod's."""
        self.port = port or free_port()
        self.tmp = tempfile.mkdtemp(prefix="hl-sys-")
        self.log_path = os.path.join(self.tmp, "log")
        if exact_env:
            e = {}
        else:
            e = {k: v for k, v in os.environ.items() if not k.startswith("HIGHLANDER_") or k in ("HIGHLANDER_BIN",)}
            e.update({"HIGHLANDER_PORT": str(self.port), "HIGHLANDER_BIND_ADDRESS": "127.0.0.1",
                      "HOME": self.tmp})
            # Short lease timings unless a test sets its own: a replica that
            # finds no lock on a store it never saw holding one waits one
            # full lease before taking it (docs/lease.md), 15 s by default.
            e.update(TEST_LEASE_ENV)
        if ASAN:
            e["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
        if env:
            e.update(env)
        cmd = list(wrap) + [BIN]
        if config is not None:
            path = os.path.join(self.tmp, "config.yaml")
            with open(path, "w") as f:
                f.write(config)
            cmd += ["--config", path]
        cmd += list(args)
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=e, cwd=self.tmp, stdout=self.logf, stderr=subprocess.STDOUT)
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout=10):
        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError("controller exited %s:\n%s" % (self.proc.returncode, self.log()))
            return self.get("/healthz")[0] == 200
        wait_until(healthy, timeout, lambda: "/healthz did not answer 200:\n" + self.log()[-3000:], ignore=(OSError,))

    def request(self, method, path, headers=None, body=None, timeout=5):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def get(self, path, headers=None):
        return self.request("GET", path, headers)

    def get_json(self, path, headers=None):
        status, _, body = self.get(path, headers)
        return status, json.loads(body)

    def log(self):
        if not self.logf.closed:
            self.logf.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def rss(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def terminate(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.logf.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


@pytest.fixture
def controller_factory():
    made = []

    def make(*a, **kw):
        c = Controller(*a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        if c.proc.poll() is None:
            c.kill()
        else:
            c.logf.close()
        if ASAN:
            # Sanitizer reports fail the test that started the process.
            assert "ERROR: AddressSanitizer" not in c.log(), c.log()
            assert "runtime error:" not in c.log(), c.log()


@pytest.fixture
def controller(controller_factory):
    return controller_factory()


# ---- the local Kubernetes control plane (one per test session) -------------

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
TOOLS = os.environ.get("HIGHLANDER_TOOLS", os.path.join(os.path.dirname(BIN), "tools"))


class Kube:
    """The cluster started by test/cluster/cluster.sh, with helpers."""

    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig
        self.dir = os.path.dirname(kubeconfig)
        cache = os.environ.get("HIGHLANDER_CACHE", os.path.expanduser("~/.cache/highlander"))
        self.bin = os.path.join(cache, "k8s-" + os.environ.get("K8S_VERSION", "v1.36.3"), "bin")

    def kubectl(self, *args, check=True, input=None, timeout=60):
        p = subprocess.run([os.path.join(self.bin, "kubectl"), "--kubeconfig", self.kubeconfig] + list(args),
                           capture_output=True, input=input, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("kubectl %s: %s" % (" ".join(args), p.stderr.decode()))
        return p.stdout.decode()

    def driver(self, *args, timeout=120, check=False):
        exe = os.path.join(TOOLS, "kube_driver")
        p = subprocess.run([exe, "--kubeconfig", self.kubeconfig] + list(args), capture_output=True,
                           timeout=timeout)
        out = p.stdout.decode()
        if check and p.returncode != 0:
            raise AssertionError("kube_driver %s failed (%d):\n%s%s" % (args, p.returncode, out,
                                                                      p.stderr.decode()))
        return p.returncode, out

    def driver_bg(self, *args, env=None):
        exe = os.path.join(TOOLS, "kube_driver")
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.Popen([exe, "--kubeconfig", self.kubeconfig] + list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=e)

    def etcd_url(self):
        import re
        with open(os.path.join(self.dir, "kwok.yaml")) as f:
            m = re.search(r"etcdPort: (\d+)", f.read())
        return "http://127.0.0.1:%s" % m.group(1)

    def etcd_compact(self):
        """Compacts etcd at its current revision; returns the revision."""
        import urllib.request
        url = self.etcd_url()
        req = urllib.request.Request(url + "/v3/kv/range", data=b'{"key":"YQ=="}', method="POST")
        rev = int(json.load(urllib.request.urlopen(req, timeout=5))["header"]["revision"])
        body = json.dumps({"revision": str(rev), "physical": True}).encode()
        urllib.request.urlopen(urllib.request.Request(url + "/v3/kv/compaction", data=body, method="POST"),
                               timeout=10).read()
        return rev

    def stop_apiserver(self):
        pidfile = os.path.join(self.dir, "pids", "kube-apiserver.pid")
        pid = int(open(pidfile).read().strip())
        if not hasattr(self, "apiserver_argv"):
            self.apiserver_argv = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")[:-1]
        if not hasattr(self, "apiserver_cwd"):
            self.apiserver_cwd = os.readlink("/proc/%d/cwd" % pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.apiserver_stopped = True

    def start_apiserver(self):
        if not getattr(self, "apiserver_stopped", False):
            return
        self.apiserver_stopped = False
        pidfile = os.path.join(self.dir, "pids", "kube-apiserver.pid")
        log = open(os.path.join(self.dir, "logs", "kube-apiserver.log"), "ab")
        for attempt in range(10):
            p = subprocess.Popen(self.apiserver_argv, cwd=self.apiserver_cwd, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            with open(pidfile, "w") as f:
                f.write(str(p.pid))
            time.sleep(1.0)
            if p.poll() is None:
                break
        self.wait_ready()

    def restart_apiserver(self, down_seconds=0.0, extra_args=()):
        """Kills kube-apiserver and starts it again with its original
        arguments plus extra_args."""
        pidfile = os.path.join(self.dir, "pids", "kube-apiserver.pid")
        pid = int(open(pidfile).read().strip())
        if not hasattr(self, "apiserver_argv"):
            self.apiserver_argv = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")[:-1]
        argv = list(self.apiserver_argv) + [a.encode() for a in extra_args]
        cwd = os.readlink("/proc/%d/cwd" % pid)
        port = int([a for a in argv if a.startswith(b"--secure-port=")][0].split(b"=")[1])
        os.kill(pid, signal.SIGKILL)
        def exited():
            try:
                return open("/proc/%d/stat" % pid).read().split()[2] == "Z"
            except OSError:
                return True
        wait_until(exited, 30, "kube-apiserver %d did not exit" % pid)

        # The port must be free before the new process binds it.
        def port_free():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) != 0
        wait_until(port_free, 30, "port %d still in use" % port)
        time.sleep(down_seconds)
        log = open(os.path.join(self.dir, "logs", "kube-apiserver.log"), "ab")
        for attempt in range(3):
            p = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            with open(pidfile, "w") as f:
                f.write(str(p.pid))
            time.sleep(1.0)
            if p.poll() is None:
                break
            time.sleep(1.0)  # it could not bind yet: try again
        self.wait_ready()

    def wait_ready(self, timeout=60):
        wait_until(lambda: subprocess.run([os.path.join(self.bin, "kubectl"), "--kubeconfig", self.kubeconfig, "get",
                                           "--raw", "/readyz"], capture_output=True).returncode == 0,
                   timeout, "kube-apiserver did not become ready", interval=0.2)

    def namespace(self, name):
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=120)
        self.kubectl("create", "namespace", name)
        return name


@pytest.fixture(scope="session")
def kube(request):
    p = subprocess.run(["bash", os.path.join(ROOT, "test/cluster/cluster.sh"), "up"], capture_output=True,
                       timeout=3600)
    if p.returncode != 0:
        raise AssertionError("cluster-up failed:\n" + p.stderr.decode()[-4000:])
    kubeconfig = p.stdout.decode().strip().splitlines()[-1].split("=", 1)[1]
    k = Kube(kubeconfig)
    k.kubectl("apply", "-f", os.path.join(ROOT, "manifests/crds.yaml"))
    k.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    yield k
    if request.session.testsfailed:
        # Keep the components' logs of a failed run.
        dest = os.path.join(ROOT, "build", "cluster-logs")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(os.path.join(k.dir, "logs"), dest, dirs_exist_ok=True)
    if os.environ.get("HIGHLANDER_KEEP_CLUSTER") != "1":
        subprocess.run(["bash", os.path.join(ROOT, "test/cluster/cluster.sh"), "down"], capture_output=True,
                       timeout=300)
