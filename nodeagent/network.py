"""Pod networking for the node agent: bridge, per-pod netns + veth, host-gw routes.

Picture (one node)::

    node netns ── bridge BR (gateway = first IP of the pod CIDR)
                    ├─ kctlXXXXXXXXXX  <veth>  eth0 in netns PREFIX<pod-uid>   (pod IP/prefix,
                    └─ ...                                                     default via gateway)
    routes: OTHER_POD_CIDR via OTHER_NODE_IP  proto 176  (host-gw, only ours are ever removed)

How the concurrency works
-------------------------
pyroute2 ``IPRoute`` is synchronous and a netlink socket belongs to the network
namespace of the thread that opened it.  Node-level operations (bridge,
sysctls, routes) run in ONE dedicated worker thread (a single-thread
executor), so they are serialised; sandboxes of different pods are built and
removed by a small pool of ``SANDBOX_THREADS`` threads in parallel (most of a
sandbox's wall time is kernel work — netns, veth — with the GIL released; one
thread made a burst of 30 pods wait ~1.2 s in line, bench/README.md).  Each
thread has its own netlink handles (an ``IPRoute`` and a plain socket) and
node-netns fd (thread-local); a pod's
sandbox is only ever touched by its one pod worker, and the IPAM claims IPs
with ``os.link`` (below), so they need no locks.  The public methods are
``async`` and simply hop onto a thread, so the agent's event loop never
blocks.  If ``node_netns`` is given, every worker thread
``setns()``-es into it once at start: only those threads change namespace, the
rest of the process (and the host's root namespace) is untouched.  This is how
the tests run a whole "node" inside a throw-away netns, and how a node agent can
drive a node netns without ``ip netns exec`` (design §4: that also remounts
/sys and breaks runc's cgroup lookup).

Why the sandbox is built from inside the worker thread instead of with
``IPRoute(netns=NAME)``: the latter forks a helper process per open (~12 ms,
design §4).  Instead the worker thread creates the pod netns with
``unshare(CLONE_NEWNET)`` + a bind mount (nodeagent/netns.py), ``setns()``es
back, and later visits the pod netns with ``setns()`` and opens a netlink
socket there (no fork; the thread's own sockets stay bound to the node netns,
where they were opened, and keep working there).  From inside it sets lo up,
creates the veth pair — ``eth0`` with ifindex 2 (a fresh netns holds only lo)
and up, its peer, the host end, in the node netns — and adds eth0's address
and the default route.  Then, in the node netns, the host end goes onto the
bridge (ifindex remembered from setup()) and up, and hairpin on, by name.

Those requests are encoded with pyroute2's message classes and sent on plain
netlink sockets with every ack checked (nodeagent/rtnl.py: ~0.04 ms per
message against ~0.2-0.4 ms per ``IPRoute`` call): 3 writes and no lookups per
create, 1 per delete, where there were 11 ``IPRoute`` calls and an
``IPRoute()`` per create (bench/README.md).  If ifindex 2 is taken in the new
netns (fallback tunnel devices, see _make_veth_inside), eth0 gets an index
the kernel picks and one lookup.
``IPRoute`` stays for the node-level work.  A fresh pod (no record, no netns
file) skips the clean-up of an earlier attempt: the veth pair is made after
the netns and inside it, and a delete removes the record last, so there is
nothing to clean; a host end that outlived its netns anyway (netns file
removed by hand) makes the create fail with EEXIST, and is deleted and the
create repeated once.

Sysctls: ``/proc/sys/net/*`` files follow the netns of the thread that opens
them, so ``ip_forward`` and ``bridge-nf-call-iptables`` are written from the
worker thread, i.e. in the node netns (both are per-netns on this kernel; new
netns start with ip_forward=0).

Measured here (2 cores, kernel 6.18, bench/sandbox.py): create_sandbox ~2.3 ms
wall and ~1.9 ms CPU (most of it the kernel's) per sandbox; delete_sandbox
~31 ms wall (the kernel waits for RCU grace periods when it removes the veth)
but ~1.3 ms CPU; no helper process.

Pod IPs come from nodeagent/ipam.py (a file per IP under ``state_dir/ipam/``,
claimed without locks, surviving restarts).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import ipaddress
import json
import os
import re
import socket
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nodeagent.errors import NetworkError
from nodeagent.ipam import IPAM
from nodeagent.netns import NETNS_RUN_DIR, make_netns, remove_netns, setns, write_sysctl
from nodeagent.rtnl import (ETH0_IFINDEX, bridge_port_requests, link_del_request, pod_addr_requests, pod_link_requests,
                            rtnl_socket, send_acked)

RTPROT_KCTL = 176  # routing protocol number marking the host-gw routes we own
SANDBOX_THREADS = 4  # sandboxes built in parallel (a burst of pods on one node)


@dataclass(frozen=True)
class Sandbox:
    pod_uid: str
    netns_name: str
    netns_path: str
    ip: str
    prefixlen: int
    gateway: str
    veth_host: str


class NodeNetwork:
    """The pod network of one node; see the module docstring for the threading model."""

    def __init__(self, bridge_name: str, pod_cidr: str, state_dir: str | os.PathLike,
                 netns_prefix: str, node_netns: str | None = None):
        if len(bridge_name) > 15:
            raise NetworkError(f"bridge name {bridge_name!r} longer than 15 characters")
        self.bridge_name = bridge_name
        self.pod_cidr = ipaddress.ip_network(pod_cidr)
        self.gateway = str(self.pod_cidr.network_address + 1)
        self.state_dir = Path(state_dir)
        self.netns_prefix = netns_prefix
        self.node_netns = node_netns
        (self.state_dir / "sandboxes").mkdir(parents=True, exist_ok=True)
        self.ipam = IPAM(pod_cidr, state_dir)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"net-{bridge_name}", initializer=self._thread_init)
        self._sandbox_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=SANDBOX_THREADS, thread_name_prefix=f"sb-{bridge_name}", initializer=self._thread_init)
        self._tls = threading.local()      # each worker thread's netlink handle and node-netns fd
        self._handles: list[tuple[IPRoute, socket.socket, int]] = []   # every thread's, closed by close()
        self._bridge_idx: int | None = None  # the bridge's ifindex in the node netns, set by setup()

    @property
    def _ipr(self) -> IPRoute:
        return self._tls.ipr

    @property
    def _nl(self) -> socket.socket:
        """The thread's plain netlink socket in the node netns (nodeagent/rtnl.py)."""
        return self._tls.nl

    @property
    def _node_fd(self) -> int:
        return self._tls.node_fd

    # ------------------------------------------------------------------ plumbing
    def _thread_init(self) -> None:
        if self.node_netns:
            path = self.node_netns if "/" in self.node_netns else f"{NETNS_RUN_DIR}/{self.node_netns}"
            fd = os.open(path, os.O_RDONLY)
            try:
                setns(fd)
            finally:
                os.close(fd)
        self._tls.node_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self._tls.ipr = IPRoute()
        self._tls.nl = rtnl_socket()
        self._handles.append((self._tls.ipr, self._tls.nl, self._tls.node_fd))

    async def _run(self, fn, *args, pool=None):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool or self._pool, fn, *args)
        except NetworkError:
            raise
        except concurrent.futures.BrokenExecutor as exc:
            raise NetworkError(f"network worker thread failed to start (node netns "
                               f"{self.node_netns!r} missing?): {exc}") from exc
        except (NetlinkError, OSError) as exc:
            raise NetworkError(f"{fn.__name__}: {exc}") from exc

    def _names(self, pod_uid: str) -> tuple[str, str]:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", pod_uid)
        h = hashlib.sha1(f"{self.netns_prefix}/{self.bridge_name}/{pod_uid}".encode()).hexdigest()
        return f"{self.netns_prefix}{safe}", f"kctl{h[:10]}"

    def _link_index(self, name: str) -> int | None:
        idx = self._ipr.link_lookup(ifname=name)
        return idx[0] if idx else None

    # ------------------------------------------------------------------ node level
    async def setup(self) -> None:
        """Create (or reconcile) the bridge with the gateway IP; enable forwarding sysctls."""
        await self._run(self._setup)

    def _setup(self) -> None:
        ipr = self._ipr
        idx = self._link_index(self.bridge_name)
        if idx is None:
            ipr.link("add", ifname=self.bridge_name, kind="bridge")
            idx = self._link_index(self.bridge_name)
        self._bridge_idx = idx
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
        if self.gateway not in have:
            ipr.addr("add", index=idx, address=self.gateway, prefixlen=self.pod_cidr.prefixlen)
        ipr.link("set", index=idx, state="up")
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        try:
            write_sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables", "1")
        except FileNotFoundError as exc:
            raise NetworkError("br_netfilter not loaded: /proc/sys/net/bridge missing") from exc

    async def sync_routes(self, routes: dict[str, str]) -> dict[str, list[str]]:
        """Make our host-gw routes exactly {node_ip: pod_cidr} (own CIDR skipped).

        Only routes carrying protocol RTPROT_KCTL are ever removed.  Returns
        {"added": [...], "removed": [...]} as "CIDR via IP" strings.
        """
        return await self._run(self._sync_routes, dict(routes))

    def _sync_routes(self, routes: dict[str, str]) -> dict[str, list[str]]:
        want = {}
        for node_ip, cidr in routes.items():
            net = ipaddress.ip_network(cidr)
            if net != self.pod_cidr:
                want[str(net)] = node_ip
        have = {}
        for r in self._ipr.get_routes(family=2, table=254, proto=RTPROT_KCTL):
            if r["proto"] != RTPROT_KCTL:
                continue
            have[f"{r.get_attr('RTA_DST')}/{r['dst_len']}"] = r.get_attr("RTA_GATEWAY")
        added, removed = [], []
        for dst, gw in have.items():
            if want.get(dst) != gw:
                try:
                    self._ipr.route("del", dst=dst, gateway=gw, proto=RTPROT_KCTL)
                except NetlinkError as exc:
                    if exc.code != errno.ESRCH:
                        raise
                removed.append(f"{dst} via {gw}")
        for dst, gw in want.items():
            if have.get(dst) != gw:
                self._ipr.route("replace", dst=dst, gateway=gw, proto=RTPROT_KCTL)
                added.append(f"{dst} via {gw}")
        return {"added": added, "removed": removed}

    # ------------------------------------------------------------------ sandboxes
    async def create_sandbox(self, pod_uid: str, pod_name: str = "") -> Sandbox:
        """Create the pod's netns + veth + IP (idempotent: an intact sandbox is returned as is)."""
        return await self._run(self._create_sandbox, pod_uid, pod_name, pool=self._sandbox_pool)

    def _record_path(self, pod_uid: str) -> Path:
        return self.state_dir / "sandboxes" / f"{hashlib.sha1(pod_uid.encode()).hexdigest()}.json"

    def _create_sandbox(self, pod_uid: str, pod_name: str) -> Sandbox:
        netns_name, veth = self._names(pod_uid)
        netns_path = f"{NETNS_RUN_DIR}/{netns_name}"
        rec = self._record_path(pod_uid)
        if rec.exists():
            sb = Sandbox(**json.loads(rec.read_text()))
            if os.path.exists(sb.netns_path) and self._link_index(sb.veth_host) is not None:
                return sb
        if rec.exists() or os.path.lexists(netns_path):
            # partial leftovers of an earlier attempt.  Without record and netns there are none:
            # the veth pair is made inside the netns after it, delete removes the record last.
            self._delete_sandbox(pod_uid)
        ip = self.ipam.allocate(pod_uid)
        sb = Sandbox(pod_uid, netns_name, netns_path, ip, self.pod_cidr.prefixlen, self.gateway, veth)
        try:
            self._bridge_index()                 # no bridge, no netns
            make_netns(netns_path, self._node_fd)
            ns_fd = os.open(netns_path, os.O_RDONLY)
            try:
                self._configure_inside(ns_fd, sb)
            finally:
                os.close(ns_fd)
            self._attach_host_end(veth)
            rec.write_text(json.dumps({**asdict(sb)}))
        except BaseException:
            self._delete_sandbox(pod_uid)
            raise
        return sb

    def _bridge_index(self, refresh: bool = False) -> int:
        """The bridge's ifindex, remembered from setup() (looked up again if asked or unknown)."""
        if refresh or self._bridge_idx is None:
            self._bridge_idx = self._link_index(self.bridge_name)
            if self._bridge_idx is None:
                raise NetworkError(f"bridge {self.bridge_name} missing: setup() not run?")
        return self._bridge_idx

    def _attach_host_end(self, veth: str) -> None:
        """The veth's host end onto the bridge and up, hairpin on: one write, by name."""
        try:
            send_acked(self._nl, bridge_port_requests(veth, self._bridge_index()))
        except NetlinkError as exc:            # the bridge was re-created since: its index changed
            if exc.code not in (errno.EINVAL, errno.ENODEV, errno.EOPNOTSUPP):
                raise
            send_acked(self._nl, bridge_port_requests(veth, self._bridge_index(refresh=True)))

    def _configure_inside(self, ns_fd: int, sb: Sandbox) -> None:
        """lo, the veth pair, eth0's address and route, from inside the fresh pod netns."""
        setns(ns_fd)
        try:
            with rtnl_socket() as sock:
                index = self._make_veth_inside(sock, sb)
                send_acked(sock, pod_addr_requests(sb.ip, sb.prefixlen, sb.gateway, index))
        finally:
            setns(self._node_fd)

    def _make_veth_inside(self, sock: socket.socket, sb: Sandbox) -> int:
        """lo up and the veth pair, eth0 with ifindex 2 if it is free; eth0's ifindex."""
        index = ETH0_IFINDEX
        for attempt in range(3):
            try:
                send_acked(sock, pod_link_requests(sb.ip, sb.veth_host, self._node_fd, index))
                break
            except NetlinkError as exc:
                if exc.code != errno.EEXIST or attempt == 2:
                    raise
                # a host end of that name outlived its netns (netns file removed by hand?), or else
                # ifindex 2 is taken: with ipip/sit loaded the kernel gives every new netns tunl0, sit0...
                if not self._delete_veth(sb.veth_host):
                    index = 0
        if index:
            return index
        with IPRoute() as ipr:
            return ipr.link_lookup(ifname="eth0")[0]

    async def delete_sandbox(self, pod_uid: str) -> None:
        """Delete netns, veth and the pod's IP; a no-op for parts already gone."""
        await self._run(self._delete_sandbox, pod_uid, pool=self._sandbox_pool)

    def _delete_sandbox(self, pod_uid: str) -> None:
        netns_name, veth = self._names(pod_uid)
        self._delete_veth(veth)
        remove_netns(f"{NETNS_RUN_DIR}/{netns_name}")
        self.ipam.release(pod_uid)
        self._record_path(pod_uid).unlink(missing_ok=True)

    def _delete_veth(self, veth: str) -> bool:
        """Delete a veth pair by its host end's name; False if there was none."""
        try:
            send_acked(self._nl, link_del_request(veth))
            return True
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
            return False

    def get_sandbox(self, pod_uid: str) -> Sandbox | None:
        """The recorded sandbox of a pod (e.g. to re-adopt it after an agent restart)."""
        try:
            return Sandbox(**json.loads(self._record_path(pod_uid).read_text()))
        except FileNotFoundError:
            return None

    async def list_sandboxes(self) -> list[Sandbox]:
        recs = (self.state_dir / "sandboxes").glob("*.json")
        return [Sandbox(**json.loads(p.read_text())) for p in recs]

    def list_allocations(self) -> dict[str, str]:
        """{ip: pod_uid} of every allocated pod IP (read from state_dir)."""
        return self.ipam.list_allocations()

    # ------------------------------------------------------------------ lifecycle
    async def teardown(self) -> None:
        """Remove every sandbox we recorded, our routes and the bridge; then close()."""
        for sb in await self.list_sandboxes():
            await self.delete_sandbox(sb.pod_uid)
        await self.sync_routes({})
        await self._run(self._del_bridge)
        self.close()

    def _del_bridge(self) -> None:
        idx = self._link_index(self.bridge_name)
        self._bridge_idx = None
        if idx is not None:
            self._ipr.link("del", index=idx)

    def close(self) -> None:
        """Stop the worker threads and close their netlink handles (nothing is deleted)."""
        self._pool.shutdown(wait=True)
        self._sandbox_pool.shutdown(wait=True)
        while self._handles:
            ipr, nl, fd = self._handles.pop()
            ipr.close()
            nl.close()
            os.close(fd)
