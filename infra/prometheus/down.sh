#!/usr/bin/env bash
# Stop the Prometheus of up.sh and its discovery loop (the data stays).
set -euo pipefail
dir=${MLOPS_CACHE_HOME:-$HOME/.cache/mlops-template}/prometheus
stopped=""
for name in prometheus discover; do
  pidfile=$dir/$name.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    stopped=1
  fi
  rm -f "$pidfile"
done
if [ -n "$stopped" ]; then echo "prometheus stopped"; else echo "prometheus was not running"; fi
