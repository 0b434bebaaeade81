#!/usr/bin/env python3
"""Hostile HTTP clients against one controller per scenario (issue 12):

  pipeline  20 connections x 64 KiB of pipelined GET /assets/app.js, never
            reading: peak RSS, worst /healthz, seconds until all are closed
  cap       4,096 idle connections (the default cap), then 40 /healthz on
            fresh connections: how many answered 200, p50 and worst time
  bodies    400 connections x 1,000,000 bytes of an announced 1 MiB body,
            never finished: peak RSS, worst /healthz

  bench/http/hostile.py BINARY [BASELINE_BINARY]

With a baseline, each figure is printed for both, with the ratio.
"""
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary):
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="hl-bench-hostile-")
        env = dict(os.environ, HOME=self.tmp, HIGHLANDER_BIND_ADDRESS="127.0.0.1",
                   HIGHLANDER_PORT=str(self.port), HIGHLANDER_LOG_LEVEL="warn",
                   HIGHLANDER_REDIS_ADDR="127.0.0.1:1")
        self.log = open(os.path.join(self.tmp, "log"), "wb")
        self.proc = subprocess.Popen([binary, "--config", "/dev/null"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if probe(self.port)[0] == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("%s did not answer /healthz" % binary)

    def status(self, key):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def probe(port, path=b"/healthz"):
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return 0, (time.monotonic() - t0) * 1000
    try:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        data = s.recv(4096)
    except OSError:
        data = b""
    finally:
        s.close()
    status = int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, (time.monotonic() - t0) * 1000


def probing(port, out, stop):
    while not stop.is_set():
        status, ms = probe(port)
        out.append((status, ms))
        time.sleep(0.05)


def open_conns(port):
    """Connections the server has open, this request's included."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /debug/status HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])["data"]["http"]["open"]


def finish(srv, conns, stop, prober, probes):
    """Stops the prober, reads the server's peak RSS, closes everything;
    returns (peak bytes, worst probe ms)."""
    stop.set()
    prober.join()
    peak = srv.status("VmHWM")
    for s in conns:
        s.close()
    srv.stop()
    return peak, max(ms for _, ms in probes)


def pipeline(binary):
    srv = Server(binary)
    req = b"GET /assets/app.js HTTP/1.1\r\nHost: x\r\n\r\n"
    payload = req * (64 * 1024 // len(req))
    probes, stop = [], threading.Event()
    t = threading.Thread(target=probing, args=(srv.port, probes, stop))
    t.start()
    conns = []
    for _ in range(20):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(payload)
        conns.append(s)
    t0 = time.monotonic()
    gone = None
    while time.monotonic() - t0 < 20:
        # Asked of the server: reading the sockets here would make them
        # readers, and a closed socket's FIN waits behind unread data.
        if open_conns(srv.port) <= 1:
            gone = time.monotonic() - t0
            break
        time.sleep(0.2)
    peak, worst = finish(srv, conns, stop, t, probes)
    return {"peak RSS MiB": peak / MiB, "healthz worst ms": worst,
            "all closed after s": gone if gone is not None else float("inf")}


def cap(binary):
    srv = Server(binary)
    held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4096)]
    time.sleep(1.0)
    results = [probe(srv.port) for _ in range(40)]
    times = sorted(ms for _, ms in results)
    for s in held:
        s.close()
    srv.stop()
    return {"healthz 200 of 40": sum(1 for st, _ in results if st == 200),
            "probe p50 ms": times[len(times) // 2], "probe worst ms": times[-1]}


def bodies(binary):
    srv = Server(binary)
    head = b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
    chunk = b"b" * 1000000
    probes, stop = [], threading.Event()
    t = threading.Thread(target=probing, args=(srv.port, probes, stop))
    t.start()
    conns = []
    for _ in range(400):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.settimeout(5)
        try:
            s.sendall(head + chunk)
        except OSError:
            pass
        conns.append(s)
    time.sleep(0.5)
    peak, worst = finish(srv, conns, stop, t, probes)
    return {"peak RSS MiB": peak / MiB, "healthz worst ms": worst}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    bins = sys.argv[1:3]
    for name, fn in (("pipeline", pipeline), ("cap", cap), ("bodies", bodies)):
        rows = [fn(b) for b in bins]
        for key in rows[0]:
            vals = [r[key] for r in rows]
            line = "%-9s %-24s %10.1f" % (name, key, vals[0])
            if len(vals) > 1:
                ratio = (vals[1] / vals[0]) if vals[0] else float("inf")
                line += "   baseline %10.1f   baseline/new %6.2f" % (vals[1], ratio)
            print(line, flush=True)


if __name__ == "__main__":
    main()
