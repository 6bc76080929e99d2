"""`kctl logs` / `kctl exec` against a fake NodeAgent gRPC service on
loopback (the API side is a FakeClient): the pod -> node -> endpoint lookup,
streaming, stdin, exit codes and agent errors."""
from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
import pytest
from click.testing import CliRunner

from kubectlish import common
from kubectlish.main import cli
from machinery import codec
from machinery.fakeclient import FakeClient
from machinery.pb import node_pb2, node_pb2_grpc


class Agent(node_pb2_grpc.NodeAgentServicer):
    def __init__(self):
        self.requests = []

    def Logs(self, request, context):
        self.requests.append(request)
        if request.container == "nope":
            context.abort(grpc.StatusCode.NOT_FOUND, 'container "nope" not found in pod "p"')
        lines = [b"one\n", b"two\n", b"three\n"]
        if request.HasField("tail_lines"):
            lines = lines[-request.tail_lines:]
        for ln in lines:
            yield node_pb2.LogChunk(data=ln, stream="stdout")

    def Exec(self, request_iterator, context):
        first = next(request_iterator)
        self.requests.append(first)
        data = first.stdin_data
        if first.stdin:
            for req in request_iterator:
                data += req.stdin_data
                if req.stdin_eof:
                    break
        cmd = list(first.command)
        if cmd[0] == "cat":
            yield node_pb2.ExecResponse(stdout=data)
            yield node_pb2.ExecResponse(exit_code=0)
        else:
            yield node_pb2.ExecResponse(stdout=b"out\n", stderr=b"err\n")
            yield node_pb2.ExecResponse(exit_code=int(cmd[1]) if cmd[0] == "exit" else 0)


@pytest.fixture
def agent():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    a = Agent()
    node_pb2_grpc.add_NodeAgentServicer_to_server(a, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    a.endpoint = f"127.0.0.1:{port}"
    yield a
    server.stop(0)


@pytest.fixture
def fake(monkeypatch, agent):
    f = FakeClient()
    monkeypatch.setattr(common, "CLIENT_FACTORY", lambda server: f)
    asyncio.run(f.create(codec.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "n1", "annotations": {"kctl.io/agent-endpoint": agent.endpoint}}})))
    asyncio.run(f.create(codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "p", "namespace": "default"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})))
    return f


def kctl(*args, input=None):
    r = CliRunner().invoke(cli, ["--server", "fake:1", *args], input=input, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_logs_stream_and_options(fake, agent):
    assert kctl("logs", "p") == (0, "one\ntwo\nthree\n", "")
    assert kctl("logs", "pod/p", "--tail", "1", "-c", "c", "--timestamps")[1] == "three\n"
    req = agent.requests[-1]
    assert (req.namespace, req.pod, req.container, req.tail_lines, req.timestamps) == ("default", "p", "c", 1, True)
    code, _, err = kctl("logs", "p", "-c", "nope")
    assert code == 1 and err == 'Error from server (NotFound): container "nope" not found in pod "p"\n'


def test_exec_output_exit_code_and_stdin(fake, agent):
    assert kctl("exec", "p", "--", "echo") == (0, "out\n", "err\n")
    code, out, err = kctl("exec", "p", "-c", "c", "--", "exit", "3")
    assert code == 3 and err == "err\ncommand terminated with exit code 3\n"
    assert list(agent.requests[-1].command) == ["exit", "3"] and agent.requests[-1].container == "c"
    assert kctl("exec", "-i", "p", "--", "cat", input="hello stdin\n")[1] == "hello stdin\n"
    code, _, err = kctl("exec", "p")
    assert code == 1 and "at least one command" in err


def test_unreachable_agent_is_one_line(fake):
    from tests.cluster import free_port
    n = asyncio.run(fake.get("nodes", "n1"))
    n.metadata.annotations["kctl.io/agent-endpoint"] = f"127.0.0.1:{free_port()}"
    asyncio.run(fake.update(n))
    code, _, err = kctl("logs", "p")
    assert code == 1 and err.endswith(": connection refused\n") and err.count("\n") == 1
