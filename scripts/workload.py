#!/usr/bin/env python3
"""Create or delete highlander workload resources from flags.

  scripts/workload.py create --kind process --name NAME [--namespace NS] --image IMG
                             [--command CMD ...] [--schedule CRON] [--replicas N]
                             [--cpu-request Q] [--memory-request Q] [--cpu-limit Q] [--memory-limit Q]
                             [--env K=V ...] [--port NAME:CONTAINER[:SERVICE] ...] [--max-restarts N]
                             [--dry-run]
  scripts/workload.py delete --kind process --name NAME [--namespace NS]

kubectl and KUBECONFIG come from the environment (make cluster-up prints
the KUBECONFIG line; the demo prints it too).  With --dry-run the resource
is printed instead of applied.
"""
import argparse
import json
import os
import subprocess
import sys

KINDS = {"process": ("WorkloadProcess", "wlp"), "cronjob": ("WorkloadCronJob", "wlc"),
         "service": ("WorkloadService", "wls"), "persistent": ("WorkloadPersistent", "wlper")}


def kubectl():
    cache = os.environ.get("HIGHLANDER_CACHE", os.path.expanduser("~/.cache/highlander"))
    local = os.path.join(cache, "k8s-v1.36.3", "bin", "kubectl")
    return local if os.path.exists(local) else "kubectl"


def build(a):
    kind, _ = KINDS[a.kind]
    spec = {"image": a.image, "script": {"commands": a.command or ["sleep 3600"]}}
    res = {k: v for k, v in (("cpuRequest", a.cpu_request), ("memoryRequest", a.memory_request),
                             ("cpuLimit", a.cpu_limit), ("memoryLimit", a.memory_limit)) if v}
    if res:
        spec["resources"] = res
    if a.env:
        spec["env"] = dict(e.split("=", 1) for e in a.env)
    if a.port:
        ports = []
        for p in a.port:
            parts = p.split(":")
            port = {"name": parts[0], "containerPort": int(parts[1])}
            if len(parts) > 2:
                port["servicePort"] = int(parts[2])
            ports.append(port)
        spec["ports"] = ports
    if a.kind == "cronjob":
        if not a.schedule:
            sys.exit("--schedule is required for a cronjob")
        spec["schedule"] = a.schedule
    if a.kind in ("service", "persistent"):
        spec["replicas"] = a.replicas
    if a.kind == "process" and a.max_restarts is not None:
        spec["maxRestarts"] = a.max_restarts
    return {"apiVersion": "highlander.plexobject.io/v1", "kind": kind,
            "metadata": {"name": a.name, "namespace": a.namespace}, "spec": spec}


def main():
    p = argparse.ArgumentParser(description="Create or delete highlander workload resources.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="create or update a workload resource")
    d = sub.add_parser("delete", help="delete a workload resource")
    for q in (c, d):
        q.add_argument("--kind", choices=sorted(KINDS), required=True)
        q.add_argument("--name", required=True)
        q.add_argument("--namespace", default="default")
    c.add_argument("--image", required=True)
    c.add_argument("--command", action="append", help="a script line (repeat for more)")
    c.add_argument("--schedule")
    c.add_argument("--replicas", type=int, default=1)
    c.add_argument("--cpu-request")
    c.add_argument("--memory-request")
    c.add_argument("--cpu-limit")
    c.add_argument("--memory-limit")
    c.add_argument("--env", action="append", help="K=V (repeat for more)")
    c.add_argument("--port", action="append", help="NAME:CONTAINER[:SERVICE]")
    c.add_argument("--max-restarts", type=int)
    c.add_argument("--dry-run", action="store_true")
    a = p.parse_args()
    if a.cmd == "create":
        doc = json.dumps(build(a), indent=2)
        if a.dry_run:
            print(doc)
            return
        subprocess.run([kubectl(), "apply", "-f", "-"], input=doc.encode(), check=True)
    else:
        subprocess.run([kubectl(), "-n", a.namespace, "delete", KINDS[a.kind][1], a.name], check=True)


if __name__ == "__main__":
    main()
