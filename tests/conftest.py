"""Shared fixtures: a real etcd and a real apiserver on free loopback ports.

    async def test_something(client, apiserver, etcd): ...

- `etcd`: a fresh etcd (harness.control_plane.Etcd) in a temporary directory;
  `etcd.restart()`, `etcd.stop()`, `etcd.revision()`, `etcd.compact()`.
- `apiserver`: harness.control_plane.ApiServer against that etcd; `.target`,
  `.restart()`, `.stop()`, `.metrics_text()`. Extra flags per test with
  `@pytest.mark.apiserver_args("--watch-cache-size", "100")`.
- `client`: a machinery.client.Client connected to the apiserver.

Every apiserver serves TLS (harness.pki): the test session has one CA,
and $KUBECONFIG names its admin kubeconfig (set here, for the whole run),
so `Client(target)` and `kctl --server TARGET` (in-process or a child)
authenticate as kubernetes-admin (system:masters) against any apiserver a
test starts; `apiserver.credentials` / `apiserver.kubeconfig` are the same
credentials explicitly.

A run started with SIGINT ignored (a background job of a non-interactive
shell, `cmd &`) would pass that on to every child it starts, and a kctl
child then ignores Ctrl-C (Python keeps an inherited SIG_IGN):
`pytest_configure` gives the run Python's own SIGINT handler back, so the
children start with SIGINT at its default, as from a terminal.

All are function-scoped (each test gets its own etcd), and every process
is stopped by its PID when the test ends, whatever happened.

For many small tests that only create and read (a table of inputs), the
module-scoped `shared_etcd` / `shared_apiserver` and the function-scoped
`shared_client` save the ~1 s process start per test; such tests must use
names that do not collide and must not stop the processes.
"""
from __future__ import annotations

import pytest

from harness.control_plane import ApiServer, Etcd


def pytest_configure(config):
    import os
    import signal

    from harness import pki
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:       # inherited: see the module's docstring
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["KUBECONFIG"] = str(pki.session().admin)
    config.addinivalue_line("markers", "apiserver_args(*args): extra kctl-apiserver flags for the apiserver fixture")


def pytest_sessionstart(session):
    import os

    from tests import leftovers
    if os.environ.get("KCTL_LEFTOVER_CHECK", "1") != "0":
        session.config._kctl_before = leftovers.snapshot()


def pytest_sessionfinish(session, exitstatus):
    """Anything of kctl's kinds a test left on the machine (tests/leftovers.py)
    is printed and fails the run; KCTL_LEFTOVER_CHECK=0 turns it off (for a
    run beside another one, which sees the other's state)."""
    from tests import leftovers
    before = getattr(session.config, "_kctl_before", None)
    if before is None or session.testscollected == 0:
        return
    left = leftovers.new_since(before)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"==== left on the machine by this run: {len(left)} ====", *left]
    if reporter is not None:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)
    else:
        print("\n".join(lines))
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def etcd(tmp_path):
    with Etcd(tmp_path) as proc:
        yield proc


@pytest.fixture
def apiserver(etcd, tmp_path, request):
    marker = request.node.get_closest_marker("apiserver_args")
    extra = [str(a) for a in marker.args] if marker else []
    with ApiServer(etcd, tmp_path, extra_args=extra) as proc:
        yield proc


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory):
    with Etcd(tmp_path_factory.mktemp("shared-etcd")) as proc:
        yield proc


@pytest.fixture(scope="module")
def shared_apiserver(shared_etcd, tmp_path_factory):
    with ApiServer(shared_etcd, tmp_path_factory.mktemp("shared-apiserver")) as proc:
        yield proc


@pytest.fixture
async def shared_client(shared_apiserver):
    from machinery.client import Client
    async with Client(shared_apiserver.target, timeout=30) as c:
        yield c


@pytest.fixture
async def client(apiserver):
    from machinery.client import Client
    async with Client(apiserver.target, timeout=30) as c:
        yield c
