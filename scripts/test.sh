#!/usr/bin/env bash
# The project's test command (the one README.md documents and .ci/run runs):
# installs what is missing, then runs the whole suite (unit, integration on a
# real etcd + apiserver on loopback, root tests with real runc/netns, e2e on
# the one-machine lab). Must run as root. pytest's exit code is passed
# through: 5 ("no tests collected") is a failure like any other non-zero.
# The last lines printed say how many tests were skipped and why
# (scripts/run-pytest.sh).
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
# Test-only Debian packages: chromium is the headless browser the dashboard
# tests drive over its DevTools protocol (tests/integration/test_dashboard_browser.py,
# tests/e2e/test_lab_dashboard.py).
if ! command -v chromium >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# Test-only Debian packages: buildah, for the README's build/push/run
# walkthrough (tests/e2e/test_lab_build_push_run.py).
if ! command -v buildah >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >/dev/null
fi
# The lab's images built from Debian packages (redis, python, the guestbook;
# deploy/debimages.py, cached in ${KCTL_IMAGE_CACHE:-/var/cache/kctl-images}):
# built here once so that no `kctl lab up` of the suite waits for the first
# build (minutes). A failure is not fatal here: the lab comes up without them
# and the tests that need them (tests/e2e/test_lab_guestbook.py) build again
# and report the error.
.venv/bin/python -m deploy.debimages || echo "scripts/test.sh: the Debian-package images were not built (see above)" >&2
# --- Vagrant lab (tests/e2e/test_vagrant.py boots 3 VMs under QEMU TCG) ---
# On whenever the machine can run VMs (root, 5 GiB free; the test skips with
# its reason otherwise; KCTL_VAGRANT_TEST=0 turns it off): vagrant-libvirt,
# libvirt, QEMU and the box builder's tools are installed here. The whole
# suite (no arguments) runs it in the background, next to everything else,
# because it mostly waits for VMs for 10-25 minutes: its output is shown and
# its exit code counted at the end. With arguments, only what they select runs.
if [ "${KCTL_VAGRANT_TEST:-1}" != 0 ]; then
    bash deploy/vagrant/install-host.sh
fi
if [ $# -eq 0 ] && [ "${KCTL_VAGRANT_TEST:-1}" != 0 ]; then
    vagrant_log=$(mktemp "${TMPDIR:-/tmp}/kctl-vagrant-e2e.XXXXXX")
    # its session ends while the rest still runs: the leftover check is the main run's
    KCTL_LEFTOVER_CHECK=0 scripts/run-pytest.sh -s tests/e2e/test_vagrant.py >"$vagrant_log" 2>&1 &
    vagrant_pid=$!
    set +e
    scripts/run-pytest.sh --ignore=tests/e2e/test_vagrant.py
    rc=$?
    wait "$vagrant_pid"
    vagrant_rc=$?
    set -e
    echo
    echo "==== tests/e2e/test_vagrant.py (ran alongside; exit $vagrant_rc) ===="
    cat "$vagrant_log"
    rm -f "$vagrant_log"
    if [ "$rc" = 0 ]; then rc=$vagrant_rc; fi
    exit "$rc"
fi
# --- end Vagrant lab ---
exec scripts/run-pytest.sh "$@"
