#!/usr/bin/env python3
"""Watch benchmark against the local control plane (started if needed):

  - 10,000 ConfigMaps in a namespace; an informer (test/tools/kube_driver
    watch) lists and syncs them: time from start to synced;
  - the informer is frozen (SIGSTOP) while 10,000 updates are made, then
    thawed: events per second it applies from the backlog;
  - RSS of the informer process before listing, after sync, after the
    burst.

Targets: sync <= 2 s, >= 5,000 events/s, RSS growth <= 48 MiB.
  bench/watch/run.py [TOOLS_DIR]
"""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../test/system"))
if len(sys.argv) > 1:
    os.environ["HIGHLANDER_TOOLS"] = os.path.abspath(sys.argv[1])

import conftest  # noqa: E402

N = 10000


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    p = subprocess.run(["bash", os.path.join(conftest.ROOT, "test/cluster/cluster.sh"), "up"], capture_output=True)
    if p.returncode != 0:
        sys.exit(p.stderr.decode())
    kube = conftest.Kube(p.stdout.decode().strip().splitlines()[-1].split("=", 1)[1])
    ns = kube.namespace("bench-watch")
    kube.driver("--qps", "3000", "--burst", "3000", "create-many", ns, str(N), "b", check=True)

    # A tiny pause lets the driver start before we sample its RSS: it
    # blocks on nothing but the first LIST.
    w = kube.driver_bg("watch", "", "v1", "configmaps", ns)
    t0 = time.monotonic()
    rss0 = rss(w.pid)
    os.set_blocking(w.stdout.fileno(), False)
    buf = b""
    synced_at = None
    while synced_at is None and time.monotonic() - t0 < 60:
        chunk = w.stdout.read()
        if chunk:
            buf += chunk
            if b"SYNCED" in buf:
                synced_at = time.monotonic()
        else:
            time.sleep(0.001)
    assert synced_at, buf[-500:]
    rss_synced = rss(w.pid)

    w.send_signal(signal.SIGSTOP)
    kube.driver("--qps", "3000", "--burst", "3000", "update-many", ns, str(N), "b", check=True)
    w.send_signal(signal.SIGCONT)
    t1 = time.monotonic()
    count = 0
    first = last = None
    buf = b""
    while count < N and time.monotonic() - t1 < 120:
        chunk = w.stdout.read()
        if not chunk:
            time.sleep(0.001)
            continue
        buf += chunk
        n = buf.count(b"\nMODIFIED ") + (1 if buf.startswith(b"MODIFIED ") else 0)
        if n and first is None:
            first = time.monotonic()
        count += n
        buf = buf[buf.rfind(b"\n") + 1:] if b"\n" in buf else buf
        last = time.monotonic()
    rss_after = rss(w.pid)
    w.send_signal(signal.SIGTERM)
    w.communicate(timeout=10)
    kube.kubectl("delete", "namespace", ns, "--wait=false")
    rate = count / (last - t1) if last and last > t1 else 0
    print("list+sync of %d ConfigMaps: %.3f s (target <= 2 s)" % (N, synced_at - t0))
    print("backlog of %d updates applied: %d events in %.3f s = %.0f events/s (target >= 5000)" %
          (N, count, (last or t1) - t1, rate))
    print("RSS: start %.1f MiB, synced %.1f MiB, after burst %.1f MiB, growth %.1f MiB (target <= 48 MiB)" %
          (rss0 / 2**20, rss_synced / 2**20, rss_after / 2**20, (rss_after - rss0) / 2**20))


if __name__ == "__main__":
    main()
