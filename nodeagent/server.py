"""The agent's gRPC service ``kctl.v1.NodeAgent`` (proto/node.proto): Logs and Exec.

Served on ``NODE_IP:PORT`` (the Node's ``kctl.io/agent-endpoint``
annotation); the apiserver proxies ``kctl logs`` / ``kctl exec`` here.

* ``Logs``: the pod's container is found through the agent's pod workers
  (namespace/name -> worker -> container record -> runtime id; ``previous``
  picks the previous instance).  Without ``follow`` the CRI log file is read
  once (``tail_lines`` honoured); with it, ``Runtime.follow_log`` streams until
  the container exits or the client cancels.
* ``Exec``: the first request names pod, container and command; the command
  runs under ``runc exec``, started by ``Runtime.start_exec`` (the same
  process ``Runtime.exec`` uses) with streaming pipes.  Three tasks run concurrently per call: stdin pump (later
  request messages -> the process' stdin), and one reader per output pipe
  that put chunks on one queue; the handler yields from that queue, and after
  both pipes closed, the exit code as the final message.  Cancelling the call
  (the client going away, or the apiserver's proxy cancelling its call) kills
  the exec'd command — its process group and every descendant, found from the
  PID runc wrote with ``--pid-file`` — and runc exec then exits by itself
  (``end_exec``, nodeagent/processes.py).

grpc.aio: one event loop with the agent; handlers only read the agent's
state, never change it.

Bounds (whatever a client sends or fails to read): a request message is at
most MAX_REQUEST_BYTES (1 MiB; kctl sends stdin in 64 KiB chunks); at most
MAX_EXEC_SESSIONS exec calls and MAX_LOG_STREAMS log calls run at once
(more get RESOURCE_EXHAUSTED); an exec's output waits in a queue of at
most EXEC_QUEUE chunks of 64 KiB, so a client that stops reading stops the
readers, the pipes fill and the command blocks instead of the agent's
memory growing.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from machinery import nodeclient
from machinery.pb import node_pb2, node_pb2_grpc
from nodeagent.errors import ContainerNotFound, ContainerNotRunning, NodeAgentError
from nodeagent.processes import end_exec

log = logging.getLogger("kctl.nodeagent.server")

MAX_REQUEST_BYTES = 1024 * 1024
MAX_EXEC_SESSIONS = 32
MAX_LOG_STREAMS = 64
EXEC_QUEUE = 16


class _Slots:
    """A count of running calls of one kind, refused past `limit`."""

    def __init__(self, what: str, limit: int):
        self.what, self.limit, self.current = what, limit, 0

    async def take(self, context, node: str) -> None:
        if self.current >= self.limit:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many concurrent {self.what} on node {node} (limit {self.limit})")
        self.current += 1

    def give(self) -> None:
        self.current -= 1


class NodeAgentService(node_pb2_grpc.NodeAgentServicer):
    def __init__(self, agent) -> None:
        self.agent = agent
        self.exec_slots = _Slots("exec sessions", MAX_EXEC_SESSIONS)
        self.log_slots = _Slots("log streams", MAX_LOG_STREAMS)

    async def _container(self, context, namespace: str, pod: str, container: str, previous: bool = False) -> str:
        w = next((w for w in self.agent.workers.values()
                  if w.pod.metadata.namespace == (namespace or "default") and w.pod.metadata.name == pod), None)
        if w is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f'pod "{pod}" not found on node {self.agent.node_name}')
        names = [c.name for c in w.pod.spec.containers]
        if not container:
            if len(names) != 1:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"a container name must be specified for pod {pod}, choose one of: {names}")
            container = names[0]
        rec = w.records.get(container)
        if rec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f'container "{container}" not found in pod "{pod}"')
        cid = rec.prev_cid if previous else rec.cid
        if not cid:
            what = "previous terminated container" if previous else "container"
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f'{what} "{container}" in pod "{pod}" not found' if previous else
                                f'container "{container}" in pod "{pod}" is waiting to start')
        return cid

    async def _slotted(self, slots: _Slots, context, stream):
        """The messages of `stream`, while holding one of `slots`."""
        await slots.take(context, self.agent.node_name)
        try:
            async for msg in stream:
                yield msg
        finally:
            slots.give()
            await stream.aclose()

    async def Logs(self, request, context):
        async for chunk in self._slotted(self.log_slots, context, self._logs(request, context)):
            yield chunk

    async def _logs(self, request, context):
        cid = await self._container(context, request.namespace, request.pod, request.container, request.previous)
        rt = self.agent.runtime
        tail = request.tail_lines if request.HasField("tail_lines") else None

        def chunk(e) -> node_pb2.LogChunk:
            text = f"{e.time} {e.text}\n" if request.timestamps else e.text + "\n"
            return node_pb2.LogChunk(data=text.encode(), stream=e.stream)
        entries = rt.read_log(cid)
        if not request.follow:
            for e in (entries[-tail:] if tail else [] if tail == 0 else entries):
                yield chunk(e)
            return
        skip = len(entries) - tail if tail is not None else 0
        n = 0
        async for e in rt.follow_log(cid):
            n += 1
            if n > skip:
                yield chunk(e)

    async def Exec(self, request_iterator, context):
        async for msg in self._slotted(self.exec_slots, context, self._exec(request_iterator, context)):
            yield msg

    async def _exec(self, request_iterator, context):
        first, it = await nodeclient.first_request(request_iterator)
        if first is None:
            return
        if not first.command:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no command given")
        cid = await self._container(context, first.namespace, first.pod, first.container)
        rt = self.agent.runtime
        if not hasattr(rt, "start_exec"):       # the hollow runtime: no streams, one answer
            code, out, err = await rt.exec(cid, list(first.command))
            yield node_pb2.ExecResponse(stdout=out, stderr=err)
            yield node_pb2.ExecResponse(exit_code=code)
            return
        try:
            proc, pidfile = await rt.start_exec(cid, list(first.command), stdin=first.stdin)
        except (ContainerNotFound, ContainerNotRunning):     # exited (or removed) meanwhile
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "container is not running")
        queue: asyncio.Queue = asyncio.Queue(EXEC_QUEUE)    # bounded: a slow reader stalls the pipes

        async def pump_in() -> None:
            try:
                if first.stdin_data:
                    proc.stdin.write(first.stdin_data)
                if not first.stdin_eof:
                    async for req in it:
                        if req.stdin_data:
                            proc.stdin.write(req.stdin_data)
                            await proc.stdin.drain()
                        if req.stdin_eof:
                            break
            except (ConnectionError, BrokenPipeError):
                pass
            finally:
                proc.stdin.close()

        async def pump_out(stream, field: str) -> None:
            while data := await stream.read(65536):
                await queue.put(node_pb2.ExecResponse(**{field: data}))
            await queue.put(None)

        tasks = [asyncio.create_task(pump_out(proc.stdout, "stdout")),
                 asyncio.create_task(pump_out(proc.stderr, "stderr"))]
        if first.stdin:
            tasks.append(asyncio.create_task(pump_in()))
        try:
            open_pipes = 2
            while open_pipes:
                msg = await queue.get()
                if msg is None:
                    open_pipes -= 1
                else:
                    yield msg
            code = await proc.wait()
            yield node_pb2.ExecResponse(exit_code=code)
        finally:
            for t in tasks:
                t.cancel()
            # read what is left to EOF, discarded: a paused pipe would keep proc.wait() waiting
            drains = [asyncio.create_task(_discard(s)) for s in (proc.stdout, proc.stderr)]
            await end_exec(proc, pidfile)     # cancelled: kill the command, children included
            for t in drains:
                t.cancel()


async def _discard(stream) -> None:
    while await stream.read(65536):
        pass


async def serve(agent, listen: str) -> None:
    """Serve NodeAgent on listen (HOST:PORT) until cancelled."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
    node_pb2_grpc.add_NodeAgentServicer_to_server(NodeAgentService(agent), server)
    if server.add_insecure_port(listen) == 0:
        raise NodeAgentError(f"cannot listen on {listen}")
    await server.start()
    log.info("NodeAgent service on %s", listen)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(grace=1)
