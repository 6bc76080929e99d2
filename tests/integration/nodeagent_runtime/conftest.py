"""Fixtures for the node agent runtime/network integration tests (root, real runc/conmon).

Everything a test creates is named with a per-run prefix (``kctltest-<hex>``)
and removed by fixture finalizers even when the test fails: containers via the
runtime (and, as a fallback, by the PIDs in their pid files), overlay mounts,
cgroup directories in every hierarchy, network namespaces, veths and bridges
(which live inside a throw-away "node" netns, so the host's root network
namespace is never touched).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness.netns import delete_netns, delete_netns_prefix, force_cleanup, in_netns, mounts_under, sh  # noqa: F401
from machinery import codec
from nodeagent.netns import NETNS_RUN_DIR
from nodeagent.network import NodeNetwork
from nodeagent.podfiles import DnsConfigurer, write_pod_files
from nodeagent.cgroups import CGROUP_ROOT
from nodeagent.runtime import Runtime
from nodeagent.statedir import ensure_tmpfs

RUN = uuid.uuid4().hex[:6]
PREFIX = f"kctltest-{RUN}"

# test modules here set: pytestmark = [pytest.mark.root, needs_root]
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("conmon"),
    reason="needs root, runc and conmon")


def pod_files(pod_dir, name: str, ip: str) -> dict[str, str]:
    """The agent's etc/hosts, hostname and resolv.conf of pod NAME (namespace default) with IP,
    cluster DNS 10.96.0.10: {container path: host path}."""
    pod = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    files, _ = write_pod_files(pod_dir, pod, [ip], DnsConfigurer(["10.96.0.10"], resolver_config=""))
    return files


def ping(netns_path: str, ip: str) -> subprocess.CompletedProcess:
    return in_netns(netns_path, "/bin/busybox", "ping", "-c", "1", "-w", "5", ip)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    """A minimal image layer: bin/busybox, its applet symlinks and a few etc files."""
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = sh("/bin/busybox", "--list").stdout.split()
    for a in applets:
        if a != "busybox":
            (root / "bin" / a).symlink_to("/bin/busybox")
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "var", "usr"):
        (root / d).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return root


def _make_netns(name: str) -> str:
    sh("ip", "netns", "add", name)
    return f"{NETNS_RUN_DIR}/{name}"


@pytest.fixture(scope="module")
def node_netns():
    """A throw-away netns playing the node; bridges and sandboxes are built inside it."""
    name = f"{PREFIX}-node{uuid.uuid4().hex[:4]}"
    _make_netns(name)
    yield name
    delete_netns(name)


@pytest.fixture
def make_netns():
    """Factory for extra test netns (e.g. a second node), deleted at teardown."""
    made = []

    def make(tag: str) -> str:
        name = f"{PREFIX}-{tag}{uuid.uuid4().hex[:4]}"
        _make_netns(name)
        made.append(name)
        return name
    yield make
    for n in made:
        delete_netns(n)


@pytest.fixture
async def make_node_net(tmp_path):
    """Factory: NodeNetwork(...) set up inside a given node netns; torn down afterwards."""
    nets: list[NodeNetwork] = []
    prefixes: list[str] = []

    async def make(node_netns: str, pod_cidr: str = "10.250.1.0/24", bridge: str = "kctltbr0",
                   tag: str = "a") -> NodeNetwork:
        prefix = f"{PREFIX}-{tag}{uuid.uuid4().hex[:4]}-"
        net = NodeNetwork(bridge, pod_cidr, tmp_path / f"net-{tag}-{len(nets)}", prefix,
                          node_netns=node_netns)
        nets.append(net)
        prefixes.append(prefix)
        await net.setup()
        return net
    yield make
    for net in nets:
        try:
            await net.teardown()
        except Exception:
            pass
    for p in prefixes:
        delete_netns_prefix(p)


@pytest.fixture
async def node_net(node_netns, make_node_net) -> NodeNetwork:
    return await make_node_net(node_netns)


def _force_cleanup_runtime(rt: Runtime) -> None:
    """Fallback when remove() failed: kill by PID, unmount, delete cgroups."""
    force_cleanup(rt.root, rt.ctrs, rt.cgroup_parent)
    rt.prune_cgroup_parent()


@pytest.fixture
async def runtime(tmp_path) -> Runtime:
    # as the agent makes it (nodeagent/main.py): the state on a tmpfs of its own under the root
    rt = Runtime(tmp_path / "rt", cgroup_parent=f"{PREFIX}-rt{uuid.uuid4().hex[:4]}/node1",
                 state_dir=ensure_tmpfs(str(tmp_path / "rt" / "run")))
    yield rt
    try:
        for info in await rt.list():
            await rt.remove(info.id)
    finally:
        _force_cleanup_runtime(rt)


def leftovers(rt: Runtime | None = None, net: NodeNetwork | None = None,
              node_netns: str | None = None) -> list[str]:
    """Everything of ours still present: netns, veths, mounts, cgroup dirs, IPs."""
    found = []
    if os.path.isdir(NETNS_RUN_DIR):
        for n in os.listdir(NETNS_RUN_DIR):
            if net is not None and n.startswith(net.netns_prefix):
                found.append(f"netns {n}")
    if node_netns:
        links = in_netns(f"{NETNS_RUN_DIR}/{node_netns}", "ip", "-o", "link").stdout
        found += [f"link {ln.split(':')[1].strip()}" for ln in links.splitlines()
                  if ln.split(":")[1].strip().startswith("kctl") and "kctltbr" not in ln]
    if rt is not None:
        found += [f"mount {mp}" for mp in mounts_under(rt.root) if mp != str(rt.state_dir)]
        top = rt.cgroup_parent.split("/")[0]
        for h in CGROUP_ROOT.iterdir():
            if (h / top).exists():
                found.append(f"cgroup {h / top}")
    if net is not None:
        found += [f"ip {ip} -> {o}" for ip, o in net.list_allocations().items()]
    return found
