"""The agent's service proxy on a real node: ClusterIP and NodePort reach the echo pods behind a Service.

The EndpointSlice is written by the test (the EndpointSlice controller is
another component).  All traffic stays inside the node netns the fixtures
created: a client pod fetches the ClusterIP, the node netns fetches the
NodePort on the node IP.  busybox ``wget -T`` segfaults (design §4), so every
fetch is wrapped in ``timeout``.
"""
from __future__ import annotations

import socketserver
import subprocess
import sys
import threading

import pytest

from machinery import codec
from machinery.pb import core_pb2
from tests.cluster import REPO
from tests.integration.nodeagent.conftest import (cid_of, in_netns, make_pod, needs_root, node_ready,
                                                  pod_gone, pod_running, wait_for)

pytestmark = [pytest.mark.root, needs_root]

ECHOES = ("echo-a", "echo-b")


def kctl_chains(node) -> list[str]:
    out = []
    for table in ("nat", "filter"):
        text = in_netns(node.netns, "iptables-save", "-t", table, check=True).stdout
        out += [f"{table}: {ln}" for ln in text.splitlines() if "KCTL-" in ln]
    return out


def hooks(rules: list[str]) -> list[str]:
    """The jumps from built-in chains into ours (each must exist once)."""
    return sorted(r for r in rules if r.split(": ", 1)[1].startswith("-A ") and
                  not r.split(": ", 1)[1].startswith("-A KCTL-"))


def fetch_from_pod(node, cid: str, url: str) -> str:
    r = node.runc_exec(cid, "timeout", "5", "wget", "-q", "-O", "-", url, timeout=20)
    return r.stdout.strip() if r.returncode == 0 else ""


def fetch_from_node(node, url: str) -> str:
    r = in_netns(node.netns, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url, timeout=20)
    return r.stdout.strip() if r.returncode == 0 else ""


async def seen_names(fetch, want: set[str], what: str, node, tries: int = 60) -> set[str]:
    """Fetch until every name in want was answered (random choice per connection)."""
    seen: set[str] = set()

    def more():
        for _ in range(4):
            seen.add(fetch())
        return want <= seen
    await wait_for(more, tries, what, node)
    return seen - {""}


class PeerEcho(socketserver.ThreadingTCPServer):
    """HTTP answering with the client's address: shows whether pod traffic was masqueraded."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str):
        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.rfile.readline()
                body = self.client_address[0].encode() + b"\n"
                self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        super().__init__((host, 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


async def test_clusterip_and_nodeport_reach_both_echo_pods(api, make_node):
    if not subprocess.run(["busybox", "true"], capture_output=True).returncode == 0:
        pytest.skip("needs busybox on the host (busybox-static)")
    node = make_node("proxy", extra=["--masquerade-cidr", "169.254.0.0/16"])
    await node_ready(api, node)
    svc_name = f"echo-{node.name[-6:]}"
    try:
        for name in ECHOES:
            await api.create(make_pod(name, node, {"name": "echo", "image": "kctl/echo",
                                                   "ports": [{"containerPort": 8080}]},
                                      terminationGracePeriodSeconds=1))
        await api.create(make_pod("client", node, {"name": "c", "image": "busybox",
                                                   "command": ["sleep", "3600"]},
                                  terminationGracePeriodSeconds=1))
        pods = {name: await pod_running(api, name, node) for name in (*ECHOES, "client")}
        client_cid = cid_of(pods["client"], "c")

        svc = await api.create(codec.from_dict({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": svc_name, "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": "echo"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}))
        vip, node_port = svc.spec.cluster_ip, svc.spec.ports[0].node_port
        assert vip and node_port
        await api.create(codec.from_dict({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": svc_name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [pods[n].status.pod_ip], "nodeName": node.name,
                           "conditions": {"ready": True, "serving": True, "terminating": False},
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": n,
                                         "uid": pods[n].metadata.uid}} for n in ECHOES],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))

        # ClusterIP from a third pod on the node: both endpoints answer
        seen = await seen_names(lambda: fetch_from_pod(node, client_cid, f"http://{vip}:80/"), set(ECHOES),
                                f"both echo pods through {vip}:80", node)
        assert seen == set(ECHOES)
        # NodePort on the node IP, from the node netns itself
        seen = await seen_names(lambda: fetch_from_node(node, f"http://{node.ip}:{node_port}/"), set(ECHOES),
                                f"both echo pods through {node.ip}:{node_port}", node)
        assert seen == set(ECHOES)
        # an echo pod reaches itself through the VIP (hairpin)
        echo_cid = cid_of(pods["echo-a"], "echo")
        await seen_names(lambda: fetch_from_pod(node, echo_cid, f"http://{vip}:80/"), {"echo-a"},
                         "echo-a through the VIP (hairpin)", node)

        # --masquerade-cidr: a pod reaching the segment (the test's own bridge) shows up as the node
        peer = PeerEcho(node.segment.ip)
        try:
            src = fetch_from_pod(node, client_cid, f"http://{node.segment.ip}:{peer.server_address[1]}/")
        finally:
            peer.close()
        assert src == node.ip

        rules = kctl_chains(node)
        assert any("-j KCTL-SERVICES" in r for r in rules) and any(vip in r for r in rules)
        assert any("-j MASQUERADE" in r and "169.254.0.0/16" in r for r in rules)

        # a normal stop leaves the rules: the pods keep serving through the VIP
        node.stop()
        assert kctl_chains(node) == rules
        seen = await seen_names(lambda: fetch_from_pod(node, client_cid, f"http://{vip}:80/"), set(ECHOES),
                                "the VIP with the agent stopped", None)
        assert seen == set(ECHOES)

        # a new agent takes the rules over without duplicating its hooks
        node.start()
        await node_ready(api, node)
        es = await api.get("EndpointSlice", svc_name, "default")
        keep = [e for e in es.endpoints if e.addresses[0] == pods["echo-b"].status.pod_ip]
        del es.endpoints[:]                            # only echo-b from now on
        es.endpoints.extend(keep)
        await api.update(es)

        def only_b():
            return all(fetch_from_pod(node, client_cid, f"http://{vip}:80/") == "echo-b" for _ in range(6))
        await wait_for(only_b, 60, "the new agent's rules: echo-b only", node)
        assert hooks(kctl_chains(node)) == hooks(rules)
        node.stop()

        # the explicit teardown removes every KCTL chain and hook
        r = subprocess.run([sys.executable, "-m", "nodeagent.main", "--cleanup-iptables", "--netns",
                            node.netns_path], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "removed nat/KCTL-SERVICES" in r.stdout
        assert kctl_chains(node) == []
        assert fetch_from_pod(node, client_cid, f"http://{vip}:80/") == ""
        # and the echo pods still answer on their pod IPs
        assert fetch_from_pod(node, client_cid, f"http://{pods['echo-b'].status.pod_ip}:8080/") == "echo-b"

        node.start()
        await node_ready(api, node)
        await wait_for(lambda: any(vip in r for r in kctl_chains(node)), 30, "rules back after restart", node)
    finally:
        for kind, name in ((core_pb2.Service, svc_name), ("EndpointSlice", svc_name)):
            try:
                await api.delete(kind, name, "default")
            except Exception:  # noqa: BLE001 - may not exist
                pass
        for name in (*ECHOES, "client"):
            try:
                await api.delete(core_pb2.Pod, name, "default", grace_period=1)
            except Exception:  # noqa: BLE001
                pass
        if node.proc is not None:
            for name in (*ECHOES, "client"):
                await pod_gone(api, name, node)
