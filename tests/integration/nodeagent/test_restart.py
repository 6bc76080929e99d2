"""Agent restarts, shared image layers, cleanup, two nodes, and the logs/exec service."""
from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc
import pytest

from harness.pki import session
from machinery.pb import core_pb2, node_pb2, node_pb2_grpc
from tests.integration.nodeagent.conftest import (all_running, cid_of, cstatus, make_pod, needs_root, node_ready,
                                                  pod_gone, pod_running, pod_where, wait_for)

pytestmark = [pytest.mark.root, needs_root]


def sleeper(name: str, node, **kw) -> core_pb2.Pod:
    return make_pod(name, node, {"name": "c", "image": "busybox", "command": ["sleep", "3600"]}, **kw)


async def test_agent_restart_adopts_everything(api, make_node):
    node = make_node("adopt")
    await node_ready(api, node)
    await api.create(make_pod("two", node,
                              {"name": "a", "image": "busybox", "command": ["sleep", "3600"]},
                              {"name": "b", "image": "kctl/echo",
                               "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}))
    await api.create(make_pod("crashy", node, {"name": "c", "image": "busybox", "command": ["sh", "-c", "sleep 1; exit 2"]}))
    await api.create(sleeper("doomed", node))
    two = await pod_where(api, "two", lambda p: all_running(p) and all(c.ready for c in p.status.container_statuses),
                          "running and ready", node)
    await pod_where(api, "crashy", lambda p: p.status.container_statuses and cstatus(p, "c").restart_count >= 1,
                    "a restart", node)
    await pod_running(api, "doomed", node)
    before = {c.name: (c.container_id, c.restart_count) for c in two.status.container_statuses}
    pids = {n: node.container_pid(cid_of(two, n)) for n in ("a", "b")}

    # Watch the Node across the restart: a re-registering agent must not post
    # Ready=False, which would taint the node and get its pods evicted.
    _, node_rv = await api.list(core_pb2.Node, field_selector=f"metadata.name={node.name}")
    ready_seen: list[str] = []

    async def watch_ready():
        async for ev in api.watch(core_pb2.Node, resource_version=node_rv,
                                  field_selector=f"metadata.name={node.name}"):
            ready_seen.extend(c.status for c in ev.object.status.conditions if c.type == "Ready")
    watcher = asyncio.create_task(watch_ready())

    node.stop(signal.SIGKILL)                       # the agent dies hard; containers live on
    assert all(os.path.exists(f"/proc/{p}") for p in pids.values())
    await api.delete(core_pb2.Pod, "doomed", "default", grace_period=1)   # deleted while the agent is away
    crashy_restarts = cstatus(await api.get(core_pb2.Pod, "crashy", "default"), "c").restart_count
    node.start()
    await pod_gone(api, "doomed", node)               # the new agent finished the deletion
    await pod_where(api, "crashy", lambda p: cstatus(p, "c").restart_count > crashy_restarts,
                    "crash loop goes on", node)
    await asyncio.sleep(3)
    two = await pod_where(api, "two", lambda p: all_running(p) and all(c.ready for c in p.status.container_statuses),
                          "still running and ready", node)
    after = {c.name: (c.container_id, c.restart_count) for c in two.status.container_statuses}
    assert after == before
    assert {n: node.container_pid(cid_of(two, n)) for n in ("a", "b")} == pids
    assert "adopted container a" in node.log.read_text()
    watcher.cancel()
    assert ready_seen and "False" not in ready_seen, ready_seen

    for name in ("two", "crashy"):
        await api.delete(core_pb2.Pod, name, "default", grace_period=1)
    for name in ("two", "crashy"):
        await pod_gone(api, name, node)
    await wait_for(lambda: not node.leftovers(), 20, "nothing left", node)


async def test_ten_containers_share_unpacked_layers_and_nothing_remains(api, make_node):
    node = make_node("layers")
    await node_ready(api, node)
    await api.create(make_pod("echo-0", node, {"name": "c", "image": "kctl/echo", "imagePullPolicy": "IfNotPresent"}))
    await pod_running(api, "echo-0", node)
    layers_dir = node.root / "images" / "layers" / "sha256"
    first = {p.name: p.stat().st_ino for p in layers_dir.iterdir()}
    assert len(first) == 2                                         # busybox base + echo layer
    for i in range(1, 10):
        await api.create(make_pod(f"echo-{i}", node, {"name": "c", "image": "kctl/echo",
                                                      "imagePullPolicy": "IfNotPresent"}))
    pods = [await pod_running(api, f"echo-{i}", node) for i in range(10)]
    assert {p.name: p.stat().st_ino for p in layers_dir.iterdir()} == first   # never unpacked again
    lowers = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(node.root) in line and " overlay " in line:
            opts = line.split(" - ")[1]
            lowers.add(next(o for o in opts.split(",") if o.startswith("lowerdir=")))
    assert len(lowers) == 1 and all(str(layers_dir) in x for x in lowers)
    assert len({p.status.pod_ip for p in pods}) == 10
    for i in range(10):
        await api.delete(core_pb2.Pod, f"echo-{i}", "default")
    for i in range(10):
        await pod_gone(api, f"echo-{i}", node)
    await wait_for(lambda: not node.leftovers(), 20, "no netns, veth, mount, cgroup or IP left", node)


async def test_two_nodes_pods_reach_each_other(api, make_node):
    a, b = make_node("east"), make_node("west")
    await node_ready(api, a)
    await node_ready(api, b)
    await api.create(sleeper("pa", a))
    await api.create(make_pod("pb", b, {"name": "c", "image": "kctl/echo"}))
    pa, pb = await pod_running(api, "pa", a), await pod_running(api, "pb", b)
    assert pa.status.pod_ip.startswith("10.213.") and pb.status.pod_ip.startswith("10.213.")
    assert pa.status.pod_ip.rsplit(".", 1)[0] != pb.status.pod_ip.rsplit(".", 1)[0]

    def fetch():
        r = a.runc_exec(cid_of(pa, "c"), "timeout", "5", "wget", "-q", "-O", "-", f"http://{pb.status.pod_ip}:8080/")
        return r.stdout.strip() == "pb"
    await wait_for(fetch, 30, "pod on node east fetches from the pod on node west", a)
    # (no ping: runc's default capabilities have no CAP_NET_RAW, as with Kubernetes' defaults)
    routes = a.runc_exec(cid_of(pa, "c"), "ip", "route").stdout
    assert "default via" in routes
    for n, node in (("pa", a), ("pb", b)):
        await api.delete(core_pb2.Pod, n, "default", grace_period=1)
        await pod_gone(api, n, node)


async def test_logs_and_exec_service(api, make_node):
    node = make_node("svc")
    await node_ready(api, node)
    n = await api.get(core_pb2.Node, node.name)
    endpoint = n.metadata.annotations["kctl.io/agent-endpoint"]
    await api.create(make_pod("talker", node, {
        "name": "c", "image": "busybox",
        "command": ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; sleep 1; exit 1"]}))
    await pod_where(api, "talker", lambda p: p.status.container_statuses and cstatus(p, "c").restart_count >= 1
                    and all_running(p), "restarted once", node)
    async with grpc.aio.secure_channel(endpoint, session().kubelet_client().grpc()) as ch:
        stub = node_pb2_grpc.NodeAgentStub(ch)

        async def logs(**kw) -> str:
            return b"".join([c.data async for c in stub.Logs(node_pb2.LogsRequest(
                namespace="default", pod="talker", **kw))]).decode()
        assert (await logs(previous=True)).split() == ["line1", "line2", "line3", "line4", "line5", "oops"]
        assert (await logs(previous=True, tail_lines=2)).split() == ["line5", "oops"]
        followed = await asyncio.wait_for(logs(follow=True, container="c"), 30)   # ends when it exits
        assert followed.split()[:5] == ["line1", "line2", "line3", "line4", "line5"]
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await logs(container="nope")
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    await _only_the_apiserver_may_call(endpoint)

    await api.create(sleeper("shell", node))
    await pod_running(api, "shell", node)
    async with grpc.aio.secure_channel(endpoint, session().kubelet_client().grpc()) as ch:
        stub = node_pb2_grpc.NodeAgentStub(ch)

        async def requests():
            yield node_pb2.ExecRequest(namespace="default", pod="shell", command=["sh", "-c", "cat; echo err >&2; exit 7"],
                                       stdin=True, stdin_data=b"hello ")
            yield node_pb2.ExecRequest(stdin_data=b"world\n", stdin_eof=True)
        out = err = b""
        code = None
        async for r in stub.Exec(requests()):
            out += r.stdout
            err += r.stderr
            if r.HasField("exit_code"):
                code = r.exit_code
        assert (out, err, code) == (b"hello world\n", b"err\n", 7)
        resp = [r async for r in stub.Exec(iter([node_pb2.ExecRequest(namespace="default", pod="shell",
                                                                        command=["hostname"])]))]
        assert b"".join(r.stdout for r in resp) == b"shell\n" and resp[-1].exit_code == 0
        # a cancelled exec leaves no process behind in the container
        call = stub.Exec(iter([node_pb2.ExecRequest(namespace="default", pod="shell", command=["sleep", "123"])]))
        shell = await api.get(core_pb2.Pod, "shell", "default")
        await wait_for(lambda: "sleep 123" in node.runc_exec(cid_of(shell, "c"), "ps").stdout, 10, "exec running", node)
        call.cancel()
        await wait_for(lambda: "sleep 123" not in node.runc_exec(cid_of(shell, "c"), "ps").stdout, 10,
                       "exec'd process gone", node)
    for name in ("talker", "shell"):
        await api.delete(core_pb2.Pod, name, "default", grace_period=1)
        await pod_gone(api, name, node)


async def _only_the_apiserver_may_call(endpoint: str) -> None:
    """The agent's port refuses an exec from anyone but the apiserver: no
    certificate, a certificate of another CA (both refused in the handshake),
    the cluster admin's own certificate (UNAUTHENTICATED)."""
    from machinery import kubeconfig, pki
    other = pki.CA.create()
    cert, key = other.issue("kube-apiserver-kubelet-client", ("system:masters",))
    admin = session().credentials()
    attempts = {"no certificate": kubeconfig.Credentials(ca_pem=admin.ca_pem),
                "another CA": kubeconfig.Credentials(admin.ca_pem, pki.cert_pem(cert), pki.key_pem(key)),
                "the admin": admin}
    for who, creds in attempts.items():
        async with grpc.aio.secure_channel(endpoint, creds.grpc()) as ch:
            call = node_pb2_grpc.NodeAgentStub(ch).Exec(iter([node_pb2.ExecRequest(
                namespace="default", pod="talker", command=["id"])]))
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                [r async for r in call]
            want = grpc.StatusCode.UNAUTHENTICATED if who == "the admin" else grpc.StatusCode.UNAVAILABLE
            assert exc.value.code() == want, (who, exc.value)
