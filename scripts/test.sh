#!/usr/bin/env bash
# The project's test command (the one README.md documents and .ci/run runs):
# installs what is missing, then runs the whole suite (unit, integration on a
# real etcd + apiserver on loopback, root tests with real runc/netns, e2e on
# the one-machine lab). Must run as root. pytest's exit code is passed
# through: 5 ("no tests collected") is a failure like any other non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: run as root (the tests create namespaces, containers and iptables rules)" >&2
    exit 1
fi
bash deploy/install.sh
# Test-only Debian packages: vagrant lets tests/unit/test_deploy_files.py
# run `vagrant validate` on deploy/vagrant/Vagrantfile.
if ! command -v vagrant >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends vagrant >/dev/null
fi
# --- Vagrant lab (tests/e2e/test_vagrant.py boots VMs when the machine can) ---
# vagrant-libvirt, libvirt, QEMU and the box builder's tools; the test skips,
# with the reason, where VMs cannot run (KCTL_VAGRANT_TEST=0 skips it too).
bash deploy/vagrant/install-host.sh
# --- end Vagrant lab ---
exec .venv/bin/pytest -p no:cacheprovider -q -ra "$@"
