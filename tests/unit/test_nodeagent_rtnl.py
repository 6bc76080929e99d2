"""nodeagent.rtnl: netlink requests in one write, every ack checked (a fake socket; the real
kernel side is in tests/integration/nodeagent_runtime/test_network.py)."""
from __future__ import annotations

import errno
import struct

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from nodeagent import rtnl

NLMSG_ERROR = 2


def ack(seq: int, error: int = 0) -> bytes:
    """struct nlmsghdr + struct nlmsgerr (error, the request's header) as the kernel sends it."""
    return struct.pack("=IHHII", 36, NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", -error) + bytes(16)


class FakeSock:
    """Records the one write; answers with the acks made by REPLY from the sent sequence numbers."""

    def __init__(self, reply):
        self.reply, self.sent, self.chunks = reply, b"", None

    def send(self, data):
        self.sent = bytes(data)
        seqs, off = [], 0
        while off < len(data):
            length, _, flags, seq, _ = struct.unpack_from("=IHHII", data, off)
            seqs.append((seq, flags))
            off += length
        self.chunks = self.reply(seqs)
        return len(data)

    def recv(self, n):
        return self.chunks.pop(0)


def messages(sent: bytes) -> list[ifinfmsg]:
    out, off = [], 0
    while off < len(sent):
        (length,) = struct.unpack_from("=I", sent, off)
        m = ifinfmsg(sent[off:off + length])
        m.decode()
        out.append(m)
        off += length
    return out


def test_all_requests_go_in_one_write_with_ack_flags_and_every_ack_is_awaited():
    # the acks arrive in two reads, after a stray ack of an earlier batch
    sock = FakeSock(lambda seqs: [ack(seqs[0][0] - 1, errno.EEXIST) + ack(seqs[0][0]),
                                  b"".join(ack(s) for s, _ in seqs[1:])])
    rtnl.send_acked(sock, rtnl.bridge_port_requests("kctlabc", 7) + rtnl.link_del_request("x"))
    sent = messages(sock.sent)
    assert [m.get_attr("IFLA_IFNAME") for m in sent] == ["kctlabc", "kctlabc", "x"]
    assert sent[0].get_attr("IFLA_MASTER") == 7 and sent[0]["flags"] & 1 and sent[0]["change"] & 1
    assert all(m["header"]["flags"] & 0x5 == 0x5 for m in sent)          # NLM_F_REQUEST | NLM_F_ACK
    assert sock.chunks == []                                              # both reads were needed


def test_the_first_failed_request_is_raised_with_its_name():
    sock = FakeSock(lambda seqs: [ack(seqs[0][0]) + ack(seqs[1][0], errno.EEXIST) + ack(seqs[2][0], errno.ENODEV)
                                  + ack(seqs[3][0], errno.ENETUNREACH)])
    with pytest.raises(NetlinkError, match="veth add") as err:
        rtnl.send_acked(sock, rtnl.pod_link_requests("10.0.0.5", "kctlabc", 3) + rtnl.pod_addr_requests(
            "10.0.0.5", 24, "10.0.0.1", 2))
    assert err.value.code == errno.EEXIST


def test_pod_netns_requests_make_eth0_ifindex_2_up_with_the_ips_mac_and_the_peer_in_the_node_netns():
    assert [w for w, *_ in rtnl.pod_addr_requests("10.0.0.5", 24, "10.0.0.1", 2)] == ["addr add", "route add"]
    sock = FakeSock(lambda seqs: [b"".join(ack(s) for s, _ in seqs)])
    rtnl.send_acked(sock, rtnl.pod_link_requests("10.0.0.5", "kctlabc", 3))
    lo, eth0 = messages(sock.sent)
    assert (lo["index"], lo["flags"], lo["change"]) == (1, 1, 1)
    assert (eth0["index"], eth0["flags"] & 1) == (2, 1) and eth0["header"]["flags"] & 0x600 == 0x600  # CREATE|EXCL
    assert eth0.get_attr("IFLA_IFNAME") == "eth0" and eth0.get_attr("IFLA_ADDRESS") == "0a:58:0a:00:00:05"
    peer = eth0.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "kctlabc" and peer.get_attr("IFLA_NET_NS_FD") == 3
