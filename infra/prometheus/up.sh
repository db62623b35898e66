#!/usr/bin/env bash
# Start a Prometheus on 127.0.0.1 that scrapes the scoring pods of a cluster:
# what `mlops promote` asks, between canary steps, how the canary and the
# stable version compare (README "Canary and shadow releases"). Debian's
# `prometheus` package (apt install prometheus), or PROMETHEUS=<binary>.
#
# Targets: every Running pod annotated prometheus.io/scrape=true, at its pod
# IP, labelled with its namespace, pod and track (the pod's label
# mlops-template.io/track: stable or canary). A Prometheus with Kubernetes
# discovery gets them from scrape-scoring.yml; Debian's is built without it,
# so discover.py feeds this one the same targets through a file_sd file
# (kubectl get pods every 2 s).
#
# Environment: KUBECONFIG (default: the local cluster of `make cluster-up`),
# MLOPS_KUBECTL (default: kubectl, or the one `make cluster-up` built),
# PROMETHEUS_PORT (9090), SCRAPE_INTERVAL (1s here; the canary's analysis
# window, MLOPS_CANARY_STEP_SECONDS, should span at least 4 scrapes),
# SCRAPE_KEY_FILE (a file holding a /metrics key, for pods that require one:
# MLOPS_METRICS_KEYS).
set -euo pipefail
cd "$(dirname "$0")"

cache=${MLOPS_CACHE_HOME:-$HOME/.cache/mlops-template}
dir=$cache/prometheus
port=${PROMETHEUS_PORT:-9090}
interval=${SCRAPE_INTERVAL:-1s}
kubeconfig=${KUBECONFIG:-$cache/cluster/kubeconfig}
prometheus=${PROMETHEUS:-$(command -v prometheus || true)}
kubectl=${MLOPS_KUBECTL:-$(command -v kubectl || ls "$cache"/kubernetes/*/bin/kubectl 2>/dev/null | head -1 || true)}
url=http://127.0.0.1:$port

if [ -z "$prometheus" ]; then
  echo "prometheus not found: apt install prometheus (Debian/Ubuntu), or set PROMETHEUS=<binary>" >&2
  exit 1
fi
if [ -z "$kubectl" ]; then
  echo "kubectl not found: install it, or set MLOPS_KUBECTL (make cluster-up builds one)" >&2
  exit 1
fi
if [ ! -f "$kubeconfig" ]; then
  echo "no kubeconfig at $kubeconfig: start a cluster (make cluster-up) or set KUBECONFIG" >&2
  exit 1
fi
# One started before is stopped first, so this configuration applies.
./down.sh >/dev/null
mkdir -p "$dir/data"
echo '[]' > "$dir/targets.json"

cat > "$dir/prometheus.yml" <<CONFIG
# Written by infra/prometheus/up.sh.
global:
  scrape_interval: $interval
  scrape_timeout: $interval
  evaluation_interval: $interval
scrape_configs:
  - job_name: scoring
    file_sd_configs:
      - files: [$dir/targets.json]
CONFIG
if [ -n "${SCRAPE_KEY_FILE:-}" ]; then
  printf '    authorization:\n      credentials_file: %s\n' "$(realpath "$SCRAPE_KEY_FILE")" \
    >> "$dir/prometheus.yml"
fi

setsid python3 discover.py --kubectl "$kubectl" --kubeconfig "$kubeconfig" \
  --out "$dir/targets.json" > "$dir/discover.log" 2>&1 < /dev/null &
echo $! > "$dir/discover.pid"
setsid "$prometheus" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
  --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$port" \
  > "$dir/prometheus.log" 2>&1 < /dev/null &
echo $! > "$dir/prometheus.pid"

for _ in $(seq 1 60); do
  if curl -fsS "$url/-/ready" >/dev/null 2>&1; then
    echo "prometheus ready at $url (the scoring pods of $kubeconfig, every $interval)"
    echo "export MLOPS_PROMETHEUS_URL=$url"
    exit 0
  fi
  kill -0 "$(cat "$dir/prometheus.pid")" 2>/dev/null || break
  sleep 0.5
done
tail -20 "$dir/prometheus.log" >&2
echo "prometheus did not start (log: $dir/prometheus.log)" >&2
exit 1
