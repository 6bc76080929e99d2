"""`kctl logs` / `kctl exec` without a cluster.

* The apiserver's NodeProxy (apiserver/nodeproxy.py) served on loopback in
  front of a fake NodeAgent on loopback, driven through
  machinery.nodeclient: lookups, the errors kubectl users know, forwarding
  of requests, stdin and exit codes, and cancellation passed on to the agent.
* The click commands (kubectlish/logs.py, kubectlish/exec.py) with a
  FakeClient for the API and fake nodeclient streams: argument handling,
  container defaulting, deploy/NAME, output streams and exit codes.
"""
from __future__ import annotations

import asyncio

import grpc
import pytest
from click.testing import CliRunner

from apiserver.crud import not_found
from apiserver.nodeproxy import NodeProxy
from kubectlish import common
from kubectlish.exec import exec_cmd
from kubectlish.logs import logs_cmd
from kubectlish.main import KctlGroup, cli
from harness import pki as harness_pki
from machinery import codec, errors, kinds, kubeconfig, nodeclient
from machinery.fakeclient import FakeClient
from machinery.pb import node_pb2, node_pb2_grpc
from tests.cluster import free_port


def pod(name, node="n1", containers=("c",), annotations=None, labels=None):
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {},
                                         "labels": labels or {}},
                            "spec": {"nodeName": node, "containers": [{"name": c, "image": "i"} for c in containers]}})


def node(name, endpoint="", ip=""):
    d = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": {}}}
    if endpoint:
        d["metadata"]["annotations"]["kctl.io/agent-endpoint"] = endpoint
    if ip:
        d["status"] = {"addresses": [{"type": "InternalIP", "address": ip}]}
    return codec.from_dict(d)


# ----------------------------------------------------------------- proxy

class Store:
    """What NodeProxy needs of crud.Store: get(info, namespace, name) -> Any."""

    def __init__(self, *objs):
        self.objs = {(kinds.of(o).kind, o.metadata.namespace, o.metadata.name): o for o in objs}

    async def get(self, info, namespace, name):
        o = self.objs.get((info.kind, namespace, name))
        if o is None:
            raise not_found(info, name)
        return codec.pack(o)


class Agent(node_pb2_grpc.NodeAgentServicer):
    def __init__(self):
        self.requests = []
        self.cancelled = asyncio.Event()

    async def Logs(self, request, context):
        self.requests.append(request)
        if request.previous:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f'previous terminated container "{request.container}" in pod "{request.pod}" not found')
        lines = [b"one\n", b"two\n", b"three\n"]
        if request.HasField("tail_lines"):
            lines = lines[len(lines) - request.tail_lines:]
        for ln in lines:
            yield node_pb2.LogChunk(data=ln, stream="stdout")
        if request.follow:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise

    async def Exec(self, request_iterator, context):
        it = request_iterator.__aiter__()
        first = await it.__anext__()
        self.requests.append(first)
        data = first.stdin_data
        if first.stdin and not first.stdin_eof:
            async for req in it:
                data += req.stdin_data
                yield node_pb2.ExecResponse(stdout=req.stdin_data)   # echo as it comes
                if req.stdin_eof:
                    break
        cmd = list(first.command)
        if cmd[0] == "exit":
            yield node_pb2.ExecResponse(stdout=b"out\n", stderr=b"err\n")
            yield node_pb2.ExecResponse(exit_code=int(cmd[1]))
        elif cmd[0] == "wait":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        else:
            yield node_pb2.ExecResponse(exit_code=0)


def _server_tls(session, cn: str) -> grpc.ServerCredentials:
    """TLS for a loopback server, requiring client certificates of the session CA."""
    from machinery import pki
    cert, key = session.store.ca.issue(cn, server=True, ips=["127.0.0.1"])
    return grpc.ssl_server_credentials([(pki.key_pem(key), pki.cert_pem(cert))],
                                       root_certificates=session.store.ca_pem(), require_client_auth=True)


@pytest.fixture
async def proxied():
    """(apiserver target, agent, store): NodeProxy on one loopback port, the agent on another."""
    agent_server = grpc.aio.server()
    agent = Agent()
    node_pb2_grpc.add_NodeAgentServicer_to_server(agent, agent_server)
    session = harness_pki.session()
    kubelet_creds = kubeconfig.Credentials(session.store.ca_pem(),
                                           session.store.path("apiserver-kubelet-client.crt").read_bytes(),
                                           session.store.path("apiserver-kubelet-client.key").read_bytes())
    agent_port = agent_server.add_secure_port("127.0.0.1:0", _server_tls(session, "system:node:n1"))
    await agent_server.start()
    store = Store(node("n1", endpoint=f"127.0.0.1:{agent_port}"), node("n2", ip="127.0.0.1"),
                  node("dead", endpoint=f"127.0.0.1:{free_port()}"),
                  pod("p"), pod("two", containers=("a", "b")), pod("pending", node=""), pod("lost", node="dead"))
    proxy = store.proxy = NodeProxy(store, kubelet_creds, connect_timeout=2)
    api_server = grpc.aio.server()
    node_pb2_grpc.add_NodeAgentServicer_to_server(proxy, api_server)
    api_port = api_server.add_secure_port("127.0.0.1:0", _server_tls(session, "kube-apiserver"))
    await api_server.start()
    try:
        yield f"127.0.0.1:{api_port}", agent, store
    finally:
        await api_server.stop(0)
        await proxy.aclose()
        await agent_server.stop(0)


async def collect_logs(target, pod_name, **kw) -> bytes:
    return b"".join([c.data async for c in nodeclient.logs(target, "default", pod_name, **kw)])


async def test_proxy_forwards_logs(proxied):
    target, agent, _ = proxied
    assert await collect_logs(target, "p") == b"one\ntwo\nthree\n"
    assert agent.requests[-1].container == "c"            # filled in for a one-container pod
    assert await collect_logs(target, "two", container="b", tail=1, timestamps=True) == b"three\n"
    req = agent.requests[-1]
    assert (req.namespace, req.pod, req.container, req.tail_lines, req.timestamps) == ("default", "two", "b", 1, True)


@pytest.mark.parametrize("pod_name, kw, cls, message", [
    ("nope", {}, errors.NotFound, 'pods "nope" not found'),
    ("pending", {}, errors.BadRequest, "pod pending does not have a host assigned"),
    ("p", {"container": "zz"}, errors.BadRequest, "container zz is not valid for pod p"),
    ("two", {}, errors.BadRequest, "a container name must be specified for pod two, choose one of: [a b]"),
    ("p", {"previous": True}, errors.BadRequest, 'previous terminated container "c" in pod "p" not found'),
])
async def test_proxy_errors(proxied, pod_name, kw, cls, message):
    target, _, _ = proxied
    with pytest.raises(cls) as exc:
        await collect_logs(target, pod_name, **kw)
    assert exc.value.message == message


async def test_proxy_unreachable_agent_names_the_node(proxied):
    target, _, _ = proxied
    with pytest.raises(errors.Unavailable) as exc:
        await collect_logs(target, "lost")
    assert 'node "dead"' in exc.value.message and "127.0.0.1:" in exc.value.message
    with pytest.raises(errors.Unavailable):
        [r async for r in nodeclient.exec_(target, "default", "lost", "", ["true"])]


async def test_proxy_internal_ip_fallback(proxied):
    target, _, store = proxied
    store.objs[("Pod", "default", "q")] = pod("q", node="n2")   # n2: no annotation, InternalIP 127.0.0.1
    with pytest.raises(errors.Unavailable) as exc:               # (nothing listens on 127.0.0.1:10250 here)
        await collect_logs(target, "q")
    assert "127.0.0.1:10250" in exc.value.message


def requests_total(verb: str, code: str) -> float:
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value("kctl_apiserver_requests_total",
                                     {"kind": "Pod", "verb": verb, "code": code}) or 0.0


async def test_proxy_counts_calls(proxied):
    target, _, _ = proxied
    before = {k: requests_total(*k) for k in (("logs", "OK"), ("logs", "NOT_FOUND"), ("exec", "OK"))}
    await collect_logs(target, "p")
    with pytest.raises(errors.NotFound):
        await collect_logs(target, "nope")
    [r async for r in nodeclient.exec_(target, "default", "p", "", ["exit", "0"])]
    assert {k: requests_total(*k) - v for k, v in before.items()} == {
        ("logs", "OK"): 1, ("logs", "NOT_FOUND"): 1, ("exec", "OK"): 1}


async def test_proxy_closes_idle_channels(proxied):
    target, agent, store = proxied
    proxy = store.proxy
    n1 = store.objs[("Node", "", "n1")].metadata.annotations["kctl.io/agent-endpoint"]
    assert await collect_logs(target, "p") == b"one\ntwo\nthree\n"
    assert list(proxy._channels) == [n1]                        # cached for the next call
    proxy.idle_close = 0.0
    stream = nodeclient.logs(target, "default", "p", follow=True)
    await stream.__anext__()
    with pytest.raises(errors.Unavailable):                     # another lookup: n1 is busy, kept
        await collect_logs(target, "lost")
    assert list(proxy._channels) == [n1]
    await stream.aclose()
    await asyncio.wait_for(agent.cancelled.wait(), 5)
    await asyncio.sleep(0.05)
    with pytest.raises(errors.Unavailable):                     # now idle: closed
        await collect_logs(target, "lost")
    assert proxy._channels == {}


async def test_proxy_exec_stdin_streams_both_ways(proxied):
    target, agent, _ = proxied
    fed = asyncio.Queue()

    async def stdin():
        while (data := await fed.get()) is not None:
            yield data
    stream = nodeclient.exec_(target, "default", "two", "a", ["cat"], stdin())
    await fed.put(b"hello ")
    first = await asyncio.wait_for(stream.__anext__(), 5)     # echoed before stdin ended
    assert first.stdout == b"hello "
    await fed.put(b"world\n")
    await fed.put(None)
    rest = [r async for r in stream]
    assert b"".join(r.stdout for r in rest) == b"world\n" and rest[-1].exit_code == 0
    req = agent.requests[-1]
    assert (req.pod, req.container, list(req.command), req.stdin) == ("two", "a", ["cat"], True)


async def test_proxy_exec_exit_code_and_streams(proxied):
    target, _, _ = proxied
    resp = [r async for r in nodeclient.exec_(target, "default", "p", "", ["exit", "3"])]
    assert b"".join(r.stdout for r in resp) == b"out\n" and b"".join(r.stderr for r in resp) == b"err\n"
    assert resp[-1].HasField("exit_code") and resp[-1].exit_code == 3
    with pytest.raises(errors.BadRequest, match="at least one command"):
        [r async for r in nodeclient.exec_(target, "default", "p", "", [])]


@pytest.mark.parametrize("verb", ["logs", "exec"])
async def test_client_cancel_reaches_the_agent(proxied, verb):
    target, agent, _ = proxied
    if verb == "logs":
        stream = nodeclient.logs(target, "default", "p", follow=True)
        for want in (b"one\n", b"two\n", b"three\n"):
            assert (await asyncio.wait_for(stream.__anext__(), 5)).data == want
        task = asyncio.create_task(stream.__anext__())       # the agent now waits for more
        await asyncio.sleep(0.2)
    else:
        async def consume():
            async for _ in nodeclient.exec_(target, "default", "p", "", ["wait"]):
                pass
        task = asyncio.create_task(consume())
        for _ in range(50):
            if agent.requests and list(agent.requests[-1].command) == ["wait"]:
                break
            await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(agent.cancelled.wait(), 5)


# ------------------------------------------------------------------- CLI

# The commands under test in a group with kctl's global options (main.py's
# registry may still point `logs`/`exec` elsewhere; this does not depend on it).
group = KctlGroup(name="kctl", params=cli.params, callback=cli.callback,
                  commands={"logs": logs_cmd, "exec": exec_cmd})


class FakeNode:
    """Stands in for machinery.nodeclient: records calls, plays scripted streams."""

    def __init__(self):
        self.calls = []
        self.exec_script = [node_pb2.ExecResponse(stdout=b"out\n"), node_pb2.ExecResponse(stderr=b"err\n"),
                            node_pb2.ExecResponse(exit_code=0)]
        self.error = None

    async def logs(self, target, namespace, pod, container="", follow=False, previous=False, tail=None,
                   timestamps=False, credentials=None, metadata=()):
        self.calls.append(("logs", namespace, pod, container, follow, previous, tail, timestamps))
        if self.error:
            raise self.error
        for ln in (b"a\n", b"b\n"):
            yield node_pb2.LogChunk(data=ln)

    async def exec_(self, target, namespace, pod, container, command, stdin=None, tty=False, size=None,
                    resizes=None, credentials=None, metadata=()):
        data = b"".join([d async for d in stdin]) if stdin is not None else None
        self.calls.append(("exec", namespace, pod, container, list(command), data))
        for r in self.exec_script:
            yield r


@pytest.fixture
def fake(monkeypatch):
    api = FakeClient()
    monkeypatch.setattr(common, "CLIENT_FACTORY", lambda server: api)
    fn = FakeNode()
    monkeypatch.setattr(nodeclient, "logs", fn.logs)
    monkeypatch.setattr(nodeclient, "exec_", fn.exec_)
    for o in (pod("p"), pod("two", containers=("a", "b")),
              pod("three", containers=("x", "y", "z"), annotations={"kubectl.kubernetes.io/default-container": "y"})):
        asyncio.run(api.create(o))
    return api, fn


def kctl(*args, input=None):
    r = CliRunner().invoke(group, ["--server", "fake:1", *args], input=input, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_logs_arguments(fake):
    _, fn = fake
    assert kctl("logs", "p") == (0, "a\nb\n", "")
    assert fn.calls[-1] == ("logs", "default", "p", "c", False, False, None, False)
    assert kctl("logs", "pod/p", "-f", "-p", "--tail", "5", "--timestamps", "-c", "c")[0] == 0
    assert fn.calls[-1] == ("logs", "default", "p", "c", True, True, 5, True)
    assert kctl("logs", "p", "--tail=-1")[0] == 0 and fn.calls[-1][6] is None
    assert kctl("logs", "p", "--tail", "0")[0] == 0 and fn.calls[-1][6] == 0
    assert kctl("logs", "two", "b")[0] == 0 and fn.calls[-1][3] == "b"          # kubectl logs POD CONTAINER
    code, _, err = kctl("logs", "two", "b", "-c", "a")
    assert code == 2 and "only one of -c or an inline [CONTAINER] arg is allowed" in err


def test_logs_defaults_the_container_like_kubectl(fake):
    _, fn = fake
    code, out, err = kctl("logs", "two")
    assert (code, out, err) == (0, "a\nb\n", 'Defaulted container "a" out of: a, b\n')
    assert fn.calls[-1][3] == "a"
    assert kctl("logs", "three")[2] == 'Defaulted container "y" out of: x, y, z\n'   # the annotation wins
    assert kctl("logs", "two", "-c", "b")[2] == ""


def test_logs_errors(fake):
    api, fn = fake
    code, out, err = kctl("logs", "nope")
    assert (code, out, err) == (1, "", 'Error from server (NotFound): pods "nope" not found\n')
    fn.error = errors.BadRequest("container zz is not valid for pod p")
    assert kctl("logs", "p", "-c", "zz") == (1, "", "Error from server (BadRequest): container zz is not valid for pod p\n")
    code, _, err = kctl("logs", "-n", "other", "p")
    assert code == 1 and 'pods "p" not found' in err


def test_logs_of_a_deployment_picks_a_pod(fake):
    api, fn = fake
    asyncio.run(api.create(codec.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "w", "image": "i"}]}}}})))
    code, _, err = kctl("logs", "deploy/web")
    assert code == 1 and "no pods found for deployment/web" in err
    unbound = pod("web-1", node="", labels={"app": "web"})
    bound = pod("web-2", labels={"app": "web"})
    bound.status.phase = "Running"
    for o in (unbound, bound):
        asyncio.run(api.create(o))
    code, out, err = kctl("logs", "deployment/web")
    assert (code, out, err) == (0, "a\nb\n", "Found 2 pods, using pod/web-2\n")
    assert fn.calls[-1][2] == "web-2"


def test_exec_streams_and_exit_code(fake):
    _, fn = fake
    assert kctl("exec", "p", "--", "sh", "-c", "echo") == (0, "out\n", "err\n")
    assert fn.calls[-1] == ("exec", "default", "p", "c", ["sh", "-c", "echo"], None)
    fn.exec_script = [node_pb2.ExecResponse(stderr=b"boom\n"), node_pb2.ExecResponse(exit_code=3)]
    code, out, err = kctl("exec", "two", "-c", "b", "--", "false")
    assert (code, out, err) == (3, "", "boom\ncommand terminated with exit code 3\n")
    assert fn.calls[-1][3] == "b"
    fn.exec_script = [node_pb2.ExecResponse(stdout=b"x")]
    code, _, err = kctl("exec", "p", "--", "true")
    assert code == 1 and "without an exit code" in err


def test_exec_stdin_and_arguments(fake):
    _, fn = fake
    assert kctl("exec", "-i", "p", "--", "cat", input="hello\nworld\n")[0] == 0
    assert fn.calls[-1][4:] == (["cat"], b"hello\nworld\n")
    code, _, err = kctl("exec", "p")
    assert code == 1 and err == "error: you must specify at least one command for the container\n"
    code, _, err = kctl("exec", "two", "--", "ls")
    assert code == 0 and err.startswith('Defaulted container "a" out of: a, b\n')
    assert kctl("exec", "p", "-n", "default", "--", "ls", "-n", "x")[0] == 0     # -n after -- is the command's
    assert fn.calls[-1][4] == ["ls", "-n", "x"]
    code, _, err = kctl("exec", "-t", "p", "--", "ls")
    assert code == 0 and "Unable to use a TTY" in err
    assert kctl("exec", "nope", "--", "ls") == (1, "", 'Error from server (NotFound): pods "nope" not found\n')
