"""`kctl lab up --control-planes 3` end to end (issue 17): three control-plane
machines, each with its etcd member, apiserver, scheduler, controller
manager and kctl-dns; every apiserver answers, pods run, `kctl lab status`
shows the three machines and the etcd leader, and `kctl lab down` leaves
nothing (namespaces, links, processes, mounts, cgroups, directories).

The lab is named per run (tests/e2e/lab_fixtures.py) and torn down whatever
happens. The fault suite on such a lab is tests/e2e/test_lab_ha.py.
"""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from deploy.lab import cluster, lab_down, naming
from tests.e2e.lab_fixtures import KCTL, lab_traces, missing_tools, unique_lab_name, wait_for

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo.yaml"
MACHINES = ["cp1", "cp2", "cp3"]


def kctl(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    res = subprocess.run([KCTL, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"kctl {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res


def versions(servers: list[str], kubeconfig: str) -> dict[str, str]:
    """{server: gitVersion} asking each apiserver alone (no failover)."""
    from machinery.client import Client

    async def ask(server):
        async with Client.from_kubeconfig(kubeconfig, server, timeout=5) as c:
            return (await c.version()).git_version

    async def all_():
        return dict(zip(servers, await asyncio.gather(*(ask(s) for s in servers))))
    return asyncio.run(all_())


def echo_running(env: dict) -> list[str]:
    out = kctl(env, "get", "pods", "-l", "app=echo", "--no-headers").stdout.splitlines()
    running = [line for line in out if re.search(r"\s1/1\s+Running\s", line)]
    return running if len(running) == 6 else []


def test_three_control_planes_come_up_serve_and_go_down_without_a_trace(tmp_path):
    name = unique_lab_name("ha")
    kubeconfig = str(tmp_path / "config")
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    env.pop("KCTL_SERVER", None)
    assert not any(lab_traces(name).values()), f"lab {name} exists before the test"
    try:
        t0 = time.monotonic()
        up = kctl(env, "lab", "up", "--name", name, "--nodes", "2", "--control-planes", "3", timeout=400)
        print(f"\n$ kctl lab up --name {name} --nodes 2 --control-planes 3   ({time.monotonic() - t0:.1f}s)\n"
              + up.stdout)
        info = cluster.load_cluster(name)
        servers = info["apiservers"]
        prefix = ".".join(info["apiserver"].split(".")[:3])
        assert servers == [f"{prefix}.{i}:6443" for i in (2, 3, 4)]

        # every apiserver answers on its own machine's address, with the lab's TLS
        assert set(versions(servers, kubeconfig)) == set(servers)
        # pods run (scheduled, started by the agents, which were given every apiserver)
        kctl(env, "apply", "-f", str(ECHO))
        wait_for("6 running echo pods", lambda: echo_running(env), 120, interval=1.0)

        status = kctl(env, "lab", "status", "--name", name).stdout
        print(status)
        for i, m in enumerate(MACHINES, start=2):
            assert re.search(rf"^{m}\s+{re.escape(prefix)}\.{i}\s+{naming.prefix(name)}{m}\s+(leader|follower)\s",
                             status, re.M), status
            for comp in ("etcd", "apiserver", "scheduler", "controller-manager", "dns"):
                assert re.search(rf"^{comp}-{m}\s+\d+\s+running\s.*\s{m}$", status, re.M), (comp, m, status)
        assert re.search(r"^etcd leader: cp[123]$", status, re.M), status
        assert len(re.findall(r"^cp\d\s.*\sleader\s", status, re.M)) == 1, status

        down = kctl(env, "lab", "down", "--name", name, timeout=180)
        assert "is down" in down.stdout
        left = lab_traces(name, markers=tuple(servers))
        assert not any(left.values()), f"lab down left: {left}"
        assert not any(ns.startswith(naming.prefix(name)) for ns in os.listdir(naming.NETNS_DIR))
    finally:
        lab_down(name)
