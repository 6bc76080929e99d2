#!/usr/bin/env bash
# Install everything kctl needs on Debian 12, as root, idempotently:
# the Debian packages (etcd, runc, conmon, skopeo, umoci, busybox-static,
# iptables, iproute2, docker-registry, conntrack; online also mmdebstrap, which
# builds the lab's images from Debian packages, deploy/debimages.py) and a
# virtual environment
# in .venv with kctl and its test extras installed in editable mode.
#
# Offline (a VM of the Vagrant lab, no route out): KCTL_WHEELHOUSE=DIR makes
# pip install from the wheels in DIR only (--no-index --find-links DIR; the
# box builder deploy/vagrant/box.py bakes them in), and apt is skipped when
# every package is present already (the box has them). Without a compiler
# the wheelhouse must hold binary wheels only, so python3-dev and gcc are
# not needed then.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(etcd-server runc conmon skopeo umoci busybox-static iptables iproute2
      docker-registry conntrack util-linux procps psmisc kmod ca-certificates
      python3 python3-venv)
WHEELHOUSE=${KCTL_WHEELHOUSE:-}
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || { echo "install.sh: KCTL_WHEELHOUSE=$WHEELHOUSE is not a directory" >&2; exit 1; }
    # the build backend (setuptools, wheel) comes from the wheelhouse too,
    # installed into .venv first: no isolated build environment to make.
    PIP_SOURCE=(--no-index --find-links "$WHEELHOUSE" --no-build-isolation)
else
    PKGS+=(python3-dev gcc)   # for any dependency without a binary wheel
    PKGS+=(mmdebstrap)        # the lab's Debian-package images (not in the offline VMs)
    PIP_SOURCE=()
fi

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian etcd and docker-registry packages start system services we
# do not use (kctl starts its own, on its own ports): stop them if running.
for svc in etcd docker-registry; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
    fi
done

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if [ -z "$WHEELHOUSE" ]; then
    .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
fi
if [ -n "$WHEELHOUSE" ] && ! .venv/bin/python -c "import setuptools, wheel" 2>/dev/null; then
    .venv/bin/pip install -q --no-index --find-links "$WHEELHOUSE" 'setuptools>=68' wheel
fi
.venv/bin/pip install -q "${PIP_SOURCE[@]}" -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import machinery.pb.api_pb2, grpc, aetcd, yaml, pyroute2" 
echo "kctl installed: $(.venv/bin/kctl --help >/dev/null 2>&1 && echo .venv/bin/kctl || echo 'kctl CLI not importable yet')"
