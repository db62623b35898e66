#!/usr/bin/env bash
# Build a local Kubernetes (server binaries, kubectl and the pod sandbox's
# "pause" program) from Debian bookworm's `kubernetes` source package, for the
# single-node test cluster of cluster-up.sh. No registry or GitHub download:
# only Debian's packages.
#
# The result goes to $MLOPS_CACHE_HOME/kubernetes/<hash of this script>/bin
# and is reused while this script is unchanged (a clean build takes 6-10
# minutes on 2 cores). Prints that directory.
#
# Usage: infra/kubernetes/build.sh        (root, or sudo for apt-get)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=1.20.5+really1.20.2-1.1+deb12u1
HASH=$(sha256sum "$HERE/build.sh" | cut -c1-16)
CACHE=${MLOPS_CACHE_HOME:-$HOME/.cache/mlops-template}/kubernetes/$HASH
OUT=$CACHE/bin
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

if [ -f "$OUT/.complete" ]; then
  echo "$OUT"
  exit 0
fi
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
WORK=$CACHE/build
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$OUT"

# A private source list: the machine's apt configuration is left as it is.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
  || true)
mirror=${mirror:-http://deb.debian.org/debian}
echo "deb-src $mirror bookworm main" > "$WORK/apt/src.list"
apt_private=(-o "Dir::Etc::SourceList=$WORK/apt/src.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache")
echo "installing the build tools (Go 1.19 from Debian)" >&2
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  golang-go golang-github-modern-go-reflect2-dev dpkg-dev make gcc libc6-dev rsync >/dev/null
apt-get "${apt_private[@]}" update -qq
cd "$WORK"
apt-get "${apt_private[@]}" source -qq --download-only "kubernetes=$VERSION"
rm -rf src
dpkg-source -x kubernetes_*.dsc src >/dev/null
cd src

# Go >= 1.18 crashes in the vendored reflect2 1.0.1: use Debian's 1.0.2.
rm -rf vendor/github.com/modern-go/reflect2
mkdir vendor/github.com/modern-go/reflect2
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} vendor/github.com/modern-go/reflect2/
rm -f vendor/github.com/modern-go/reflect2/*_test.go
# Containers without CAP_SYS_RESOURCE cannot lower oom_score_adj: the kubelet
# must not ask for a negative one for sandboxes and guaranteed pods.
sed -i 's/defaultSandboxOOMAdj int = -998/defaultSandboxOOMAdj int = 0/' \
  pkg/kubelet/dockershim/docker_sandbox.go
sed -i 's/guaranteedOOMScoreAdj int = -997/guaranteedOOMScoreAdj int = 0/' pkg/kubelet/qos/policy.go

echo "building ${BINARIES[*]} (several minutes)" >&2
what=$(printf 'cmd/%s ' "${BINARIES[@]}")
HOME=$WORK/home make WHAT="$what" >/dev/null
for binary in "${BINARIES[@]}"; do cp "_output/bin/$binary" "$OUT/"; done
# The pod sandbox: Kubernetes' own pause.c, static, for an image FROM scratch.
gcc -Os -static -o "$OUT/pause" build/pause/linux/pause.c
strip "$OUT"/* 2>/dev/null || true
cd / && rm -rf "$WORK"
touch "$OUT/.complete"
echo "$OUT"
