"""Node agents in network namespaces against a real control plane.

Topology (everything named after the segment's run id and removed at the
end, even on failure)::

    root netns ── bridge kt<run>b  169.254.<x>.1/24   ← apiserver gRPC + docker-registry bind here
                    ├─ kt<run>v<i> ─ veth ─ eth0 169.254.<x>.<10+i>/24 in netns kctltest-<run>-<tag>
                    └─ ...                  (one netns per "node"; the agent runs there)

etcd stays on 127.0.0.1 (only the apiserver talks to it). Each agent has
its node certificate from the harness's CA (harness.pki: CN
system:node:NAME, SANs its name and IP, which its logs/exec server also
presents to the apiserver). Agents are
subprocesses (``python -m nodeagent.main``) in their own session, stopped by
PID; `Node.destroy()` then kills any container left by PID (conmon/pid
files), unmounts what lives under the agent's root dir, removes the cgroup
parent ``kctltest-<run>/<tag>`` in every hierarchy, the pod netns (prefix)
and the node netns (see harness.netns for the segment).

    with NodeCluster(workdir) as env:         # segment + etcd + apiserver + registry
        node = env.add_node("a")              # netns + agent
        ... Client(env.target) ...

`NodeCluster.start()` undoes what it did when a step fails; `stop()` destroys
the nodes it made, then the registry, the control plane and the segment.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from harness.control_plane import ControlPlane
from harness.netns import (CGROUP_ROOT, NETNS_DIR, Segment, delete_netns, delete_netns_prefix, force_cleanup,
                           in_netns, mounts_under, remove_cgroup_parent, sh)
from harness.process import Process, free_port

# offline image (deploy/images.py) -> path in the registry (docker.io mirror layout)
IMAGES = {
    "busybox:latest": "library/busybox:latest",
    "busybox:1.36": "library/busybox:1.36",
    "kctl/echo:latest": "kctl/echo:latest",
}


def start_registry(built: dict[str, str], host: str = "127.0.0.1", images=IMAGES):
    """A started deploy.registry.LocalRegistry on `host` holding `images`
    (offline ref -> registry path) from build_images' output; stopped again if a push fails."""
    from deploy.registry import LocalRegistry
    reg = LocalRegistry(host=host).start()
    try:
        for ref, dest in dict(images).items():
            reg.push(built[ref], dest)
    except BaseException:
        reg.stop()
        raise
    return reg


class Agent(Process):
    """The node agent's process: no readiness wait (tests watch the Node object)."""

    def __init__(self, node: "Node", workdir: Path, tag: str):
        super().__init__(f"agent-{tag}", workdir)
        self.node = node

    def command(self) -> list[str]:
        return self.node.command()

    def ready(self) -> bool:
        return True


class Node:
    """One node: a netns on the segment and an agent subprocess running inside it."""

    def __init__(self, tag: str, index: int, segment: Segment, cluster, registry, workdir: Path,
                 extra: list[str]):
        self.name = f"{segment.prefix}-{tag}"
        self.netns = f"{segment.prefix}-{tag}"
        self.netns_path = f"{NETNS_DIR}/{self.netns}"
        self.index = index
        self.segment, self.cluster, self.registry = segment, cluster, registry
        self.root = workdir / f"agent-{tag}"
        self.pod_cidr = f"10.213.{index}.0/24"
        self.pod_prefix = f"{segment.prefix}-{tag}-"
        self.cgroup_parent = f"{segment.prefix}/{tag}"
        self.extra = extra
        self.ip = ""
        self.agent = Agent(self, workdir, tag)
        self.log = self.agent.log_path

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.agent.popen

    def create(self) -> None:
        sh("ip", "netns", "add", self.netns)
        self.ip = self.segment.attach(self.netns, self.index)

    def command(self) -> list[str]:
        from harness.pki import session
        kubeconfig = session().node_kubeconfig(self.name, self.ip)      # CN=system:node:NAME, serving for its IP
        return [sys.executable, "-m", "nodeagent.main", "--kubeconfig", str(kubeconfig),
                "--apiserver", self.cluster.target,
                "--node-name", self.name, "--node-ip", self.ip, "--root-dir", str(self.root),
                "--netns", self.netns_path, "--pod-cidr", self.pod_cidr,
                "--registry-mirror", f"docker.io={self.registry.url}", "--crashloop-base", "1",
                "--cgroup-parent", self.cgroup_parent, "--bridge-name", "kctltbr0",
                "--netns-prefix", self.pod_prefix, "--heartbeat-interval", "1", *self.extra]

    def start(self) -> None:
        self.agent.start()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """`sig` (SIGTERM) to the agent, SIGKILL after 15 s."""
        self.agent.stop(15, sig)

    def log_tail(self, n: int = 60) -> str:
        return self.agent.log_tail(n)

    # -- looking inside ----------------------------------------------------
    @property
    def state_dir(self) -> Path:
        """The agent's runtime state: a tmpfs of its own (nodeagent/statedir.py)."""
        return self.root / "run"

    @property
    def runc_root(self) -> Path:
        return self.state_dir / "runc"

    @property
    def containers_dir(self) -> Path:
        return self.state_dir / "containers"

    def container_dir(self, cid: str) -> Path:
        return self.containers_dir / cid

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
        found += [f"mount {mp}" for mp in mounts_under(self.root) if mp != str(self.state_dir)]
        for h in CGROUP_ROOT.iterdir():
            d = h / self.cgroup_parent
            if d.is_dir() and any(p.is_dir() for p in d.iterdir()):
                found.append(f"cgroup {d}/*")
        ipam = self.state_dir / "network" / "ipam"
        if ipam.is_dir():
            found += [f"ip {p.name}" for p in ipam.iterdir() if not p.name.startswith(".")]
        if self.containers_dir.is_dir():
            found += [f"container {p.name}" for p in self.containers_dir.iterdir()]
        return found

    def destroy(self) -> None:
        """Stop the agent and remove everything of this node, whatever state it is in."""
        try:
            self.stop()
        except Exception:  # noqa: BLE001
            pass
        force_cleanup(self.root, self.containers_dir, self.cgroup_parent)
        remove_cgroup_parent(self.cgroup_parent)
        delete_netns_prefix(self.pod_prefix)
        delete_netns(self.netns)


class NodeCluster:
    """A segment, etcd + apiserver on the segment address, a registry with
    `images` on the same address, and the nodes added to it."""

    def __init__(self, workdir: Path, images=IMAGES, apiserver_args: list[str] | None = None):
        self.workdir = Path(workdir)
        self.images = images
        self.segment = Segment()
        args = list(apiserver_args or [])
        if "--http-listen" not in args:            # the HTTPS API next to gRPC (tokens work only there)
            args += ["--http-listen", f"{self.segment.ip}:{free_port()}"]
        self.control_plane = ControlPlane(self.workdir / "cp", args, host=self.segment.ip)
        self.registry = None
        self.nodes: list[Node] = []

    @property
    def apiserver(self):
        return self.control_plane.apiserver

    @property
    def target(self) -> str:
        return self.apiserver.target

    def start(self) -> "NodeCluster":
        from deploy.images import build_images
        try:
            self.segment.up()
            self.control_plane.start()
            built = build_images(str(self.workdir / "oci-images"))
            self.registry = start_registry(built, self.segment.ip, self.images)
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, tag: str | None = None, extra: list[str] | None = None, start: bool = True,
                 workdir: Path | None = None) -> Node:
        """A new node netns on the segment, its agent started unless start=False."""
        tag = tag or f"n{len(self.nodes)}{uuid.uuid4().hex[:3]}"
        node = Node(tag, len(self.segment.veths) + 1, self.segment, self.apiserver, self.registry,
                    Path(workdir or self.workdir), extra or [])
        self.nodes.append(node)
        node.create()
        if start:
            node.start()
        return node

    def stop(self) -> None:
        try:
            for node in self.nodes:
                node.destroy()
            if self.registry is not None:
                self.registry.stop()
            self.control_plane.stop()
        finally:
            self.segment.down()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
