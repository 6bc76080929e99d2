"""Names and paths of everything a lab owns.

Why one module: `lab_down` must find every object of a lab from its *name
alone*, after a crash, with no state file. So every name the lab (and every
component running in it) creates is derived here from the lab name, and
`cleanup.py` sweeps by exactly these prefixes.

Conventions (other components must follow them):

* Prefix: ``kl<lab>-`` (``klkctl-`` for the default lab ``kctl``). Lab names
  are 1-8 characters ``[a-z0-9]`` so that the longest interface name
  (``kl<8>-n99b``) fits Linux' 15-character limit and no prefix is a prefix
  of another lab's (the ``-`` terminates it).
* Network namespaces in ``/var/run/netns``: ``<prefix>net`` (lab bridge),
  ``<prefix><node>`` (one per node), ``<prefix>cp<I>`` (one per control-plane
  machine of an HA lab, ``--control-planes N`` > 1). A node agent that creates *pod*
  network namespaces there names them ``<prefix><node>-<anything>``.
  Alternatively it bind-mounts them anywhere under the node's ``run_dir``.
  Both are swept by ``lab_down``.
* Links in the root namespace: only ``<prefix>cp`` (the control-plane veth).
  In the lab netns: ``<prefix>n<i>b`` (node i's bridge port), ``<prefix>c<I>b``
  (control-plane machine I's bridge port), ``<prefix>cpb`` (the host's).
* iptables chains: ``<prefix>...`` (the lab only creates ``<prefix>part`` in
  node namespaces, for partitions; node agents own ``KCTL-*``).
* Directories: state (JSON, logs, per-node run dirs) under
  ``/run/kctl-lab/<lab>/`` -- tmpfs, so it vanishes on reboot together with
  the namespaces and processes it describes; bulky per-node data (images,
  container root filesystems, overlay mounts) under
  ``/var/lib/kctl-lab/<lab>/``. Every mount below either is unmounted by
  ``lab_down`` (deepest first) before the directories are removed.
* cgroups: ``/kctl-lab/<lab>/<node>/...`` in every hierarchy (cgroup v1
  controllers, ``name=systemd`` and ``unified``). Node agents must give runc
  an *absolute* ``cgroupsPath`` below ``NodeInfo.cgroup_parent`` (a relative
  one nests under the caller's cgroup, which on this machine differs per
  hierarchy). ``lab_down`` kills whatever is left in ``/kctl-lab/<lab>`` and
  removes the directories.
"""

from __future__ import annotations

import os
import re

from machinery.errors import HostError

STATE_ROOT = "/run/kctl-lab"
DATA_ROOT = "/var/lib/kctl-lab"
NETNS_DIR = "/var/run/netns"
CGROUP_FS = "/sys/fs/cgroup"
CGROUP_TOP = "kctl-lab"
# Serialises subnet choice + address assignment of concurrent `build()`s, so
# two labs never pick the same free subnet. An abstract unix socket name (in
# the root netns, where builds run): held while bound, released by the kernel
# when its holder dies, and it leaves no file behind.
BUILD_LOCK = "\0kctl-lab-build"

MAX_NODES = 99
# Control-plane machines sit at S.2 .. S.(1+N), below the first node (S.11).
MAX_CONTROL_PLANES = 9
_NAME_RE = re.compile(r"^[a-z0-9]{1,8}$")


class LabError(HostError):
    """Any failure of the lab tooling (bad spec, kernel refusal, ...): the
    HostError family of machinery.errors."""


def check_lab_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise LabError(
            f"invalid lab name {name!r}: use 1-8 characters [a-z0-9] "
            "(interface names derived from it must fit in 15 characters)"
        )
    return name


def check_nodes(nodes: int) -> int:
    if not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise LabError(f"nodes must be 1..{MAX_NODES}, got {nodes!r}")
    return nodes


def check_control_planes(n: int) -> int:
    """1 (the control plane in the root netns) or an odd N up to MAX_CONTROL_PLANES:
    etcd needs a majority, and an even member count tolerates no more loss than
    the odd count below it."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CONTROL_PLANES or n % 2 == 0:
        raise LabError(f"control planes must be an odd number from 1 to {MAX_CONTROL_PLANES} "
                       f"(etcd needs a majority of its members; 3 tolerate the loss of one), got {n!r}")
    return n


def prefix(lab: str) -> str:
    """The prefix of every netns, link and chain of lab `lab`."""
    return f"kl{check_lab_name(lab)}-"


def node_name(index: int) -> str:
    """Name of the index-th node (1-based): node1, node2, ..."""
    return f"node{index}"


def machine_name(index: int) -> str:
    """Name of the index-th control-plane machine (1-based) of an HA lab: cp1, cp2, ..."""
    return f"cp{index}"


def machine_netns(lab: str, machine: str) -> str:
    return prefix(lab) + machine


def machine_bridge_port(lab: str, index: int) -> str:
    """Lab-netns end of control-plane machine `index`'s veth."""
    return f"{prefix(lab)}c{index}b"


def lab_netns(lab: str) -> str:
    return prefix(lab) + "net"


def node_netns(lab: str, node: str) -> str:
    return prefix(lab) + node


def netns_path(ns: str) -> str:
    return os.path.join(NETNS_DIR, ns)


def bridge_name(lab: str) -> str:
    return prefix(lab) + "br"


def cp_link(lab: str) -> str:
    """Root-namespace end of the control-plane veth (carries the .1 address)."""
    return prefix(lab) + "cp"


def cp_bridge_port(lab: str) -> str:
    return prefix(lab) + "cpb"


def node_bridge_port(lab: str, index: int) -> str:
    """Lab-netns end of node `index`'s veth, enslaved to the lab bridge."""
    return f"{prefix(lab)}n{index}b"


NODE_IFACE = "eth0"  # node-netns end of the node's veth


def partition_chain(lab: str) -> str:
    return prefix(lab) + "part"


def state_dir(lab: str) -> str:
    return os.path.join(STATE_ROOT, check_lab_name(lab))


def data_dir(lab: str) -> str:
    return os.path.join(DATA_ROOT, check_lab_name(lab))


def node_run_dir(lab: str, node: str) -> str:
    return os.path.join(state_dir(lab), "nodes", node)


def node_data_dir(lab: str, node: str) -> str:
    return os.path.join(data_dir(lab), "nodes", node)


def cgroup_parent(lab: str, node: str | None = None) -> str:
    """Absolute cgroup path (same in every hierarchy) of a lab or a node."""
    base = f"/{CGROUP_TOP}/{check_lab_name(lab)}"
    return base if node is None else f"{base}/{node}"
