"""Shared helpers for the system tests: they run the real binary.

Only the standard library is used (plus pytest itself).
"""
import http.client
import json
import os
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


class Controller:
    """One highlander process on a loopback port, with its log captured."""

    def __init__(self, args=(), env=None, config=None, port=None, wait=True):
        self.port = port or free_port()
        self.tmp = tempfile.mkdtemp(prefix="hl-sys-")
        self.log_path = os.path.join(self.tmp, "log")
        e = {k: v for k, v in os.environ.items() if not k.startswith("HIGHLANDER_") or k in ("HIGHLANDER_BIN",)}
        e.update({"HIGHLANDER_PORT": str(self.port), "HIGHLANDER_BIND_ADDRESS": "127.0.0.1",
                  "HOME": self.tmp})
        if ASAN:
            e["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
        if env:
            e.update(env)
        cmd = [BIN]
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
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("controller exited %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("controller not healthy:\n" + self.log())

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
