"""The pod sandbox's netlink requests, sent on a plain socket: pyroute2 encodes, one write per batch.

Why not ``IPRoute`` calls: on this machine pyroute2 spends ~0.2-0.4 ms of
Python on each call (its request filters and an asyncio loop turn per call)
and ~0.3 ms on opening an ``IPRoute()``, while encoding a message with its
message classes (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``) takes ~0.04 ms and a
``socket.socket(AF_NETLINK)`` ~5 µs.  A sandbox needs ~7 requests in two
network namespaces, so it is built from these messages, sent in a few writes
(``send_acked``), every request with NLM_F_ACK and every ack checked.  The kernel handles each message of a write in order, also after one
failed, so the first failure is the one reported (later ones follow from it).
The messages are what ``IPRoute.link/addr/route`` send for the same calls.

A netlink socket stays in the network namespace it was opened in, whatever
the thread does afterwards: a socket opened in the node netns keeps working
there while its thread is inside a pod netns.
"""
from __future__ import annotations

import itertools
import os
import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

LOOPBACK_IFINDEX = 1          # the kernel's: lo is the first device of every network namespace
ETH0_IFINDEX = 2              # a pod's eth0, created with this index in its fresh netns (only lo there)
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1   # a route as `ip route add` / IPRoute.route make it
NEW = NLM_F_CREATE | NLM_F_EXCL

_seq = itertools.count(1)     # sequence numbers, unique in the process: a stray ack never matches


def rtnl_socket() -> socket.socket:
    """A netlink route socket in the calling thread's current network namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)


def _msg(cls, attrs=(), **fields):
    """A pyroute2 message of CLS with header FIELDS and ATTRS (its constructor takes neither)."""
    msg = cls()
    for k, v in fields.items():
        msg[k] = v
    msg["attrs"] = list(attrs)
    return msg


def pod_link_requests(ip: str, veth_host: str, node_fd: int, index: int = ETH0_IFINDEX) -> list[tuple]:
    """To be sent from inside a fresh pod netns: lo up, and the veth pair — ``eth0`` with ifindex
    INDEX (0: the kernel picks) and up, its peer VETH_HOST made in the netns of NODE_FD.  (A veth
    peer can be neither up nor given an ifindex in the same request — the kernel ignores the one
    and fails the other with ENOTCONN — so eth0 is the main device.)  A taken name or ifindex
    fails with EEXIST."""
    mac = "0a:58:" + ":".join(f"{int(o):02x}" for o in ip.split("."))  # from the IP (as CNI's bridge): a reused IP keeps its MAC, no stale neighbour entry
    peer = {"attrs": [("IFLA_IFNAME", veth_host), ("IFLA_NET_NS_FD", node_fd)]}
    linkinfo = {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}
    return [
        ("lo up", _msg(ifinfmsg, index=LOOPBACK_IFINDEX, flags=IFF_UP, change=IFF_UP), RTM_NEWLINK, 0),
        ("veth add", _msg(ifinfmsg, index=index, flags=IFF_UP, change=IFF_UP, attrs=[
            ("IFLA_IFNAME", "eth0"), ("IFLA_ADDRESS", mac), ("IFLA_LINKINFO", linkinfo)]), RTM_NEWLINK, NEW),
    ]


def pod_addr_requests(ip: str, prefixlen: int, gateway: str, index: int) -> list[tuple]:
    """eth0's (ifindex INDEX) address and the default route; sent only once eth0 exists, as a
    failed veth add would otherwise leave them to whatever device holds INDEX."""
    return [
        ("addr add", _msg(ifaddrmsg, family=socket.AF_INET, prefixlen=prefixlen, index=index,
                          attrs=[("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]), RTM_NEWADDR, NEW),
        ("route add", _msg(rtmsg, family=socket.AF_INET, table=RT_TABLE_MAIN, proto=RTPROT_STATIC,
                           type=RTN_UNICAST, attrs=[("RTA_GATEWAY", gateway)]), RTM_NEWROUTE, NEW),
    ]


def bridge_port_requests(ifname: str, bridge: int) -> list[tuple]:
    """IFNAME onto the bridge with ifindex BRIDGE and up, then hairpin on (IFLA_BRPORT_MODE, a
    bridge port option, so a second request once it is a port), both by name."""
    slave = {"attrs": [("IFLA_INFO_KIND", "bridge_slave"),       # as IPRoute.link(kind="bridge_slave", mode=1)
                       ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]})]}
    return [("attach to bridge", _msg(ifinfmsg, flags=IFF_UP, change=IFF_UP,
                                      attrs=[("IFLA_IFNAME", ifname), ("IFLA_MASTER", bridge)]), RTM_NEWLINK, 0),
            ("hairpin on", _msg(ifinfmsg, attrs=[("IFLA_IFNAME", ifname), ("IFLA_LINKINFO", slave)]), RTM_NEWLINK, 0)]


def link_del_request(ifname: str) -> list[tuple]:
    return [(f"link del {ifname}", _msg(ifinfmsg, attrs=[("IFLA_IFNAME", ifname)]), RTM_DELLINK, 0)]


def send_acked(sock: socket.socket, requests: list[tuple]) -> None:
    """Send REQUESTS ((what, message, type, flags) each) in one write and wait for all their
    acks; raise NetlinkError(errno) for the first request that failed."""
    data, seqs = bytearray(), {}
    for what, msg, kind, flags in requests:
        seq = next(_seq) & 0xFFFFFFFF
        seqs[seq] = what
        msg["header"] = {"type": kind, "flags": NLM_F_REQUEST | NLM_F_ACK | flags, "sequence_number": seq}
        msg.encode()
        data += msg.data
    sock.send(data)
    errors, pending = {}, set(seqs)
    while pending:
        buf, off = sock.recv(65536), 0
        while off < len(buf):
            length, kind, _, seq, _ = struct.unpack_from("=IHHII", buf, off)   # struct nlmsghdr
            if kind == NLMSG_ERROR and seq in pending:
                pending.discard(seq)
                code = -struct.unpack_from("=i", buf, off + 16)[0]            # struct nlmsgerr.error
                if code:
                    errors[seq] = code
            off += (length + 3) & ~3
    for seq, what in seqs.items():
        if seq in errors:
            raise NetlinkError(errors[seq], f"{what}: {os.strerror(errors[seq])}")
