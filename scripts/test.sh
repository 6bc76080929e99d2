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
exec scripts/run-pytest.sh "$@"
