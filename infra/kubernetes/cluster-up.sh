#!/usr/bin/env bash
# Start a single-node Kubernetes on this machine: etcd, the API server,
# controller manager, scheduler, kubelet (on the local Docker engine, so pods
# run images built here) and kube-proxy (Services, NodePorts on 127.0.0.1
# only). Binaries come from build.sh (built once, cached). For tests and for
# trying the release on a laptop; not for serving anything real.
#
# Usage: infra/kubernetes/cluster-up.sh   (root; needs a running Docker engine)
# Then:  export KUBECONFIG=$MLOPS_CACHE_HOME/cluster/kubeconfig  (printed at the end)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${MLOPS_CACHE_HOME:-$HOME/.cache/mlops-template}/cluster
NODE=localhost
PAUSE_IMAGE=k8s.gcr.io/pause:3.2
export KUBECONFIG=$ROOT/kubeconfig

if [ -f "$ROOT/apiserver.pid" ] && kill -0 "$(cat "$ROOT/apiserver.pid")" 2>/dev/null; then
  echo "a cluster is already running in $ROOT (infra/kubernetes/cluster-down.sh stops it)"
  echo "export KUBECONFIG=$KUBECONFIG"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "cluster-up.sh runs the kubelet and kube-proxy: run it as root" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "no Docker engine answers: start dockerd first" >&2; exit 2; }

BIN=$("$HERE/build.sh")
if ! command -v etcd >/dev/null || ! command -v socat >/dev/null \
    || ! command -v iptables >/dev/null; then
  echo "installing etcd, iptables and socat (kubectl port-forward) from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    etcd-server iptables conntrack socat >/dev/null
fi
mkdir -p "$ROOT/logs" "$ROOT/pki"
cd "$ROOT"

# The pod sandbox image, from the pause binary built with the cluster.
if ! docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
  context=$(mktemp -d)
  cp "$BIN/pause" "$context/pause"
  printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' > "$context/Dockerfile"
  docker build -q -t "$PAUSE_IMAGE" "$context" >/dev/null 2>&1 \
    || { echo "could not build the pause image $PAUSE_IMAGE" >&2; exit 1; }
  rm -rf "$context"
fi

# Credentials: static tokens per component, a service-account signing key;
# the API server makes its own self-signed serving certificate.
[ -f pki/sa.key ] || openssl genrsa -out pki/sa.key 2048 2>/dev/null
token() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
admin=$(token) kubelet=$(token) cm=$(token) sched=$(token) proxy=$(token)
cat > pki/tokens.csv <<TOKENS
$admin,admin,1,"system:masters"
$kubelet,system:node:$NODE,2,"system:nodes"
$cm,system:kube-controller-manager,3
$sched,system:kube-scheduler,4
$proxy,system:kube-proxy,5
TOKENS
chmod 600 pki/tokens.csv pki/sa.key
kubeconfig() {
  cat > "$1" <<CONFIG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: $3, user: {token: $2}}]
contexts: [{name: local, context: {cluster: local, user: $3}}]
current-context: local
CONFIG
  chmod 600 "$1"
}
kubeconfig kubeconfig "$admin" admin
kubeconfig kubelet.kubeconfig "$kubelet" kubelet
kubeconfig cm.kubeconfig "$cm" controller-manager
kubeconfig sched.kubeconfig "$sched" scheduler
kubeconfig proxy.kubeconfig "$proxy" kube-proxy

start() {  # name, command...: run in the background, pid and log in $ROOT
  local name=$1; shift
  nohup "$@" > "logs/$name.log" 2>&1 &
  echo $! > "$name.pid"
}
wait_for() {  # seconds, description, command...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "$what did not come up in ${seconds}s; logs in $ROOT/logs" >&2
  exit 1
}

started=$(date +%s)
start etcd etcd --data-dir "$ROOT/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380
start apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 --secure-port=6443 \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --cert-dir="$ROOT/pki" \
  --token-auth-file="$ROOT/pki/tokens.csv" --authorization-mode=Node,RBAC \
  --service-cluster-ip-range=10.96.0.0/24 --service-node-port-range=30000-32767 \
  --service-account-key-file="$ROOT/pki/sa.key" \
  --service-account-signing-key-file="$ROOT/pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc \
  --api-audiences=https://kubernetes.default.svc --enable-admission-plugins=NodeRestriction \
  --kubelet-preferred-address-types=Hostname
wait_for 60 "the API server" "$BIN/kubectl" get --raw=/readyz
start controller-manager "$BIN/kube-controller-manager" --kubeconfig="$ROOT/cm.kubeconfig" \
  --leader-elect=false --service-account-private-key-file="$ROOT/pki/sa.key" \
  --use-service-account-credentials=true --bind-address=127.0.0.1
start scheduler "$BIN/kube-scheduler" --kubeconfig="$ROOT/sched.kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1
# The kubelet shares this machine's Docker engine: it must never delete the
# engine's images (its image GC removes every unused one once the disk is 85%
# full: base images, QA images, a developer's own) nor evict pods because a
# shared disk filled up. Image GC is off (high threshold 100%) and the hard
# eviction thresholds are the minimum that still protects the machine. Pods
# are re-synced every 10 s (1 min by default), so a changed Secret or
# ConfigMap (API keys, a shadow's address) reaches their files sooner.
start kubelet "$BIN/kubelet" --kubeconfig="$ROOT/kubelet.kubeconfig" --hostname-override=$NODE \
  --container-runtime=docker --pod-infra-container-image=$PAUSE_IMAGE \
  --root-dir="$ROOT/kubelet" --cert-dir="$ROOT/kubelet-pki" --fail-swap-on=false \
  --cgroup-driver=cgroupfs --address=127.0.0.1 --healthz-bind-address=127.0.0.1 \
  --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
  --eviction-hard='memory.available<100Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<1%' \
  --sync-frequency=10s
# NodePorts only on loopback: what the tests (and a person) reach Services by.
start proxy "$BIN/kube-proxy" --kubeconfig="$ROOT/proxy.kubeconfig" --hostname-override=$NODE \
  --proxy-mode=iptables --nodeport-addresses=127.0.0.0/8 --conntrack-max-per-core=0 \
  --bind-address=127.0.0.1 --healthz-bind-address=127.0.0.1:10256 \
  --metrics-bind-address=127.0.0.1:10249
node_ready() { "$BIN/kubectl" get node $NODE 2>/dev/null | grep -qw Ready; }
wait_for 120 "the node" node_ready
echo "cluster up in $(( $(date +%s) - started ))s ($("$BIN/kubectl" version --short 2>/dev/null \
  | tail -1)); kubectl: $BIN/kubectl"
echo "export KUBECONFIG=$KUBECONFIG"
