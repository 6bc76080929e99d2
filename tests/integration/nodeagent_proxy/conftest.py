"""A mini node in throw-away network namespaces for the service proxy's integration tests (root).

Topology (all names start with ``kctltest-px<run>``; nothing is created in, or
routed through, the root namespace)::

    netns POD0..2  eth0 10.251.7.10-12/24, default via .1     (each runs serve.py: TCP 8080, UDP 8053)
         │ veth (hairpin on)
    netns NODE     bridge kpbr0 10.251.7.1/24 (pod gateway)   ip_forward=1, bridge-nf-call-iptables=1
                   kpout 10.252.7.10/24 = the node IP          route 10.97.0.0/16 via 10.252.7.20
         │ veth
    netns OUT      eth0 10.252.7.20/24, no other route         (serve.py: TCP 9000)

OUT plays a machine on the node subnet (the lab's control plane): it has no
route to the pod CIDR, so pod traffic reaches it and comes back only when
masqueraded.  The node routes the service range towards OUT so that a VIP
without endpoints is really *routed* and only the REJECT rule can answer it
(the lab's nodes have no default route: there an unrouted VIP would fail with
"no route" and hide a missing REJECT).

The proxy runs in the test process with ``IptablesRunner(netns=NODE)``: every
iptables command is spawned through ``nsenter --net``.  Servers and clients are
separate processes in the pod/outside namespaces, killed by PID; the namespaces
are deleted at module teardown whatever happened.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

RUN = uuid.uuid4().hex[:6]
PREFIX = f"kctltest-px{RUN}"
NETNS_DIR = "/var/run/netns"
POD_NET, GATEWAY = "10.251.7.0/24", "10.251.7.1"
POD_IPS = ["10.251.7.10", "10.251.7.11", "10.251.7.12"]
NODE_IP, OUT_IP, NODE_SUBNET = "10.252.7.10", "10.252.7.20", "10.252.7.0/24"
SERVICE_RANGE = "10.97.0.0/16"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("iptables-restore") or not shutil.which("nsenter")
    or not shutil.which("conntrack") or not os.path.isdir("/proc/sys/net/bridge"),
    reason="needs root, iptables, conntrack, nsenter and br_netfilter")

SERVER = r'''
import socket, sys, threading
name, tcp_port, udp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", tcp_port)); t.listen(128)
if udp_port:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", udp_port))
    def udp():
        while True:
            _, peer = u.recvfrom(100)
            u.sendto(f"{name} {peer[0]}".encode(), peer)
    threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept()
    c.sendall(f"{name} {peer[0]}\n".encode()); c.close()
'''

CLIENT = r'''
import errno, json, socket, sys
proto, host, port, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
sport = int(sys.argv[6])
out = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    if sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
    try:
        if proto == "tcp":
            s.connect((host, port)); out.append(s.makefile().readline().strip())
        else:
            s.sendto(b"hi", (host, port)); out.append(s.recv(100).decode())
    except socket.timeout:
        out.append("ERR:timeout")
    except OSError as e:
        out.append("ERR:" + errno.errorcode.get(e.errno, str(e.errno)))
    finally:
        s.close()
print(json.dumps(out))
'''


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def ns_path(name: str) -> str:
    return f"{NETNS_DIR}/{name}"


def in_ns(name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("nsenter", f"--net={ns_path(name)}", *argv, check=check)


@dataclass
class MiniNode:
    node: str
    pods: list[str]
    out: str
    tmp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def all_netns(self) -> list[str]:
        return [self.node, *self.pods, self.out]

    def serve(self, netns: str, name: str, tcp_port: int, udp_port: int = 0) -> None:
        p = subprocess.Popen(["nsenter", f"--net={ns_path(netns)}", sys.executable, str(self.tmp / "serve.py"),
                              name, str(tcp_port), str(udp_port)], stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"server {name} did not start")

    def connect(self, from_ns: str, host: str, port: int, count: int = 1, proto: str = "tcp",
                timeout: float = 5.0, sport: int = 0) -> list[str]:
        """COUNT fresh connections (or datagrams) from a namespace: replies 'NAME PEER_IP' or 'ERR:…'.

        Each uses a new socket, so a new source port and conntrack entry,
        unless SPORT pins the source port (one UDP flow across calls).
        """
        r = sh("nsenter", f"--net={ns_path(from_ns)}", sys.executable, str(self.tmp / "client.py"), proto, host,
               str(port), str(count), str(timeout), str(sport))
        return json.loads(r.stdout)

    def save(self, table: str, counters: bool = False) -> str:
        return in_ns(self.node, "iptables-save", "-t", table, *(["-c"] if counters else [])).stdout


def _build(m: MiniNode) -> None:
    for n in m.all_netns:
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    node = m.node
    sh("ip", "-n", node, "link", "add", "kpbr0", "type", "bridge")
    sh("ip", "-n", node, "addr", "add", f"{GATEWAY}/24", "dev", "kpbr0")
    sh("ip", "-n", node, "link", "set", "kpbr0", "up")
    for i, (pod, ip) in enumerate(zip(m.pods, POD_IPS)):
        sh("ip", "-n", node, "link", "add", f"kpv{i}", "type", "veth", "peer", "name", "eth0", "netns", pod)
        sh("ip", "-n", node, "link", "set", f"kpv{i}", "master", "kpbr0", "up")
        sh("ip", "-n", node, "link", "set", f"kpv{i}", "type", "bridge_slave", "hairpin", "on")
        sh("ip", "-n", pod, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", pod, "link", "set", "eth0", "up")
        sh("ip", "-n", pod, "route", "add", "default", "via", GATEWAY)
    sh("ip", "-n", node, "link", "add", "kpout", "type", "veth", "peer", "name", "eth0", "netns", m.out)
    sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "kpout")
    sh("ip", "-n", node, "link", "set", "kpout", "up")
    sh("ip", "-n", m.out, "addr", "add", f"{OUT_IP}/24", "dev", "eth0")
    sh("ip", "-n", m.out, "link", "set", "eth0", "up")
    sh("ip", "-n", node, "route", "add", SERVICE_RANGE, "via", OUT_IP)
    # per-netns sysctls, written from inside the node netns (design §4)
    in_ns(node, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && "
                            "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")
    (m.tmp / "serve.py").write_text(SERVER)
    (m.tmp / "client.py").write_text(CLIENT)
    for i, pod in enumerate(m.pods):
        m.serve(pod, f"pod{i}", 8080, 8053)
    m.serve(m.out, "out", 9000)


def _teardown(m: MiniNode) -> None:
    for p in m.procs:
        try:
            os.kill(p.pid, signal.SIGKILL)   # nsenter execs python: the PID is the server's
        except ProcessLookupError:
            pass
        p.wait(timeout=10)
        if p.stdout:
            p.stdout.close()
    for n in m.all_netns:
        if os.path.exists(ns_path(n)):
            sh("ip", "netns", "del", n, check=False)


@pytest.fixture(scope="module")
def mini_node(tmp_path_factory):
    tag = uuid.uuid4().hex[:4]
    m = MiniNode(node=f"{PREFIX}-{tag}-node", pods=[f"{PREFIX}-{tag}-pod{i}" for i in range(3)],
                 out=f"{PREFIX}-{tag}-out", tmp=tmp_path_factory.mktemp("proxy"))
    try:
        _build(m)
        yield m
    finally:
        _teardown(m)
