"""Client side of `kctl logs` / `kctl exec`: kctl.v1.NodeAgent through the apiserver.

The apiserver proxies the node agent's service (apiserver/nodeproxy.py), so
callers name only namespace, pod and container; the apiserver finds the node.
Both functions open their own channel to the apiserver for the length of the
stream (a follow or an interactive exec can last hours, and a per-call
channel keeps its lifetime obvious) and close it when the iterator ends or
is closed. Failures are machinery.errors.ApiError, translated by
errors.from_rpc_error (the apiserver sends the rich kctl.v1.Status).
Given several apiservers (a comma list, an HA control plane), a stream goes
to the first: it does not fail over (machinery/endpoints.py is the Client's).

exec_ and attach: a reader-writer call; a pump task sends the first request
and then the `stdin` chunks (and stdin_eof when they end), and with a TTY a
second one the terminal's resizes (the writes share a lock), while the
caller iterates the responses. Closing the iterator (or cancelling its
consumer) cancels the call, which cancels the command on the node.

Server side, both the apiserver's proxy and the node agent open an Exec
stream the same way: `first_request` takes the request naming pod,
container and command off the stream, leaving the stdin requests behind it.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Sequence, TypeVar

import grpc

from machinery import callmeta, endpoints, errors
from machinery.client import secure_channel
from machinery.kubeconfig import Credentials, default_credentials
from machinery.pb import node_pb2, node_pb2_grpc


T = TypeVar("T")


async def first_request(request_iterator: AsyncIterator[T]) -> tuple[T | None, AsyncIterator[T]]:
    """Server side of a stream: (its first request, or None if the client sent none; the rest)."""
    it = request_iterator.__aiter__()
    try:
        return await it.__anext__(), it
    except StopAsyncIteration:
        return None, it


def _channel(target: str, credentials: Credentials | None, metadata=()) -> tuple[str, grpc.aio.Channel]:
    """A channel to the apiserver; `metadata` goes with every call (impersonation, machinery/callmeta.py)."""
    creds = credentials if credentials is not None else default_credentials()
    first = endpoints.parse(target)[0]
    return first, secure_channel(first, creds, metadata=metadata)


async def logs(target: str, namespace: str, pod: str, container: str = "", follow: bool = False,
               previous: bool = False, tail: int | None = None,
               timestamps: bool = False, credentials: Credentials | None = None,
               metadata=()) -> AsyncIterator[node_pb2.LogChunk]:
    """The container's log as chunks of whole lines; with follow, until it exits."""
    req = node_pb2.LogsRequest(namespace=namespace or "default", pod=pod, container=container or "",
                               follow=follow, previous=previous, timestamps=timestamps)
    if tail is not None and tail >= 0:
        req.tail_lines = tail
    target, ch = _channel(target, credentials, metadata)
    call = node_pb2_grpc.NodeAgentStub(ch).Logs(req)
    try:
        async for chunk in call:
            yield chunk
    except grpc.aio.AioRpcError as exc:
        raise errors.from_rpc_error(exc, target) from exc
    finally:
        call.cancel()
        await ch.close()


def exec_(target: str, namespace: str, pod: str, container: str, command: Sequence[str],
          stdin: AsyncIterator[bytes] | None = None, tty: bool = False, size: tuple[int, int] | None = None,
          resizes: AsyncIterator[tuple[int, int]] | None = None,
          credentials: Credentials | None = None, metadata=()) -> AsyncIterator[node_pb2.ExecResponse]:
    """Run command in the container; yields output chunks, then one message with exit_code.
    With tty, on a pseudo-terminal of `size` (width, height), resized by each `resizes` item."""
    first = node_pb2.ExecRequest(namespace=namespace or "default", pod=pod, container=container or "",
                                 command=list(command), stdin=stdin is not None, stdin_eof=stdin is None, tty=tty)
    return _session("Exec", target, first, stdin, size, resizes, credentials, metadata)


def attach(target: str, namespace: str, pod: str, container: str, stdin: AsyncIterator[bytes] | None = None,
           tty: bool = False, size: tuple[int, int] | None = None,
           resizes: AsyncIterator[tuple[int, int]] | None = None,
           credentials: Credentials | None = None, metadata=()) -> AsyncIterator[node_pb2.ExecResponse]:
    """Attach to the container's own process: its output (from now on) and, for a
    `stdin: true` container, its stdin; a `tty: true` container's terminal follows `resizes`."""
    first = node_pb2.ExecRequest(namespace=namespace or "default", pod=pod, container=container or "",
                                 stdin=stdin is not None, stdin_eof=stdin is None, tty=tty)
    return _session("Attach", target, first, stdin, size, resizes, credentials, metadata)


async def _session(rpc: str, target: str, first: node_pb2.ExecRequest, stdin: AsyncIterator[bytes] | None,
                   size: tuple[int, int] | None,
                   resizes: AsyncIterator[tuple[int, int]] | None,
                   credentials: Credentials | None, metadata=()) -> AsyncIterator[node_pb2.ExecResponse]:
    if size:
        first.resize.width, first.resize.height = size
    target, ch = _channel(target, credentials, metadata)
    call = getattr(node_pb2_grpc.NodeAgentStub(ch), rpc)()
    lock = asyncio.Lock()           # one write at a time on the call

    async def write(req: node_pb2.ExecRequest) -> None:
        async with lock:
            await call.write(req)

    async def pump_resizes() -> None:
        async for w, h in resizes:
            await write(node_pb2.ExecRequest(resize=node_pb2.TerminalSize(width=w, height=h)))

    async def pump() -> None:
        try:
            await call.write(first)
            if stdin is not None:
                async for data in stdin:
                    if data:
                        await write(node_pb2.ExecRequest(stdin_data=data))
                await write(node_pb2.ExecRequest(stdin_eof=True))
            if resizes is None:
                await call.done_writing()
        except (asyncio.InvalidStateError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            pass   # the call ended first; the reader sees why

    pumping = [asyncio.create_task(pump(), name=f"{rpc.lower()}-stdin-{first.pod}")]
    if resizes is not None:
        pumping.append(asyncio.create_task(_quietly(pump_resizes()), name=f"{rpc.lower()}-resize-{first.pod}"))
    try:
        async for resp in call:
            yield resp
    except grpc.aio.AioRpcError as exc:
        raise errors.from_rpc_error(exc, target) from exc
    finally:
        for t in pumping:
            t.cancel()
        call.cancel()
        await ch.close()


async def _quietly(coro) -> None:
    try:
        await coro
    except (asyncio.InvalidStateError, grpc.aio.AioRpcError, grpc.aio.UsageError):
        pass
