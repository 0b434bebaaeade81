#!/usr/bin/env python3
"""Failover benchmark: 3 replicas on a real redis-server with a 2 s lease.

  kill -9   time from the killed leader's last renewal (derived from the
            lock's PTTL at the kill) to the new leader's lead-start
  SIGTERM   time from the old leader's lead-stop to the new lead-start

Prints median and max for each; targets: crash <= lease + 0.5 s,
graceful <= 100 ms median.
  bench/failover/run.py [BINARY] [TRIALS]
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../test/system"))
os.environ.setdefault("HIGHLANDER_BIN", os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                                                        os.path.join(HERE, "../../build/highlander")))

import conftest  # noqa: E402
from lease_helpers import (LEASE_S, Cluster, LeaseStore, PgStore, RedisServer, RedisStore,  # noqa: E402
                           check_no_overlap, mono_ns)

TRIALS = int(sys.argv[2]) if len(sys.argv) > 2 else 20


def factory_list():
    made = []

    def make(*a, **kw):
        c = conftest.Controller(*a, **kw)
        made.append(c)
        return c
    return make, made


def make_store(name):
    if name == "redis":
        return RedisStore()
    if name == "db":
        return PgStore()
    import subprocess
    p = subprocess.run(["bash", os.path.join(conftest.ROOT, "test/cluster/cluster.sh"), "up"], capture_output=True)
    kube = conftest.Kube(p.stdout.decode().strip().splitlines()[-1].split("=", 1)[1])
    return LeaseStore(kube, kube.namespace("bench-failover"))


def run(kind, store_name):
    store = make_store(store_name)
    make, made = factory_list()
    cl = Cluster(make, None, n=3, store=store)
    results = []
    try:
        cl.wait_one_leader()
        for i in range(TRIALS):
            leader = cl.wait_one_leader()
            time.sleep(0.6)
            before = len(open(cl.log_path).read().splitlines())
            if kind == "kill":
                leader.proc.kill()
                t_kill = mono_ns()
                if store_name == "redis":
                    # The exact last renewal, from the record's remaining life.
                    pttl = int(store.server.cmd("PTTL", "highlander-leader-lock:default"))
                    last_renewal = t_kill + pttl * 1_000_000 - int(LEASE_S * 1e9)
                else:
                    last_renewal = t_kill  # an upper bound: measured from the kill
            else:
                leader.terminate()
            others = [c for c in cl.alive()]
            cl.wait_one_leader(timeout=LEASE_S + 5, among=others)
            iv = check_no_overlap(cl.log_path)
            new_start = iv[-1][1]
            if kind == "kill":
                results.append((new_start - last_renewal) / 1e9)
            else:
                results.append((new_start - iv[-2][2]) / 1e9)
            cl.replicas.remove(leader)
            cl.add("r-%s-%d" % (kind, i))
    finally:
        for c in made:
            c.kill()
        store.stop()
    return results


def main():
    stores = os.environ.get("BENCH_STORES", "redis,db,lease").split(",")
    for store_name in stores:
        for kind, label, target in (("kill", "kill -9", "<= %.1f s" % (LEASE_S + 0.5)),
                                    ("term", "SIGTERM handover", "<= 0.100 s median")):
            r = run(kind, store_name)
            origin = " (from last renewal)" if kind == "kill" and store_name == "redis" else (
                " (from the kill)" if kind == "kill" else "")
            print("%-6s %-36s trials %d  median %.3f s  max %.3f s  (target %s)" %
                  (store_name, label + origin, len(r), statistics.median(r), max(r), target))


if __name__ == "__main__":
    main()
