"""The agent's gRPC service ``kctl.v1.NodeAgent`` (proto/node.proto): Logs, Exec, Attach, PortForward.

Served on ``NODE_IP:PORT`` (the Node's ``kctl.io/agent-endpoint``
annotation); the apiserver proxies ``logs``, ``exec``, ``attach`` and
``port-forward`` here (for kctl over gRPC, for kubectl over HTTP).

* ``Logs``: the pod's container is found through the agent's pod workers
  (namespace/name -> worker -> container record -> runtime id; ``previous``
  picks the previous instance).  Without ``follow`` the CRI log file is read
  once; with it, ``Runtime.follow_log`` streams until the container exits or
  the client cancels.  ``since_time``/``since_seconds`` drop older lines,
  then ``tail_lines`` keeps the last ones (Kubernetes' order).
* ``Exec``: the first request names pod, container and command; the command
  runs under ``runc exec`` (``Runtime.start_exec``), with pipes, or with
  ``tty`` on a pseudo-terminal (nodeagent/tty.py).  ``Attach`` is the same
  call shape on the container's own process (nodeagent/attach.py).  Both are
  driven by ``sessions.drive``: requests (stdin, its end, resizes) feed the
  session while its output is yielded, then the exit code.  Cancelling the
  call (the client going away, or the apiserver's proxy cancelling its call)
  kills the exec'd command — its process group and every descendant
  (``end_exec``, nodeagent/processes.py).
* ``PortForward``: one call per forwarded connection; the agent connects to
  ``localhost:PORT`` inside the pod's netns (nodeagent/portforward.py) and
  relays bytes both ways; the call ends when the pod side closes (or the
  client cancels).  A connection that cannot be made is one response
  carrying ``error`` (the client may already be writing: a call aborted
  under its writes reaches it as INTERNAL, losing the reason).

* ``Stats``: the last usage sample of nodeagent/stats.py (summary JSON and/or
  the Prometheus /metrics/resource text); ``serve`` runs its sampling loop.

Transport: TLS only, and only the apiserver may call (Kubernetes' kubelet
answers only what the apiserver proxies): the handshake requires a client
certificate of the cluster CA and `OnlyClients` refuses every call whose
certificate's CN is not the apiserver's (kube-apiserver-kubelet-client)
with UNAUTHENTICATED. The agent serves with its node certificate (SANs:
node name and IP; for a joined node its CSR-signed kubelet-serving
certificate, nodeagent/main.py), which the apiserver verifies against the
same CA.

grpc.aio: one event loop with the agent; handlers only read the agent's
state, never change it.

Bounds (whatever a client sends or fails to read): a request message is at
most MAX_REQUEST_BYTES (1 MiB; kctl sends stdin in 64 KiB chunks); at most
MAX_EXEC_SESSIONS exec and attach calls, MAX_LOG_STREAMS log calls and as
many port forwards run at once (more get RESOURCE_EXHAUSTED); an exec's
output waits in a queue of at most sessions.EXEC_QUEUE chunks of 64 KiB,
so a client that stops reading stops the readers, the pipes fill and the
command blocks instead of the agent's memory growing.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import grpc

from machinery import nodeclient
from machinery.pb import node_pb2, node_pb2_grpc
from nodeagent import attach, portforward
from nodeagent.errors import ContainerNotFound, ContainerNotRunning, NodeAgentError
from nodeagent.sessions import PipeSession, TtySession, drive
from nodeagent.tty import Terminal
from nodeagent.processes import end_exec
from nodeagent.stats import StatsCollector

log = logging.getLogger("kctl.nodeagent.server")

MAX_REQUEST_BYTES = 1024 * 1024
MAX_EXEC_SESSIONS = 32
MAX_LOG_STREAMS = 64


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


def parse_time(text: str) -> datetime:
    """An RFC3339 time with up to nanoseconds (CRI log stamps, sinceTime) as an aware datetime."""
    text = text.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)].ljust(6, '0')}{rest[digits:]}"
    return datetime.fromisoformat(text)


def since_cutoff(request: node_pb2.LogsRequest) -> datetime | None:
    if request.HasField("since_seconds"):
        return datetime.now(timezone.utc) - timedelta(seconds=request.since_seconds)
    return parse_time(request.since_time) if request.since_time else None


class NodeAgentService(node_pb2_grpc.NodeAgentServicer):
    def __init__(self, agent, stats: StatsCollector | None = None) -> None:
        self.agent = agent
        self.stats = stats or StatsCollector(agent)
        self.exec_slots = _Slots("exec sessions", MAX_EXEC_SESSIONS)
        self.log_slots = _Slots("log streams", MAX_LOG_STREAMS)
        self.forward_slots = _Slots("port forwards", MAX_LOG_STREAMS)

    def _worker(self, namespace: str, pod: str):
        return next((w for w in self.agent.workers.values()
                     if w.pod.metadata.namespace == (namespace or "default") and w.pod.metadata.name == pod), None)

    async def _container(self, context, namespace: str, pod: str, container: str, previous: bool = False) -> str:
        w = self._worker(namespace, pod)
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
        try:
            cutoff = since_cutoff(request)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid sinceTime {request.since_time!r}")

        def chunk(e) -> node_pb2.LogChunk:
            text = f"{e.time} {e.text}\n" if request.timestamps else e.text + "\n"
            return node_pb2.LogChunk(data=text.encode(), stream=e.stream)

        def recent(e) -> bool:
            try:
                return cutoff is None or parse_time(e.time) >= cutoff
            except ValueError:
                return True
        if not request.follow and tail == 0:
            return
        if not request.follow and cutoff is None:      # a tail is read from the end of the file
            for e in rt.read_log(cid, tail):
                yield chunk(e)
            return
        entries = [e for e in rt.read_log(cid) if recent(e)]
        if not request.follow:
            for e in (entries[-tail:] if tail else entries):
                yield chunk(e)
            return
        skip = len(entries) - tail if tail is not None else 0
        n = 0
        async for e in rt.follow_log(cid):
            if recent(e):
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
        term = Terminal(first.resize.width, first.resize.height) if first.tty else None
        try:
            proc, pidfile = await rt.start_exec(cid, list(first.command), stdin=first.stdin,
                                                tty=term.slave if term else None)
        except (ContainerNotFound, ContainerNotRunning):     # exited (or removed) meanwhile
            if term:
                term.close()
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "container is not running")
        if term:
            term.close_slave()
        session = TtySession(proc, pidfile, term) if term else PipeSession(proc, pidfile)
        async with contextlib.aclosing(drive(session, first, it)) as responses:
            async for resp in responses:
                yield resp

    async def Attach(self, request_iterator, context):
        async for msg in self._slotted(self.exec_slots, context, self._attach(request_iterator, context)):
            yield msg

    async def _attach(self, request_iterator, context):
        first, it = await nodeclient.first_request(request_iterator)
        if first is None:
            return
        cid = await self._container(context, first.namespace, first.pod, first.container)
        rt = self.agent.runtime
        if not hasattr(rt, "start_exec"):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "attach is not supported by this runtime")
        bundle = rt.bundle(cid)
        try:
            sock = attach.connect(bundle)
        except ContainerNotRunning as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"container is not running ({exc})")
        async with contextlib.aclosing(drive(attach.AttachSession(sock, bundle), first, it)) as responses:
            async for resp in responses:
                yield resp

    async def PortForward(self, request_iterator, context):
        async for msg in self._slotted(self.forward_slots, context, self._port_forward(request_iterator, context)):
            yield msg

    async def _port_forward(self, request_iterator, context):
        first, it = await nodeclient.first_request(request_iterator)
        if first is None:
            return
        w = self._worker(first.namespace, first.pod)
        if w is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f'pod "{first.pod}" not found on node {self.agent.node_name}')
        pids = [r.state.pid for r in w.records.values() if r.cid and r.state is not None and r.state.pid]
        if not pids:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"pod {first.pod} has no running container")
        try:
            reader, writer = await portforward.connect(f"/proc/{pids[0]}/ns/net", first.port)
        except NodeAgentError as exc:
            yield node_pb2.PortForwardResponse(error=str(exc))
            return

        async def pump_in() -> None:
            with contextlib.suppress(ConnectionError):
                writer.write(first.data)
                async for req in it:
                    if req.data:
                        writer.write(req.data)
                        await writer.drain()
                    if req.eof:
                        break
                writer.write_eof()
        pumping = asyncio.create_task(pump_in())
        try:
            while data := await reader.read(65536):
                yield node_pb2.PortForwardResponse(data=data)
        except ConnectionError:
            pass
        finally:
            pumping.cancel()
            writer.close()


    async def Stats(self, request, context):
        return node_pb2.StatsResponse(
            summary_json=self.stats.summary_json() if request.summary else b"",
            resource_metrics=self.stats.resource_metrics() if request.resource_metrics else "")


APISERVER_CLIENT = "kube-apiserver-kubelet-client"


class OnlyClients:
    """Refuse every call whose (verified) client certificate's CN is not one of `names`."""

    def __init__(self, names=(APISERVER_CLIENT,)):
        self.names = set(names)

    def check(self, context) -> bool:
        return any(cn.decode() in self.names for cn in context.auth_context().get("x509_common_name") or [])


def _guarded(service: NodeAgentService, only: OnlyClients):
    """Wrap each RPC of the service so a caller other than `only` names is refused first."""
    def wrap(fn, streaming_out: bool):
        if streaming_out:
            async def gen(request, context):
                if not only.check(context):
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "only the apiserver may call the node agent")
                async for msg in fn(request, context):
                    yield msg
            return gen

        async def unary(request, context):
            if not only.check(context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "only the apiserver may call the node agent")
            return await fn(request, context)
        return unary

    for name, streaming in (("Logs", True), ("Exec", True), ("Attach", True), ("PortForward", True),
                            ("Stats", False)):
        setattr(service, name, wrap(getattr(service, name), streaming))
    return service


@dataclass
class ServingTLS:
    """The agent's serving certificate and key, and the CA of its callers (PEM)."""
    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)], root_certificates=self.client_ca_pem,
                                           require_client_auth=True)


async def serve(agent, listen: str, tls, stats: StatsCollector | None = None,
                allowed=(APISERVER_CLIENT,)) -> None:
    """Serve NodeAgent on listen (HOST:PORT) over TLS (`tls`: a ServingTLS, or a
    machinery.certreload.ServingCertificate that follows its files) to the `allowed` client
    certificates, and sample usage (every 10 s unless a collector is given), until cancelled."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
    service = _guarded(NodeAgentService(agent, stats), OnlyClients(allowed))
    node_pb2_grpc.add_NodeAgentServicer_to_server(service, server)
    if server.add_secure_port(listen, tls.credentials()) == 0:
        raise NodeAgentError(f"cannot listen on {listen}")
    await server.start()
    log.info("NodeAgent service on %s", listen)
    sampler = asyncio.create_task(service.stats.run())
    try:
        await server.wait_for_termination()
    finally:
        sampler.cancel()
        await server.stop(grace=1)
