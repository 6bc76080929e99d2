"""What the lab topology e2e modules share: small TCP server/client
scripts run inside node namespaces, ping and TCP probes with bounded retries,
the root namespace's routes and links, the no-trace check after `lab_down`,
and the module-scoped `lab` fixture (a bare 3-node topology, no cluster) —
import it into a test module to get one per module.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from ipaddress import IPv4Network

import pytest

from deploy.lab import Lab, LabSpec, lab_down, naming
from deploy.lab.nsutil import list_netns, mounts_under, nsenter_argv, read_mountinfo
from deploy.lab.procs import is_alive
from tests.e2e.lab_fixtures import unique_lab_name

PORT = 18080
SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.sendall(sys.argv[2].encode())
        c.close()
""")
CLIENT = textwrap.dedent("""
    import socket, sys
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as c:
        c.settimeout(2)
        print(c.recv(100).decode())
""")


def in_ns(node, argv, timeout=10):
    return subprocess.run(nsenter_argv(node.netns_path, argv), capture_output=True,
                          text=True, timeout=timeout)


def ping(node, addr) -> bool:
    """One echo, 1 s wait; node=None pings from the root namespace."""
    argv = ["busybox", "ping", "-c", "1", "-W", "1", str(addr)]
    res = subprocess.run(argv if node is None else nsenter_argv(node.netns_path, argv),
                         capture_output=True, timeout=10)
    return res.returncode == 0


def eventually_ping(node, addr, tries=5) -> bool:
    return any(ping(node, addr) for _ in range(tries))


def tcp_get(addr, port=PORT) -> str:
    with socket.create_connection((str(addr), port), timeout=2) as c:
        c.settimeout(2)
        return c.recv(100).decode()


def eventually_tcp_get(addr, port=PORT, tries=10) -> str:
    last = None
    for _ in range(tries):
        try:
            return tcp_get(addr, port)
        except OSError as exc:
            last = exc
    raise AssertionError(f"{addr}:{port} unreachable after {tries} tries: {last}")


def start_server(lab, node, text):
    proc = lab.run_in_node(node, [sys.executable, "-c", SERVER, str(PORT), text],
                           name=f"{node}/server", stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"  # EOF ("") if it died
    return proc


def sleeper(ns_path=None):
    """A detached `sleep 300`, returned once it runs (inside `ns_path`, if given).

    Waits for its "ready" line: right after Popen, nsenter may not have
    joined the namespace yet.
    """
    argv = ["sh", "-c", "echo ready; exec sleep 300"]
    p = subprocess.Popen(nsenter_argv(ns_path, argv) if ns_path else argv,
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout.readline().strip() == "ready"
    p.stdout.close()
    return p


def root_routes():
    """(family, table, type, dst, dst_len, gateway, oif name) of every route."""
    from pyroute2 import IPRoute

    out = set()
    with IPRoute() as ipr:
        names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=fam):
                out.add((fam, r.get("table"), r["type"], r.get("dst"), r.get("dst_len"),
                         r.get("gateway"), names.get(r.get("oif"))))
    return out


def root_links(prefix):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [link.get("ifname") for link in ipr.get_links()
                if (link.get("ifname") or "").startswith(prefix)]


def assert_no_trace(name, subnet, pids):
    pfx = naming.prefix(name)
    assert list_netns(pfx) == []
    assert root_links(pfx) == []
    dirs = [naming.state_dir(name), naming.data_dir(name)]
    assert mounts_under(dirs) == []
    assert [m for m in read_mountinfo() if os.path.basename(m["mountpoint"]).startswith(pfx)] == []
    assert not any(os.path.exists(d) for d in dirs)
    assert [p for p, st in pids if is_alive(p, st)] == []
    cg = naming.cgroup_parent(name).lstrip("/")
    assert [h for h in os.listdir(naming.CGROUP_FS)
            if os.path.exists(os.path.join(naming.CGROUP_FS, h, cg))] == []
    net = IPv4Network(subnet)
    assert [r for r in root_routes() if r[0] == socket.AF_INET and r[3]
            and IPv4Network(f"{r[3]}/{r[4]}", strict=False).overlaps(net)] == []


@pytest.fixture(scope="module")
def routes_before():
    return root_routes()


@pytest.fixture(scope="module")
def lab(routes_before):
    name = unique_lab_name("tp")
    lab_down(name)  # leftovers of an earlier, killed run
    lab = Lab(LabSpec(name=name, nodes=3))
    try:
        lab.build()
        yield lab
    finally:
        lab_down(name)
