"""Fixtures for node agent integration tests: real etcd + apiserver + registry + agents in node netns.

Topology (everything named ``kctltest-<run>`` / ``kt<run>…`` and removed at the end, even on failure)::

    root netns ── bridge kt<run>b  169.254.<x>.1/24   ← apiserver gRPC + docker-registry bind here
                    ├─ kt<run>v<i> ─ veth ─ eth0 169.254.<x>.<10+i>/24 in netns kctltest-<run>-<tag>
                    └─ ...                  (one netns per "node"; the agent runs there)

Why a link-local segment and not 127.0.0.1: a process inside a node netns
cannot reach the host's loopback (design §4), and the agent must run inside
its node netns (``--netns``, setns of the network namespace only).  The /24 is
picked per run and checked to be unused on the machine; the root namespace
only gets the connected route of that /24 — no pod or service routes.  Nodes
reach each other over the same bridge (host-gw routes to each other's pod
CIDRs via their 169.254 addresses).

etcd stays on 127.0.0.1 (only the apiserver talks to it).  Agents are
subprocesses (``python -m nodeagent.main``) in their own session, stopped by
PID; cleanup then kills any container left by PID (conmon/pid files),
unmounts what lives under the agent's root dir, removes the cgroup parent
``kctltest-<run>/<node>`` in every hierarchy, the pod netns (prefix) and the
node netns and veth.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from deploy.images import build_images
from deploy.registry import LocalRegistry
from machinery.client import Client
from machinery.pb import core_pb2
from tests.cluster import REPO, ApiServer, Etcd

RUN = uuid.uuid4().hex[:6]
PREFIX = f"kctltest-{RUN}"
NETNS_DIR = "/var/run/netns"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CG_PARENT = f"kctltest-{RUN}"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("conmon") or not shutil.which("skopeo"),
    reason="needs root, runc, conmon and skopeo")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def in_netns(netns: str, *argv: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    path = netns if "/" in netns else f"{NETNS_DIR}/{netns}"
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True, text=True, check=check,
                          timeout=timeout)


def _pick_segment() -> str:
    used = sh("ip", "-4", "-o", "addr").stdout + sh("ip", "-4", "route", "show", "table", "all").stdout
    for _ in range(100):
        x = random.randint(100, 250)
        if f"169.254.{x}." not in used:
            return f"169.254.{x}"
    raise RuntimeError("no free 169.254.x.0/24 segment")


class Segment:
    """The root-ns bridge the control plane binds to; node netns hang off it."""

    def __init__(self) -> None:
        self.base = _pick_segment()
        self.ip = f"{self.base}.1"
        self.bridge = f"kt{RUN}b"
        self.veths: list[str] = []

    def up(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.ip}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def attach(self, netns: str, index: int) -> str:
        """A veth from the bridge into netns (as eth0); returns the netns' address."""
        host = f"kt{RUN}v{index}"
        addr = f"{self.base}.{10 + index}"
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", f"kt{RUN}p{index}")
        self.veths.append(host)
        sh("ip", "link", "set", f"kt{RUN}p{index}", "netns", netns)
        sh("ip", "link", "set", host, "master", self.bridge, "up")
        in_netns(netns, "ip", "link", "set", f"kt{RUN}p{index}", "name", "eth0", check=True)
        in_netns(netns, "ip", "addr", "add", f"{addr}/24", "dev", "eth0", check=True)
        in_netns(netns, "ip", "link", "set", "eth0", "up", check=True)
        in_netns(netns, "ip", "link", "set", "lo", "up", check=True)
        return addr

    def down(self) -> None:
        for v in self.veths:
            sh("ip", "link", "del", v, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


class CPApiServer(ApiServer):
    """The test apiserver, listening on the segment address instead of loopback."""

    def __init__(self, etcd, workdir, host: str):
        super().__init__(etcd, workdir)
        self.host = host

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture(scope="session")
def segment():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    seg = Segment()
    seg.up()
    try:
        yield seg
    finally:
        seg.down()


@pytest.fixture(scope="session")
def cluster(segment, tmp_path_factory):
    work = tmp_path_factory.mktemp("cp")
    etcd = Etcd(work)
    etcd.start()
    api = CPApiServer(etcd, work, segment.ip)
    try:
        api.start()
        yield api
    finally:
        api.stop()
        etcd.stop()


@pytest.fixture(scope="session")
def registry(segment, tmp_path_factory):
    built = build_images(str(tmp_path_factory.mktemp("oci-images")))
    reg = LocalRegistry(host=segment.ip)
    reg.start()
    try:
        reg.push(built["busybox:latest"], "library/busybox:latest")
        reg.push(built["busybox:1.36"], "library/busybox:1.36")
        reg.push(built["kctl/echo:latest"], "kctl/echo:latest")
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def api(cluster):
    """A Client to the segment apiserver (named api: `client` is the loopback one of tests/conftest.py)."""
    c = Client(cluster.target, timeout=30)
    try:
        yield c
    finally:
        await c.close()


class Node:
    """One node: a netns on the segment and an agent subprocess running inside it."""

    def __init__(self, tag: str, index: int, segment: Segment, cluster, registry, workdir: Path,
                 extra: list[str]):
        self.name = f"{PREFIX}-{tag}"
        self.netns = f"{PREFIX}-{tag}"
        self.netns_path = f"{NETNS_DIR}/{self.netns}"
        self.index = index
        self.segment, self.cluster, self.registry = segment, cluster, registry
        self.root = workdir / f"agent-{tag}"
        self.pod_cidr = f"10.213.{index}.0/24"
        self.pod_prefix = f"{PREFIX}-{tag}-"
        self.cgroup_parent = f"{CG_PARENT}/{tag}"
        self.extra = extra
        self.ip = ""
        self.proc: subprocess.Popen | None = None
        self.log = workdir / f"agent-{tag}.log"

    def create(self) -> None:
        sh("ip", "netns", "add", self.netns)
        self.ip = self.segment.attach(self.netns, self.index)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "nodeagent.main", "--apiserver", self.cluster.target,
                "--node-name", self.name, "--node-ip", self.ip, "--root-dir", str(self.root),
                "--netns", self.netns_path, "--pod-cidr", self.pod_cidr,
                "--registry-mirror", f"docker.io={self.registry.url}", "--crashloop-base", "1",
                "--cgroup-parent", self.cgroup_parent, "--bridge-name", "kctltbr0",
                "--netns-prefix", self.pod_prefix, "--heartbeat-interval", "1", *self.extra]

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                         start_new_session=True, env=env)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- looking inside ----------------------------------------------------
    @property
    def runc_root(self) -> Path:
        return self.root / "runtime" / "runc"

    def container_dir(self, cid: str) -> Path:
        return self.root / "runtime" / "containers" / cid

    def container_pid(self, cid: str) -> int:
        return int((self.container_dir(cid) / "pidfile").read_text().strip())

    def runc_exec(self, cid: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["runc", "--root", str(self.runc_root), "exec", cid, *argv],
                              capture_output=True, text=True, timeout=timeout)

    def cgroup_dir(self, hierarchy: str, cid: str) -> Path:
        return CGROUP_ROOT / hierarchy / self.cgroup_parent / cid

    def leftovers(self) -> list[str]:
        found = []
        if os.path.isdir(NETNS_DIR):
            found += [f"netns {n}" for n in os.listdir(NETNS_DIR) if n.startswith(self.pod_prefix)]
        if os.path.exists(self.netns_path):
            links = in_netns(self.netns, "ip", "-o", "link").stdout
            for ln in links.splitlines():
                name = ln.split(":")[1].strip().split("@")[0]
                if name.startswith("kctl") and name != "kctltbr0":
                    found.append(f"link {name}")
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4]
            if mp.startswith(str(self.root)):
                found.append(f"mount {mp}")
        for h in CGROUP_ROOT.iterdir():
            d = h / self.cgroup_parent
            if d.is_dir() and any(p.is_dir() for p in d.iterdir()):
                found.append(f"cgroup {d}/*")
        ipam = self.root / "network" / "ipam"
        if ipam.is_dir():
            found += [f"ip {p.name}" for p in ipam.iterdir() if not p.name.startswith(".")]
        ctrs = self.root / "runtime" / "containers"
        if ctrs.is_dir():
            found += [f"container {p.name}" for p in ctrs.iterdir()]
        return found

    def destroy(self) -> None:
        """Stop the agent and remove everything of this node, whatever state it is in."""
        try:
            self.stop()
        except Exception:  # noqa: BLE001
            pass
        ctrs = self.root / "runtime" / "containers"
        for d in ctrs.iterdir() if ctrs.is_dir() else []:
            for f in ("pidfile", "conmon.pid"):
                try:
                    os.kill(int((d / f).read_text().strip()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        time.sleep(0.2)
        libc = ctypes.CDLL(None, use_errno=True)
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            mp = line.split()[4]
            if mp.startswith(str(self.root)):
                libc.umount2(mp.encode(), 2)
        for h in CGROUP_ROOT.iterdir():
            base = h / self.cgroup_parent
            if base.is_dir():
                for child in base.iterdir():
                    if child.is_dir():
                        try:
                            child.rmdir()
                        except OSError:
                            pass
                for d in (base, base.parent):
                    try:
                        d.rmdir()
                    except OSError:
                        pass
        if os.path.isdir(NETNS_DIR):
            for n in os.listdir(NETNS_DIR):
                if n.startswith(self.pod_prefix):
                    sh("ip", "netns", "del", n, check=False)
        if os.path.exists(self.netns_path):
            sh("ip", "netns", "del", self.netns, check=False)


@pytest.fixture
def make_node(segment, cluster, registry, tmp_path):
    nodes: list[Node] = []

    def make(tag: str | None = None, extra: list[str] | None = None, start: bool = True) -> Node:
        tag = tag or f"n{len(nodes)}{uuid.uuid4().hex[:3]}"
        node = Node(tag, len(segment.veths) + 1, segment, cluster, registry, tmp_path, extra or [])
        nodes.append(node)
        node.create()
        if start:
            node.start()
        return node
    yield make
    for n in nodes:
        n.destroy()


async def wait_for(pred, timeout: float, what: str, node: Node | None = None):
    """Poll an async (or sync) predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if node is not None and node.proc is not None and node.proc.poll() is not None:
            raise AssertionError(f"agent exited with {node.proc.returncode} while waiting for {what}:\n"
                                 f"{node.log_tail()}")
        await asyncio.sleep(0.2)
    extra = f"\nagent log:\n{node.log_tail()}" if node is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r}){extra}")


async def node_ready(client, node: Node, timeout: float = 60) -> None:
    async def ready():
        try:
            n = await client.get(core_pb2.Node, node.name)
        except Exception:  # noqa: BLE001
            return False
        return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
    await wait_for(ready, timeout, f"node {node.name} Ready", node)


def make_pod(name: str, node: Node, *containers: dict, **spec) -> core_pb2.Pod:
    from machinery import codec
    d = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
         "spec": {"nodeName": node.name, "containers": list(containers), **spec}}
    return codec.from_dict(json.loads(json.dumps(d)))


def cstatus(pod: core_pb2.Pod, name: str) -> core_pb2.ContainerStatus:
    return next(c for c in pod.status.container_statuses if c.name == name)


def cid_of(pod: core_pb2.Pod, name: str) -> str:
    return cstatus(pod, name).container_id.removeprefix("runc://")


async def pod_where(api, name: str, pred, what: str, node: Node | None = None, timeout: float = 90):
    """Wait until pred(pod) holds for the pod; returns the pod."""
    async def check():
        p = await api.get(core_pb2.Pod, name, "default")
        return p if pred(p) else None
    return await wait_for(check, timeout, f"pod {name}: {what}", node)


def all_running(p: core_pb2.Pod) -> bool:
    return (p.status.phase == "Running" and bool(p.status.container_statuses)
            and all(c.state.HasField("running") for c in p.status.container_statuses))


async def pod_running(api, name: str, node: Node | None = None, timeout: float = 90) -> core_pb2.Pod:
    return await pod_where(api, name, all_running, "all containers running", node, timeout)


async def pod_gone(api, name: str, node: Node | None = None, timeout: float = 60) -> None:
    from machinery import errors

    async def pred():
        try:
            await api.get(core_pb2.Pod, name, "default")
            return False
        except errors.NotFound:
            return True
    await wait_for(pred, timeout, f"pod {name} deleted", node)
