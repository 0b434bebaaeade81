#!/usr/bin/env bash
# make demo: everything on this machine, from nothing.
#   - installs missing packages and builds highlander
#   - starts (or reuses) the local control plane with two fake nodes
#   - starts a local redis-server on 127.0.0.1:6390
#   - starts two controller replicas (HTTP on 127.0.0.1:8081 and :8082)
#     with a sample config (one workload of each kind)
#   - applies manifests/crds.yaml and one resource of each kind
# make demo-stop ends it.  State and logs live in build/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=build/demo
mkdir -p "$DEMO"
step() { printf '\n==> %s\n' "$*"; }

if [ "${1:-}" = "stop" ]; then
    for f in "$DEMO"/*.pid; do
        [ -f "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    HIGHLANDER_KWOK_CLUSTER=highlander-demo bash test/cluster/cluster.sh down || true
    echo "demo stopped"
    exit 0
fi

step "installing what is missing (make deps)"
make -s deps
step "building highlander"
make -s all
step "local Kubernetes control plane (first run builds it from Go modules: 10-30 min; cached afterwards)"
KC=$(HIGHLANDER_KWOK_CLUSTER=highlander-demo bash test/cluster/cluster.sh up | tail -1 | cut -d= -f2)
K="$HOME/.cache/highlander/k8s-v1.36.3/bin/kubectl --kubeconfig $KC"
$K apply -f manifests/crds.yaml >/dev/null
$K wait --for=condition=Established crd --all --timeout=60s >/dev/null
$K create namespace demo >/dev/null 2>&1 || true

step "redis-server on 127.0.0.1:6390"
if ! redis-cli -p 6390 ping >/dev/null 2>&1; then
    redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --pidfile "$PWD/$DEMO/redis.pid" --logfile "$PWD/$DEMO/redis.log"
fi

cat >"$DEMO/config.yaml" <<YAML
tenant: demo
namespace: demo
redis:
  addr: 127.0.0.1:6390
cluster:
  name: local
  kubeconfig: $KC
leaderElection: {leaseDuration: 6s, renewDeadline: 4s, retryPeriod: 1s}
workloads:
  processes:
    - name: config-process
      image: busybox:1.36
      script: {commands: ["sleep 3600"]}
  cronJobs:
    - name: config-cron
      image: busybox:1.36
      schedule: "*/10 * * * *"
      script: {commands: ["date"]}
  services:
    - name: config-service
      image: nginx:1.27
      replicas: 1
      script: {commands: ["nginx -g 'daemon off;'"]}
      ports: [{name: http, containerPort: 80}]
  persistentSets:
    - name: config-store
      image: redis:7
      replicas: 1
      script: {commands: [redis-server]}
YAML

step "two controller replicas"
for i in 1 2; do
    pidf="$DEMO/replica-$i.pid"
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        continue
    fi
    HIGHLANDER_BIND_ADDRESS=127.0.0.1 nohup build/highlander --config "$DEMO/config.yaml" --id "replica-$i" \
        --port "808$i" >"$DEMO/replica-$i.log" 2>&1 &
    echo $! >"$pidf"
done

step "sample resources (manifests/samples.yaml)"
$K apply -f manifests/samples.yaml >/dev/null

step "waiting for a leader and healthy workloads"
for _ in $(seq 1 120); do
    n=$(curl -sf http://127.0.0.1:8081/status 2>/dev/null | python3 -c \
        'import json,sys; d=json.load(sys.stdin)["data"]["workloadStatus"]; print(d["healthy"])' 2>/dev/null || echo 0)
    [ "$n" -ge 7 ] && break
    sleep 1
done
leader=$(curl -sf http://127.0.0.1:8081/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["currentLeader"])')

cat <<TXT

highlander demo is running (leader: $leader).

  Dashboard:           http://127.0.0.1:8081/   (replica 1)
                       http://127.0.0.1:8082/   (replica 2)
  API:                 /status /api/workloads /api/pods /metrics on either
  Status:              curl -s http://127.0.0.1:8081/status
  Watch the workloads: export KUBECONFIG=$KC
                       $K get wlp,wlc,wls,wlper -n demo -w
                       $K get pods -n demo -w
  Make a workload:     scripts/workload.py create --kind process --name mine --namespace demo --image busybox
  Fail over:           kill \$(cat $DEMO/replica-1.pid)   (or replica-2)
  Stop:                make demo-stop
TXT
