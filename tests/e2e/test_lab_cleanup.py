"""`lab_down` and the lab's clean-up on real namespaces, links, mounts,
cgroups and processes: a populated lab leaves no trace (twice), a crashed
build is cleaned by name, a failed build undoes itself, the lab is usable from
async code, and concurrent builds pick distinct subnets.

Every wait is bounded; every lab is torn down in a finalizer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from deploy.lab import Lab, LabSpec, lab_down, naming
from deploy.lab.nsutil import list_netns
from deploy.lab.procs import proc_start_time
from tests.e2e.lab_fixtures import unique_lab_name
from tests.e2e.topology_helpers import assert_no_trace, eventually_ping, lab, routes_before, sleeper  # noqa: F401

pytestmark = [
    pytest.mark.root, pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, links)"),
]


def _populate(lab, name):
    """Things a running lab has: components, conmon, containers, mounts, cgroups."""
    from pyroute2 import netns as pr_netns

    n1 = lab.node("node1")
    recs = [lab.start("apiserver", ["sleep", "300"]),
            lab.start("agent-node1", ["sleep", "300"], node="node1")]
    stray = [sleeper(n1.netns_path)]
    pod_ns = n1.pod_netns_prefix + "pod1"
    pr_netns.create(pod_ns)
    stray.append(sleeper(naming.netns_path(pod_ns)))
    # A pod netns bind-mounted under the node's run dir (the other convention).
    nsdir = os.path.join(n1.run_dir, "netns")
    os.makedirs(nsdir)
    open(os.path.join(nsdir, "pod2"), "w").close()
    subprocess.run(["mount", "--bind", f"/proc/{stray[1].pid}/ns/net",
                    os.path.join(nsdir, "pod2")], check=True, timeout=10)
    # Overlay-like mounts, nested, under the node's data dir.
    ovl = os.path.join(n1.data_dir, "containers", "c1", "rootfs")
    os.makedirs(ovl)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", ovl], check=True, timeout=10)
    os.makedirs(os.path.join(ovl, "proc"))
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(ovl, "proc")],
                   check=True, timeout=10)
    # A container in the node's cgroup subtree, in two hierarchies.
    ctr = subprocess.Popen(["sleep", "300"], start_new_session=True)
    for h in ("pids", "unified"):
        d = os.path.join(naming.CGROUP_FS, h, n1.cgroup_parent.lstrip("/"), "pod1", "c1")
        os.makedirs(d)
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(ctr.pid))
    stray.append(ctr)
    idents = [(r["pid"], r["start_time"]) for r in recs]
    idents += [(p.pid, proc_start_time(p.pid)) for p in stray]
    return idents, stray


def test_lab_down_leaves_no_trace_and_runs_twice(lab):
    name = unique_lab_name("dn")
    lab_down(name)
    other = Lab(LabSpec(name=name, nodes=2))
    stray = []
    try:
        other.build()
        assert other.subnet != lab.subnet  # picked a free subnet next to the module's lab
        subnet = str(other.subnet)
        idents, stray = _populate(other, name)
        report = lab_down(name)
        assert {p for p, _ in idents} <= set(report["killed"])
        for p in stray:
            assert p.wait(timeout=10) == -signal.SIGKILL
        assert_no_trace(name, subnet, idents)
        again = lab_down(name)
        assert not any(again[k] for k in ("killed", "unmounted", "netns", "links", "dirs"))
        assert_no_trace(name, subnet, idents)
        # The other lab is untouched.
        assert eventually_ping(lab.node("node1"), lab.cp_address)
    finally:
        for p in stray:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        lab_down(name)


CRASHER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from deploy.lab import Lab, LabSpec
    from pyroute2 import netns
    lab = Lab(LabSpec(name=sys.argv[1], nodes=2)).build()
    lab.start("apiserver", ["sleep", "300"])
    lab.start("agent-node1", ["sleep", "300"], node="node1")
    lab.start("agent-node2", ["sleep", "300"], node="node2")
    n2 = lab.node("node2")
    netns.create(n2.pod_netns_prefix + "pod9")
    lab.partition("node1")
    print(lab.subnet, flush=True)
    sys.stdin.read()  # wait to be SIGKILLed
""")


def test_crash_is_fully_cleaned_by_name(lab):
    name = unique_lab_name("cr")
    lab_down(name)
    builder = subprocess.Popen(
        [sys.executable, "-c", CRASHER, name, os.getcwd()], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        subnet = builder.stdout.readline().strip()
        assert subnet, "builder failed"
        recs = Lab.load(name).status()
        assert {"apiserver", "agent-node1", "agent-node2"} <= set(recs)
        idents = [(r["pid"], r["start_time"]) for r in recs.values()]
        # The crash: the builder dies without cleanup, a component is SIGKILLed,
        # and one namespace is already gone.
        builder.kill()
        builder.wait(timeout=10)
        os.kill(recs["agent-node2"]["pid"], signal.SIGKILL)
        from pyroute2 import netns as pr_netns

        pr_netns.remove(naming.node_netns(name, "node2"))
        lab_down(name)
        assert_no_trace(name, subnet, idents)
        lab_down(name)
        assert_no_trace(name, subnet, idents)
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait(timeout=10)
        builder.stdin.close()
        builder.stdout.close()
        lab_down(name)


def test_failed_build_leaves_no_trace(monkeypatch):
    from deploy.lab import netbuild

    name = unique_lab_name("fl")
    lab_down(name)

    def broken(ns_path):
        raise naming.LabError("injected failure after the links exist")

    monkeypatch.setattr(netbuild, "_bridge_nf", broken)
    half = Lab(LabSpec(name=name, nodes=2, subnet="172.31.250.0/24"))
    try:
        with pytest.raises(naming.LabError, match="injected"):
            half.build()
        assert_no_trace(name, "172.31.250.0/24", [])
    finally:
        lab_down(name)


async def test_usable_from_async_code():
    """pyroute2's sync API fails on a thread running an event loop; the lab
    moves those calls to a helper thread (blocking, like every Lab call)."""
    name = unique_lab_name("as")
    lab_down(name)
    try:
        small = Lab(LabSpec(name=name, nodes=1)).build()
        small.link_down("node1")
        small.link_up("node1")
        assert eventually_ping(small.node("node1"), small.cp_address)
    finally:
        lab_down(name)
    assert list_netns(naming.prefix(name)) == []


def test_concurrent_builds_pick_distinct_subnets():
    names = [unique_lab_name("ca"), unique_lab_name("cb")]
    labs = [Lab(LabSpec(name=n, nodes=1)) for n in names]
    errors = []

    def build(lab):
        try:
            lab.build()
        except Exception as exc:  # reported below
            errors.append(exc)

    for n in names:
        lab_down(n)
    threads = [threading.Thread(target=build, args=(lab,)) for lab in labs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert labs[0].subnet != labs[1].subnet
        assert not labs[0].subnet.overlaps(labs[1].subnet)
        for lab in labs:
            assert eventually_ping(lab.node("node1"), lab.cp_address)
    finally:
        for n in names:
            lab_down(n)
