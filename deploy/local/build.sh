#!/bin/sh
# Build the host-network stack's images without an image registry (docs/scale-out.md#built-and-run-here):
#   finsent-base:bookworm      debootstrap bookworm, imported (deploy/local/base-image.sh)
#   finsent-services:bookworm  PostgreSQL 15 + Redis 7 from Debian's packages, on that base
#   finsent:cpu                deploy/Dockerfile on that base, torch from a local wheel if one is found
# Needs root and a running Docker Engine (Docker 20.10+, BuildKit). pip reaches the package index through the
# host network; a CA bundle for a TLS-inspecting proxy is passed as the build secret pip_cert (PIP_CERT, else
# the system bundle), never stored in an image.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p .state/stack
BASE=${FINSENT_BASE_IMAGE:-finsent-base:bookworm}
SERVICES=${FINSENT_SERVICES_IMAGE:-finsent-services:bookworm}
APP=${FINSENT_IMAGE:-finsent:cpu}
CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
export DOCKER_BUILDKIT=1
# the engine's own client: Debian's docker.io builds with its built-in BuildKit (a newer client may want buildx)
DOCKER=$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker )
t0=$(date +%s)
deploy/local/base-image.sh "$BASE"
t1=$(date +%s)

# the local torch wheel (pip's find-links folder here), if any: the build then needs no PyTorch index
if ! ls deploy/wheels/torch-2.13.0*.whl >/dev/null 2>&1; then
  for dir in ${PIP_FIND_LINKS:-} $(pip config get global.find-links 2>/dev/null || true) /opt/wheels; do
    for whl in "$dir"/torch-2.13.0+cpu-*.whl; do
      [ -f "$whl" ] && { cp "$whl" deploy/wheels/ && echo "torch wheel: $whl"; break 2; }
    done
  done
fi
$DOCKER build --network host -q -f deploy/local/Dockerfile.services --build-arg BASE_IMAGE="$BASE" -t "$SERVICES" deploy/local >/dev/null
t2=$(date +%s)
secret=""; [ -s "$CERT" ] && secret="--secret id=pip_cert,src=$CERT"
# shellcheck disable=SC2086
$DOCKER build --network host --progress plain $secret --build-arg PYTHON_IMAGE="$BASE" -f deploy/Dockerfile -t "$APP" . \
  > .state/stack/build.log 2>&1 || { tail -n 40 .state/stack/build.log; exit 1; }
t3=$(date +%s)
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }
echo "built: $BASE $(size "$BASE") in $((t1 - t0)) s; $SERVICES $(size "$SERVICES") in $((t2 - t1)) s; $APP $(size "$APP") in $((t3 - t2)) s"
