#!/usr/bin/env bash
# Stop the cluster of cluster-up.sh: its processes, its pods' containers, its
# iptables rules and its state. The built binaries stay cached.
set -uo pipefail
ROOT=${MLOPS_CACHE_HOME:-$HOME/.cache/mlops-template}/cluster
[ -d "$ROOT" ] || { echo "no cluster state in $ROOT"; exit 0; }
components=(kubelet proxy scheduler controller-manager apiserver etcd)
for name in "${components[@]}"; do
  [ -f "$ROOT/$name.pid" ] && kill "$(cat "$ROOT/$name.pid")" 2>/dev/null
done
sleep 2
for name in "${components[@]}"; do
  [ -f "$ROOT/$name.pid" ] && kill -9 "$(cat "$ROOT/$name.pid")" 2>/dev/null
  rm -f "$ROOT/$name.pid"
done
ids=$(docker ps -aq --filter label=io.kubernetes.pod.name 2>/dev/null)
[ -n "$ids" ] && docker rm -f $ids >/dev/null
mount | awk '{print $3}' | grep "^$ROOT/kubelet" | sort -r | xargs -r umount 2>/dev/null
# kube-proxy's and the kubelet's chains: flush, unhook, delete.
for table in nat filter; do
  iptables -t $table -S 2>/dev/null | grep -E '^-A .*(KUBE-)' | sed 's/^-A/-D/' \
    | while read -r rule; do eval iptables -t $table "$rule" 2>/dev/null; done
  for chain in $(iptables -t $table -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
    iptables -t $table -F "$chain" 2>/dev/null
  done
  for chain in $(iptables -t $table -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
    iptables -t $table -X "$chain" 2>/dev/null
  done
done
rm -rf "$ROOT/etcd" "$ROOT/kubelet" "$ROOT/kubelet-pki" "$ROOT"/*.kubeconfig "$ROOT/kubeconfig" \
  "$ROOT/pki/tokens.csv"
echo "cluster stopped"
