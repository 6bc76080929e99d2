"""The node agent's logs/exec server stays bounded whatever its clients do:
a client that stops reading an exec's output stalls the command (the
agent does not buffer it), concurrent calls are capped, and an oversized
request message is refused by gRPC."""
from __future__ import annotations

import asyncio
import types

import grpc
import pytest

from machinery.pb import node_pb2, node_pb2_grpc
from nodeagent import server as srv


class Runtime:
    """start_exec runs a real local command (its own process group, PID in the pid file)."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.procs = []
        self.gate: asyncio.Event | None = None

    async def start_exec(self, cid, command, stdin=False, tty=None):
        if self.gate is not None:
            await self.gate.wait()
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        pidfile = self.tmp / f"exec-{proc.pid}.pid"
        pidfile.write_text(str(proc.pid))
        self.procs.append(proc)
        return proc, pidfile

    def read_log(self, cid, tail=None):
        return []


def agent(tmp_path):
    pod = types.SimpleNamespace(metadata=types.SimpleNamespace(namespace="default", name="p"),
                                spec=types.SimpleNamespace(containers=[types.SimpleNamespace(name="c")]))
    worker = types.SimpleNamespace(pod=pod, records={"c": types.SimpleNamespace(cid="cid1", prev_cid="")})
    return types.SimpleNamespace(node_name="n1", workers={"u": worker}, runtime=Runtime(tmp_path))


@pytest.fixture
async def served(tmp_path):
    a = agent(tmp_path)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", srv.MAX_REQUEST_BYTES)])
    service = srv.NodeAgentService(a)
    node_pb2_grpc.add_NodeAgentServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    try:
        yield a, service, node_pb2_grpc.NodeAgentStub(channel)
    finally:
        await channel.close()
        await server.stop(grace=0)
        for p in a.runtime.procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


def exec_request(command, **kw):
    return node_pb2.ExecRequest(namespace="default", pod="p", container="c", command=command, **kw)


async def test_a_client_that_stops_reading_stalls_the_command_not_the_agent(served):
    a, _, stub = served
    total = 200 * 1024 * 1024                   # far more than the queue and the pipes hold
    call = stub.Exec(iter([exec_request(["head", "-c", str(total), "/dev/zero"])]))
    first = await call.read()
    assert first.stdout
    await asyncio.sleep(1.0)                    # the client reads nothing more
    proc = a.runtime.procs[0]
    assert proc.returncode is None, "the agent read the whole output into memory"
    call.cancel()


async def test_exec_sessions_are_capped(served, monkeypatch):
    a, service, stub = served
    monkeypatch.setattr(service.exec_slots, "limit", 2)
    a.runtime.gate = asyncio.Event()            # sessions wait inside start_exec
    calls = [stub.Exec(iter([exec_request(["true"])])) for _ in range(2)]
    for _ in range(100):
        if service.exec_slots.current == 2:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in stub.Exec(iter([exec_request(["true"])])):
            pass
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert exc.value.details() == "too many concurrent exec sessions on node n1 (limit 2)"
    a.runtime.gate.set()
    for c in calls:
        async for _ in c:
            pass
    assert service.exec_slots.current == 0


async def test_an_oversized_stdin_message_is_refused(served):
    _, _, stub = served
    big = exec_request(["cat"], stdin=True, stdin_data=b"x" * (srv.MAX_REQUEST_BYTES + 1))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in stub.Exec(iter([big])):
            pass
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
