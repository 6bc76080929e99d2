"""Fixtures and helpers for end-to-end tests on a real lab (`kctl lab up`).

    from tests.e2e.lab_fixtures import lab  # noqa: F401  (module-scoped fixture)

    def test_x(lab):
        lab.kctl("get", "pods")                  # the CLI, with a private KUBECONFIG
        lab.api(lambda c: c.list("Pod"))         # one persistent API client
        lab.node("node1").netns_path             # deploy.lab NodeInfo

One lab per test module (`lab_up` for a module that needs another shape,
e.g. several control planes), named uniquely (the module's ``LAB_TAG`` + the PID
in base 36, so two modules or two concurrent runs never share a name or a
subnet), brought up with the real
CLI (`kctl lab up`) and ALWAYS torn down with `lab_down` when the module
ends, whatever happened. The kubeconfig lives in a temporary directory
(KUBECONFIG for every kctl call), so the user's ~/.kctl/config is never
touched.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.lab import Lab, lab_down, naming
from deploy.lab import cluster

BIN = Path(sys.executable).parent
KCTL = str(BIN / "kctl")
TOOLS = ("etcd", "runc", "conmon", "skopeo", "/usr/bin/docker-registry", "nsenter", "iptables")


def missing_tools() -> list[str]:
    import shutil
    return [t for t in TOOLS if not (os.path.exists(t) if t.startswith("/") else shutil.which(t))]


# The marks of a module that brings up a lab: `pytestmark = LAB_MARKS`.
LAB_MARKS = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]
ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo.yaml"  # 6 replicas, maxSurge 1


class Api:
    """A machinery Client on its own event-loop thread, called synchronously."""

    def __init__(self, target: str, kubeconfig: str):
        from machinery.client import Client
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lab-api", daemon=True)
        self.thread.start()
        self.client = self.run(self._make(Client, target, kubeconfig))

    @staticmethod
    async def _make(cls, target, kubeconfig):
        return cls.from_kubeconfig(kubeconfig, target, timeout=10)   # the lab's CA and admin certificate

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __call__(self, fn, timeout: float = 60):
        """api(lambda c: c.list("Pod")) -> the awaited result."""
        async def call():
            return await fn(self.client)
        return self.run(call(), timeout)

    def close(self) -> None:
        if not self.thread.is_alive():
            return
        try:
            self.run(self.client.close(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


class LabHandle:
    def __init__(self, name: str, kubeconfig: str, up_seconds: float, up_output: str):
        self.name = name
        self.kubeconfig = kubeconfig
        self.up_seconds = up_seconds
        self.up_output = up_output
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}
        self.env.pop("KCTL_SERVER", None)
        self.info = cluster.load_cluster(name)
        self.topology = Lab.load(name)
        # every apiserver of the lab (several with --control-planes N): the client fails over
        self.servers = ",".join(self.info.get("apiservers") or [self.info["apiserver"]])
        self.api = Api(self.servers, kubeconfig)

    def node(self, name: str):
        return self.topology.node(name)

    def kctl(self, *args: str, check: bool = True, timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        res = subprocess.run([KCTL, *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"kctl {' '.join(args)} exited {res.returncode}:\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def lab(self, command: str, *args: str, **kw) -> subprocess.CompletedProcess:
        """`kctl lab COMMAND --name <this lab> ARGS`."""
        return self.kctl("lab", command, "--name", self.name, *args, **kw)

    def in_netns(self, netns_path: str, argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net={netns_path}", "--", *argv], capture_output=True,
                              text=True, timeout=timeout)


def unique_lab_name(tag: str = "e") -> str:
    """`tag` (1-3 letters) + this process's PID in base 36: lab names are at
    most 8 characters, and two concurrent runs never share one."""
    pid, digits = os.getpid(), ""
    while pid:
        pid, d = divmod(pid, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
    return tag + digits


# ------------------------------------------------------------ API helpers

def ready(pod) -> bool:
    return (pod.status.phase == "Running" and not pod.metadata.HasField("deletion_timestamp")
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions))


def node_ready(node) -> str:
    return next((c.status for c in node.status.conditions if c.type == "Ready"), "Unknown")


def pods(lab, selector: str = "", namespace: str = "default"):
    items, _ = lab.api(lambda c: c.list("Pod", namespace, label_selector=selector))
    return items


def nodes(lab) -> dict[str, str]:
    items, _ = lab.api(lambda c: c.list("Node"))
    return {n.metadata.name: node_ready(n) for n in items}


def watch_live_pods(lab, selector: str, counts: list[int], namespace: str = "default"):
    """Append the number of live pods matching `selector` after every watch
    event (a pod with a deletionTimestamp is not live); returns the task
    (a concurrent.futures.Future: cancel it when done)."""
    async def watch(client):
        items, rv = await client.list("Pod", namespace, label_selector=selector)
        state = {p.metadata.uid: p for p in items}
        counts.append(len(state))
        while True:  # a watch the server ends is resumed from the last resourceVersion
            async for ev in client.watch("Pod", namespace, resource_version=rv, label_selector=selector):
                rv = ev.resource_version or rv
                if ev.object is None or ev.type not in ("ADDED", "MODIFIED", "DELETED"):
                    continue
                if ev.type == "DELETED" or ev.object.metadata.HasField("deletion_timestamp"):
                    state.pop(ev.object.metadata.uid, None)
                else:
                    state[ev.object.metadata.uid] = ev.object
                counts.append(len(state))
    return asyncio.run_coroutine_threadsafe(watch(lab.api.client), lab.api.loop)


def wait_for(what: str, check, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def lab_traces(name: str, markers: tuple[str, ...] = ()) -> dict[str, list]:
    """Everything of lab `name` still on the machine (empty lists = no trace).

    Processes are those whose command line names the lab's directories or
    netns files, or one of `markers` (e.g. the apiserver address), and
    those in the lab's cgroups.
    """
    from deploy.lab.nsutil import list_netns, mounts_under
    from deploy.lab.procs import cgroup_dirs, pids_in_cgroups
    import json
    pfx = naming.prefix(name)
    links = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, timeout=10)
    dirs = [naming.state_dir(name), naming.data_dir(name)]
    mounts = [m["mount_point"] for m in mounts_under(dirs)]
    mounts += [line.split()[4] for line in open("/proc/self/mountinfo")
               if f"/netns/{pfx}" in line.split()[4]]
    procs = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in (*dirs, f"/netns/{pfx}", *markers)):
            procs.append((int(pid), cmd[:120]))
    chains = [line for line in subprocess.run(["iptables-save"], capture_output=True, text=True,
                                              timeout=10).stdout.splitlines() if pfx in line]
    return {
        "netns": list_netns(pfx),
        "links": [l["ifname"] for l in json.loads(links.stdout or "[]") if l["ifname"].startswith(pfx)],
        "mounts": mounts,
        "cgroups": cgroup_dirs(naming.cgroup_parent(name)),
        "cgroup_pids": pids_in_cgroups(naming.cgroup_parent(name)),
        "processes": procs,
        "chains": chains,
        "dirs": [d for d in dirs if os.path.exists(d)],
    }


@contextlib.contextmanager
def lab_up(name: str, kubeconfig: str, *, nodes: int = 3, control_planes: int = 1):
    """`kctl lab up --name NAME --nodes N [--control-planes C]`, then yield its
    LabHandle; `lab_down` ALWAYS runs when the block ends, whatever happened."""
    handle = None
    try:
        before = lab_traces(name)
        assert not any(before.values()), f"lab {name} exists before the test: {before}"
        env = {**os.environ, "KUBECONFIG": kubeconfig}
        argv = ["lab", "up", "--name", name, "--nodes", str(nodes)]
        if control_planes != 1:
            argv += ["--control-planes", str(control_planes)]
        t0 = time.monotonic()
        res = subprocess.run([KCTL, *argv], env=env, capture_output=True, text=True,
                             timeout=180 + 60 * control_planes)
        up_seconds = time.monotonic() - t0
        print(f"\n$ kctl {' '.join(argv)}   ({up_seconds:.1f}s)\n{res.stdout}{res.stderr}")
        assert res.returncode == 0, f"kctl lab up failed:\n{res.stdout}\n{res.stderr}"
        handle = LabHandle(name, kubeconfig, up_seconds, res.stdout)
        handle.control_planes = control_planes
        yield handle
    finally:
        if handle is not None:
            try:
                handle.api.close()
            except Exception:  # noqa: BLE001 - teardown must go on
                pass
        lab_down(name)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request):
    """A 3-node lab for the module, named after its LAB_TAG (default "e")."""
    name = unique_lab_name(getattr(request.module, "LAB_TAG", "e"))
    kubeconfig = str(tmp_path_factory.mktemp("lab-kubeconfig") / "config")
    with lab_up(name, kubeconfig) as handle:
        yield handle
