#!/usr/bin/env bash
# Build a minimal Debian base image with python3 and venv, without pulling
# anything from a container registry: debootstrap a root file system from a
# Debian mirror, then `docker import` it. For air-gapped or registry-less
# hosts; the result can replace python:3.11-slim as the scoring image's base:
#
#   infra/base-image/build.sh mlops-base:bookworm
#   MLOPS_BASE_IMAGE=mlops-base:bookworm make image
#
# Needs root (debootstrap), debootstrap and a running Docker engine.
# Environment: DEBIAN_MIRROR (default deb.debian.org), DEBIAN_SUITE (bookworm).
set -euo pipefail

tag=${1:-mlops-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${DEBIAN_SUITE:-bookworm}

if [ "$(id -u)" -ne 0 ]; then
  echo "error: debootstrap needs root; run with sudo" >&2
  exit 2
fi
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "error: no Docker engine is reachable" >&2; exit 2; }

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT

echo "debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror"

# Nothing the image needs at run time: package lists, docs, caches, and the
# messages' translations (33 MB; the image runs in C.UTF-8).
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/usr/share/locale/*

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$tag"
docker run --rm "$tag" python3 -c 'import sys, venv; print("python", sys.version.split()[0])'
echo "built $tag"
