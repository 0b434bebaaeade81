#!/bin/sh
# HTTP benchmark: wrk on loopback, 1 thread, 100 connections, against
# /healthz and /metrics; prints requests/s, p99 latency and idle RSS.
# The controller is pinned to CPU 0 and wrk to CPU 1 so "one core" means
# one core for the server.
#   bench/http/run.sh [BINARY] [SECONDS]
set -eu
bin=${1:-build/highlander}
secs=${2:-10}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tmp=$(mktemp -d)
HOME=$tmp HIGHLANDER_BIND_ADDRESS=127.0.0.1 HIGHLANDER_PORT=$port HIGHLANDER_LOG_LEVEL=warn \
    taskset -c 0 "$bin" --config /dev/null >"$tmp/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
i=0
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { cat "$tmp/log"; exit 1; }; sleep 0.05
done
sleep 1
idle_kb=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)
anon_kb=$(awk '/^RssAnon:/ {print $2}' /proc/$pid/status)
file_kb=$(awk '/^RssFile:/ {print $2}' /proc/$pid/status)
# RssFile is shared library code mapped in; how much of it counts depends
# on the page cache (the kernel maps cached neighbours of a faulted page),
# so the process's own memory is RssAnon.
echo "idle RSS: $((idle_kb / 1024)).$(( (idle_kb % 1024) * 10 / 1024 )) MiB ($idle_kb KiB:" \
     "anonymous $anon_kb KiB, shared-library file pages $file_kb KiB)"
for path in /healthz /metrics; do
    out=$(taskset -c 1 wrk -t1 -c100 -d"${secs}s" --latency "http://127.0.0.1:$port$path")
    rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')
    echo "$path: $rps req/s, p99 $p99 ${errs:+($errs)}"
done
loaded_kb=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)
echo "RSS after load: $((loaded_kb / 1024)) MiB"
