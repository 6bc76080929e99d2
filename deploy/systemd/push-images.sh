#!/usr/bin/env bash
# Build kctl's offline images and push them into a registry under their
# docker.io names, so that node agents with
# `--registry-mirror docker.io=http://REGISTRY` resolve plain references:
#   busybox:latest, busybox:1.36  ->  REGISTRY/library/busybox:{latest,1.36}
#   kctl/echo:latest              ->  REGISTRY/kctl/echo:latest
#
#   push-images.sh REGISTRY_HOST:PORT [BUILD_DIR]    (BUILD_DIR: /var/lib/kctl/images)
#
# Idempotent: the build is cached (deploy/images.py) and skopeo skips the
# blobs the registry has. The registry speaks plain http (kctl-registry).
set -euo pipefail
REGISTRY=${1:?usage: push-images.sh REGISTRY_HOST:PORT [BUILD_DIR]}
BUILD_DIR=${2:-/var/lib/kctl/images}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

for ((i = 0; i < 30; i++)); do   # wait for the registry (it may be starting)
    if .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://$REGISTRY/v2/" 2>/dev/null; then
        break
    fi
    ((i < 29)) || { echo "push-images.sh: no registry answers on http://$REGISTRY/v2/" >&2; exit 1; }
    sleep 1
done
.venv/bin/python -m deploy.images "$BUILD_DIR" | while read -r ref _ layout; do
    case "$ref" in */*) dest=$ref ;; *) dest=library/$ref ;; esac   # docker.io naming
    skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$layout" "docker://$REGISTRY/$dest"
    echo "  $ref -> $REGISTRY/$dest"
done
