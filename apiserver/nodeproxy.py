"""The apiserver's proxy to node agents: logs, exec, attach and port-forward (kctl.v1.NodeAgent).

The apiserver serves the node agent's own service (proto/node.proto) on its
gRPC port, so kctl only ever talks to the apiserver (as kubectl talks to
the kube-apiserver, which dials the kubelet); the HTTP API's streaming
routes (apiserver/http/streams.py, portforward.py) call the same methods.
For each call:

1. the pod is read from storage (NotFound `pods "x" not found`), must be
   bound (BadRequest `pod x does not have a host assigned`) and the
   container must be one of its containers (BadRequest `container c is not
   valid for pod x`; an empty name is filled in for one-container pods, and
   refused with kubectl's "choose one of" message otherwise);
2. the agent's address is the Node's `kctl.io/agent-endpoint` annotation,
   else its InternalIP:10250;
3. the call is forwarded on a channel cached per endpoint; a channel with
   no call for IDLE_CLOSE seconds is closed on the next lookup (nodes come
   and go), and aclose() closes them all.

Two layers: `logs`, `stream` (exec and attach) and `port_forward` are
transport-neutral async iterators that raise ApiErrors (`resolve` and
`resolve_pod` let the HTTP layer check a request before it upgrades the
connection); the gRPC handlers (Logs, Exec, Attach, PortForward) wrap them
and turn an ApiError into the call's status (fail_rpc). Every call is
counted in kctl_apiserver_requests{kind="Pod", verb, code}.

Concurrency: each proxied call is one handler task (grpc.aio or aiohttp).
Logs is a plain loop: read a chunk from the agent, yield it to the client
(gRPC flow control slows the agent down when the client reads slowly).
Exec, attach and port-forward run two flows at once: a pump task copies
the client's requests (stdin, its end, resizes; or a connection's bytes)
to the agent call, while the handler yields the agent's responses. When
the client goes away the handler is cancelled, and its `finally` cancels
the pump and the agent call (the agent then kills the exec'd process, or
closes the pod connection); when the agent ends the call (exit code sent)
the handler returns, cancelling the pump.

Agent failures are turned into the project's errors: the agent's NOT_FOUND
stays NotFound, INVALID_ARGUMENT and FAILED_PRECONDITION (`container ...
is waiting to start`, no previous instance) are BadRequest, and an agent
that cannot be reached is Unavailable naming the node. A channel that
failed is dropped so the next call dials afresh.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

import grpc

from apiserver import metrics
from apiserver.auth import current
from apiserver.auth.authz import Attributes
from apiserver.server import fail_rpc
from machinery import codec, errors, kinds, nodeclient
from machinery.kubeconfig import Credentials
from machinery.pb import node_pb2, node_pb2_grpc

log = logging.getLogger(__name__)

AGENT_ENDPOINT_ANNOTATION = "kctl.io/agent-endpoint"
AGENT_PORT = 10250
CONNECT_TIMEOUT = 5.0
IDLE_CLOSE = 300.0
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0),
                   ("grpc.keepalive_time_ms", 20_000),
                   ("grpc.keepalive_timeout_ms", 10_000)]

POD = kinds.BY_KIND["Pod"]
NODE = kinds.BY_KIND["Node"]


def _short(details: str | None) -> str:
    if not details:
        return "unavailable"
    for marker in ("Connection refused", "connection refused", "No route to host", "Network is unreachable",
                   "Connection reset", "Deadline Exceeded", "Socket closed"):
        if marker in details:
            return marker.lower()
    return details.splitlines()[0][:200]


def agent_endpoint(node) -> str:
    """The Node's agent address: its annotation, else InternalIP:10250 ("" when neither)."""
    ep = node.metadata.annotations.get(AGENT_ENDPOINT_ANNOTATION, "")
    if ep:
        return ep
    ip = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
    return f"{ip}:{AGENT_PORT}" if ip else ""


def agent_channel(endpoint: str, credentials: Credentials) -> grpc.aio.Channel:
    """A TLS channel to a node agent: the cluster CA verifies the agent's serving
    certificate (SAN: its address), the apiserver's client certificate is the
    only one the agent accepts."""
    return grpc.aio.secure_channel(endpoint, credentials.grpc(), options=CHANNEL_OPTIONS)


def pick_container(pod, container: str) -> str:
    """The container a request names, checked against the pod (kubectl's messages)."""
    names = [c.name for c in pod.spec.containers]
    others = [c.name for c in getattr(pod.spec, "init_containers", [])]
    if not container:
        if len(names) == 1:
            return names[0]
        raise errors.BadRequest(f"a container name must be specified for pod {pod.metadata.name}, "
                                f"choose one of: [{' '.join(names)}]"
                                + (f" or one of the init containers: [{' '.join(others)}]" if others else ""),
                                kind="pods", name=pod.metadata.name)
    if container not in names and container not in others:
        raise errors.BadRequest(f"container {container} is not valid for pod {pod.metadata.name}",
                                kind="pods", name=pod.metadata.name)
    return container


class NodeProxy(node_pb2_grpc.NodeAgentServicer):
    """kctl.v1.NodeAgent on the apiserver, forwarding to the pod's node agent.

    `store` needs only `async get(info, namespace, name) -> Any` (crud.Store)."""

    def __init__(self, store, credentials: Credentials, *, connect_timeout: float = CONNECT_TIMEOUT,
                 idle_close: float = IDLE_CLOSE):
        self.store = store
        self.credentials = credentials      # the cluster CA and apiserver-kubelet-client
        self.connect_timeout = connect_timeout
        self.idle_close = idle_close
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[str, int] = {}          # endpoint -> calls in flight
        self._last_used: dict[str, float] = {}    # endpoint -> loop time its last call ended
        # gRPC exec/attach/port-forward are authorized here, on their first message (the
        # Gate only sees a stream): an async callable(Attributes, method), Gate.authorize_stream
        self.authorize = None

    async def aclose(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            await ch.close()

    # ----------------------------------------------------------- lookup
    async def _target(self, namespace: str, name: str, container: str) -> tuple[str, str, str]:
        """(node name, agent endpoint, container) for a request, or an ApiError."""
        pod = await self._bound_pod(namespace, name)
        container = pick_container(pod, container)
        node, ep = await self._endpoint(pod.spec.node_name)
        return node, ep, container

    async def resolve_pod(self, namespace: str, name: str) -> tuple[str, str]:
        """(node name, agent endpoint) of a bound pod; ApiErrors otherwise."""
        return await self._endpoint((await self._bound_pod(namespace, name)).spec.node_name)

    async def _bound_pod(self, namespace: str, name: str):
        if not name:
            raise errors.BadRequest("a pod name is required")
        pod = codec.unpack(await self.store.get(POD, namespace or "default", name))
        if not pod.spec.node_name:
            raise errors.BadRequest(f"pod {name} does not have a host assigned", kind="pods", name=name)
        return pod

    async def resolve(self, namespace: str, name: str, container: str) -> str:
        """The container a request names (filled in for one-container pods), after checking that
        the pod exists and is bound and its node has an agent address; ApiErrors otherwise."""
        return (await self._target(namespace, name, container))[2]

    async def _endpoint(self, node_name: str) -> tuple[str, str]:
        node = codec.unpack(await self.store.get(NODE, "", node_name))
        ep = agent_endpoint(node)
        if not ep:
            raise errors.Unavailable(f'node "{node.metadata.name}" has no agent endpoint '
                                     f"(no {AGENT_ENDPOINT_ANNOTATION} annotation and no InternalIP)")
        return node.metadata.name, ep

    async def _stub(self, node: str, endpoint: str) -> node_pb2_grpc.NodeAgentStub:
        """A stub on a connected channel to the agent (fails fast on refusal,
        after connect_timeout on silence)."""
        loop = asyncio.get_running_loop()
        await self._close_idle(loop.time())
        ch = self._channels.get(endpoint)
        if ch is None:
            ch = self._channels[endpoint] = agent_channel(endpoint, self.credentials)
        self._last_used[endpoint] = loop.time()   # not idle while this call connects
        deadline = loop.time() + self.connect_timeout
        state = ch.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            left = deadline - loop.time()
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN) or left <= 0:
                why = "connection failed" if left > 0 else f"no answer in {self.connect_timeout:g}s"
                await self._drop(endpoint, ch)
                raise errors.Unavailable(f'error dialing backend: node "{node}": agent at {endpoint}: {why}')
            try:
                await asyncio.wait_for(ch.wait_for_state_change(state), left)
            except TimeoutError:
                pass
            state = ch.get_state(try_to_connect=True)
        return node_pb2_grpc.NodeAgentStub(ch)

    async def _close_idle(self, now: float) -> None:
        for ep, ch in list(self._channels.items()):
            if not self._calls.get(ep) and now - self._last_used.get(ep, now) > self.idle_close:
                await self._drop(ep, ch)

    def _begin(self, endpoint: str) -> None:
        self._calls[endpoint] = self._calls.get(endpoint, 0) + 1

    def _end(self, endpoint: str) -> None:
        self._calls[endpoint] -= 1
        if not self._calls[endpoint]:
            del self._calls[endpoint]
        self._last_used[endpoint] = asyncio.get_running_loop().time()

    async def _drop(self, endpoint: str, ch: grpc.aio.Channel) -> None:
        if self._channels.get(endpoint) is ch:
            del self._channels[endpoint]
            self._last_used.pop(endpoint, None)
        await ch.close()

    async def _agent_error(self, exc: grpc.RpcError, node: str, endpoint: str) -> errors.ApiError:
        code = exc.code()
        details = exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            ch = self._channels.get(endpoint)
            if ch is not None:
                await self._drop(endpoint, ch)
            return errors.Unavailable(f'error talking to node "{node}": agent at {endpoint}: {_short(details)}')
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return errors.BadRequest(details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return errors.Timeout(f'node "{node}": agent at {endpoint} did not answer in time')
        err = errors.from_rpc_error(exc)
        if type(err) is errors.ApiError:
            err = errors.ApiError(f'node "{node}": {details or code.name}')
        return err

    async def _forward(self, call, node: str, endpoint: str) -> AsyncIterator:
        """Yield the agent call's responses; its failure is raised as an ApiError, and
        leaving (done, failed or cancelled) cancels it."""
        self._begin(endpoint)
        try:
            async for resp in call:
                yield resp
        except grpc.aio.AioRpcError as exc:
            raise await self._agent_error(exc, node, endpoint) from None
        finally:
            self._end(endpoint)
            call.cancel()

    # ------------------------------------------- the calls, for any transport
    # Each raises ApiErrors (before or while streaming) and is counted in
    # kctl_apiserver_requests{kind="Pod", verb="logs"|"exec"|"attach"|"portforward", code}:
    # OK, the error's gRPC code, or CANCELLED when the client left first.

    @contextlib.asynccontextmanager
    async def _counted(self, verb: str):
        outcome = "CANCELLED"
        try:
            yield
            outcome = "OK"
        except errors.ApiError as exc:
            outcome = exc.grpc_code.name
            raise
        except Exception:
            outcome = "INTERNAL"
            raise
        finally:
            metrics.REQUESTS.labels("Pod", verb, outcome).inc()

    async def logs(self, request: node_pb2.LogsRequest) -> AsyncIterator[node_pb2.LogChunk]:
        """The container's log from its node (the request's container checked and filled in)."""
        async with self._counted("logs"):
            node, ep, container = await self._target(request.namespace, request.pod, request.container)
            stub = await self._stub(node, ep)
            fwd = node_pb2.LogsRequest()
            fwd.CopyFrom(request)
            fwd.namespace = request.namespace or "default"
            fwd.container = container
            async with contextlib.aclosing(self._forward(stub.Logs(fwd), node, ep)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def stream(self, verb: str, first: node_pb2.ExecRequest,
                     rest: AsyncIterator[node_pb2.ExecRequest] | None) -> AsyncIterator[node_pb2.ExecResponse]:
        """Exec (verb "exec") or Attach ("attach") on the pod's node: the first request, then
        `rest` (stdin, its end, resizes) pumped to the agent while its responses are yielded."""
        async with self._counted(verb):
            if verb == "exec" and not first.command:
                raise errors.BadRequest("you must specify at least one command for the container")
            node, ep, container = await self._target(first.namespace, first.pod, first.container)
            stub = await self._stub(node, ep)
            fwd = node_pb2.ExecRequest()
            fwd.CopyFrom(first)
            fwd.namespace = first.namespace or "default"
            fwd.container = container
            call = stub.Exec() if verb == "exec" else stub.Attach()
            async with self._pumping(call, fwd, rest, f"{verb}-stdin-{fwd.namespace}/{fwd.pod}"):
                async with contextlib.aclosing(self._forward(call, node, ep)) as responses:
                    async for resp in responses:
                        yield resp

    async def port_forward(self, namespace: str, pod: str, port: int,
                           rest: AsyncIterator[node_pb2.PortForwardRequest] | None
                           ) -> AsyncIterator[node_pb2.PortForwardResponse]:
        """One connection to PORT of the pod, made by its node's agent; `rest` is the client's bytes."""
        async with self._counted("portforward"):
            node, ep = await self.resolve_pod(namespace, pod)
            stub = await self._stub(node, ep)
            call = stub.PortForward()
            first = node_pb2.PortForwardRequest(namespace=namespace or "default", pod=pod, port=port)
            async with self._pumping(call, first, rest, f"portforward-{namespace}/{pod}:{port}"):
                async with contextlib.aclosing(self._forward(call, node, ep)) as responses:
                    async for resp in responses:
                        yield resp

    @contextlib.asynccontextmanager
    async def _pumping(self, call, first, rest, name: str):
        """A task writing first, then rest, to the agent call, for the length of the block."""
        async def pump() -> None:
            try:
                await call.write(first)
                if rest is not None:
                    async for req in rest:
                        await call.write(req)
                await call.done_writing()
            except (asyncio.InvalidStateError, grpc.aio.AioRpcError, grpc.aio.UsageError):
                pass   # the agent call already ended; its status reaches the reader
        task = asyncio.create_task(pump(), name=name)
        try:
            yield
        finally:
            task.cancel()

    # ------------------------------------------------------ gRPC handlers
    async def _serve(self, responses, context, what: str):
        try:
            async with contextlib.aclosing(responses) as it:
                async for resp in it:
                    yield resp
        except Exception as exc:  # noqa: BLE001 - fail_rpc turns it into the call's status
            await fail_rpc(context, exc, what)

    async def Logs(self, request, context):
        async for chunk in self._serve(self.logs(request), context, f"logs {request.namespace}/{request.pod}"):
            yield chunk

    async def _admit(self, context, sub: str, first) -> None:
        """403 unless the caller may `create pods/<sub>` (Kubernetes' verb for exec, attach, portforward)."""
        if self.authorize is None:
            return
        try:
            await self.authorize(Attributes(current(), "create", namespace=first.namespace or "default",
                                            resource="pods", subresource=sub, name=first.pod),
                                 f"/kctl.v1.NodeAgent/{sub}")
        except errors.ApiError as exc:
            await fail_rpc(context, exc, f"{sub} {first.namespace}/{first.pod}")

    async def _stream_rpc(self, verb: str, request_iterator, context):
        first, it = await nodeclient.first_request(request_iterator)
        if first is None:
            return
        await self._admit(context, verb, first)
        async for resp in self._serve(self.stream(verb, first, it), context,
                                      f"{verb} {first.namespace}/{first.pod}"):
            yield resp

    async def Exec(self, request_iterator, context):
        async for resp in self._stream_rpc("exec", request_iterator, context):
            yield resp

    async def Attach(self, request_iterator, context):
        async for resp in self._stream_rpc("attach", request_iterator, context):
            yield resp

    async def PortForward(self, request_iterator, context):
        first, it = await nodeclient.first_request(request_iterator)
        if first is None:
            return
        await self._admit(context, "portforward", first)
        async for resp in self._serve(self.port_forward(first.namespace, first.pod, first.port, it), context,
                                      f"portforward {first.namespace}/{first.pod}"):
            yield resp
