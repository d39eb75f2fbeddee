#!/bin/sh
# Make the local base image from Debian packages, for hosts that cannot pull from an image registry:
# debootstrap bookworm (minbase) into a folder, `docker import` it. Bookworm's python3 is 3.11, as in
# python:3.11-slim-bookworm. Needs root, debootstrap and a running Docker Engine. Idempotent: an existing
# image of that name is kept unless FORCE=1.
#   deploy/local/base-image.sh [IMAGE] [WORKDIR]        (defaults: finsent-base:bookworm, .state/stack)
set -eu
IMAGE=${1:-finsent-base:bookworm}
WORK=${2:-.state/stack}
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists (FORCE=1 rebuilds it)"; exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap not installed (apt-get install debootstrap)" >&2; exit 2; }
ROOT="$WORK/rootfs"
rm -rf "$ROOT" && mkdir -p "$ROOT"
start=$(date +%s)
# python3-venv: the image's virtualenv; curl: health checks; ca-certificates: pip over HTTPS
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,curl bookworm "$ROOT" "$MIRROR"
chroot "$ROOT" sh -c 'apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*'
tar -C "$ROOT" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  -c 'CMD ["bash"]' -m "debootstrap --variant=minbase bookworm from $MIRROR" - "$IMAGE" >/dev/null
rm -rf "$ROOT"
echo "base image $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}') in $(( $(date +%s) - start )) s"
