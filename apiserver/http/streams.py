"""Pod `log`, `exec` and `attach` over HTTP, through the node proxy (apiserver/nodeproxy.py).

* `GET pods/X/log`: text/plain, the container's log; chunked and kept open
  with `follow=true`. Query: container, follow, previous, timestamps,
  tailLines, sinceSeconds | sinceTime, limitBytes (checked as Kubernetes
  checks PodLogOptions: 422 naming the field). The first chunk is awaited
  (up to FIRST_CHUNK_WAIT) before the 200 is sent, so an error of the node
  (no such container instance, agent unreachable) is a Status, not a
  truncated body. While a followed container is silent, the connection is
  checked every CLIENT_CHECK seconds, so a client that left ends the agent
  call even when no write would notice.
* `exec` / `attach`: WebSocket only (kubectl since 1.30 and the Python
  client), subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`. Every
  binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr,
  3 the final metav1.Status, 4 a terminal resize `{"Width":..,"Height":..}`;
  v5 adds 255 `close`, whose payload `0` ends stdin. (The Python client
  sends text messages whose first character is the channel; they are
  read the same way.) The pod and container are checked *before* the
  upgrade, so errors are plain HTTP Statuses (kubectl then tries SPDY,
  gets the same Status and prints it); a request that is no WebSocket
  upgrade is 400 `Upgrade request required`, as Kubernetes answers a
  non-upgrade. After the command ends: channel 3 says Success or
  `NonZeroExitCode` with the code in `details.causes` (kubectl exits with
  it), and the socket is closed at once (kubectl waits for the close).
  With tty=true kubectl sends the terminal's size right after connecting;
  the command is started with it (waiting up to TTY_SIZE_WAIT for it), so
  it never sees the 80x24 default first.

Concurrency per stream: one task reads the WebSocket and feeds the node
proxy's request iterator (stdin, its end, resizes) through a queue; the
handler writes the agent's output. When the client goes away the handler's
iteration is closed, which cancels the agent call (and the command).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import AsyncIterator

from aiohttp import WSMsgType, web

from apiserver.http import wire
from apiserver.http.resources import Target, int_param
from machinery import errors
from machinery.pb import node_pb2

FIRST_CHUNK_WAIT = 1.0
CLIENT_CHECK = 5.0
TTY_SIZE_WAIT = 1.0
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
TRUE = ("true", "1", "True")


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in TRUE


def log_request(request: web.Request, t: Target) -> node_pb2.LogsRequest:
    """The node's LogsRequest for a log URL, or Kubernetes' PodLogOptions errors."""
    q = request.query
    req = node_pb2.LogsRequest(namespace=t.ns or "default", pod=t.name, container=q.get("container", ""),
                               follow=flag(request, "follow"), previous=flag(request, "previous"),
                               timestamps=flag(request, "timestamps"))
    bad = []
    tail, since, limit = (int_param(request, n) for n in ("tailLines", "sinceSeconds", "limitBytes"))
    if tail is not None:
        if tail < 0:
            bad.append(errors.invalid("tailLines", tail, "must be greater than or equal to 0"))
        req.tail_lines = tail
    if since is not None:
        if since < 1:
            bad.append(errors.invalid("sinceSeconds", since, "must be greater than 0"))
        req.since_seconds = since
    if q.get("sinceTime"):
        try:
            datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise errors.BadRequest(f'parsing time "{q["sinceTime"]}" as "2006-01-02T15:04:05Z07:00": '
                                    f"cannot parse") from None
        if since is not None:
            bad.append(errors.forbidden("sinceTime", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
        req.since_time = q["sinceTime"]
    if limit is not None and limit < 1:
        bad.append(errors.invalid("limitBytes", limit, "must be greater than 0"))
    if bad:
        raise errors.Invalid.of("PodLogOptions", t.name, bad)
    return req


class Streams:
    """The streaming routes; `proxy` is the apiserver's NodeProxy."""

    def __init__(self, proxy):
        self.proxy = proxy

    async def log(self, request: web.Request, t: Target) -> web.StreamResponse:
        req = log_request(request, t)
        limit = int_param(request, "limitBytes")
        chunks = self.proxy.logs(req)
        async with contextlib.aclosing(chunks):
            pending = asyncio.ensure_future(anext(chunks, None))
            try:
                await asyncio.wait([pending], timeout=FIRST_CHUNK_WAIT)
                if pending.done():
                    pending.result()            # an error before any output: a Status
                resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                if req.follow:
                    resp.enable_chunked_encoding()
                await resp.prepare(request)
                try:
                    await self._copy_log(request, resp, chunks, pending, limit)
                except errors.ApiError as exc:      # the headers are gone: say it in the body
                    await resp.write(f"error: {exc.message}\n".encode())
                await resp.write_eof()
            except ConnectionError:
                pass                                 # the client left
            finally:
                await settle(pending)
            return resp

    @staticmethod
    async def _copy_log(request: web.Request, resp: web.StreamResponse, chunks, pending: asyncio.Future,
                        limit: int | None) -> None:
        """Write chunks (the first one pending) until the end, limit bytes, or the client
        leaving (checked every CLIENT_CHECK s while the container is silent)."""
        sent = 0
        try:
            while True:
                done, _ = await asyncio.wait([pending], timeout=CLIENT_CHECK)
                if not done:
                    if request.transport is None or request.transport.is_closing():
                        return
                    continue
                chunk = pending.result()
                if chunk is None:
                    return
                data = chunk.data if limit is None else chunk.data[:limit - sent]
                await resp.write(data)
                sent += len(data)
                if limit is not None and sent >= limit:
                    return
                pending = asyncio.ensure_future(anext(chunks, None))
        finally:
            await settle(pending)

    async def exec(self, request: web.Request, t: Target) -> web.StreamResponse:
        return await self._remote_command(request, t, "exec")

    async def attach(self, request: web.Request, t: Target) -> web.StreamResponse:
        return await self._remote_command(request, t, "attach")

    async def _remote_command(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        q = request.query
        stdin, stdout, stderr, tty = (flag(request, n) for n in ("stdin", "stdout", "stderr", "tty"))
        command = q.getall("command", [])
        if verb == "exec" and not command:
            raise errors.BadRequest("you must specify at least one command for the container")
        if not (stdin or stdout or stderr):
            raise errors.BadRequest("you must specify at least one of stdin, stdout, stderr")
        container = await self.proxy.resolve(t.ns or "default", t.name, q.get("container", ""))
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            raise errors.BadRequest("Upgrade request required")
        await ws.prepare(request)
        first = node_pb2.ExecRequest(namespace=t.ns or "default", pod=t.name, container=container,
                                     command=command, stdin=stdin, tty=tty)
        inbox: asyncio.Queue = asyncio.Queue()
        reading = asyncio.create_task(self._read_client(ws, inbox, asyncio.current_task()),
                                      name=f"{verb}-ws-{t.ns}/{t.name}")

        early = await first_size(inbox, first) if tty else None

        async def requests() -> AsyncIterator[node_pb2.ExecRequest]:
            req = early if early is not None else await inbox.get()
            while req is not None:
                yield req
                req = await inbox.get()
        try:
            status = wire.success_status()
            try:
                async with contextlib.aclosing(self.proxy.stream(verb, first, requests())) as responses:
                    async for resp in responses:
                        if resp.stdout and stdout:
                            await ws.send_bytes(bytes([STDOUT]) + resp.stdout)
                        if resp.stderr and stderr:
                            await ws.send_bytes(bytes([STDERR]) + resp.stderr)
                        if resp.HasField("exit_code") and resp.exit_code:
                            status = exit_status(resp.exit_code)
            except errors.ApiError as exc:
                status = wire.status_of(exc)
            if not ws.closed:
                await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
        except ConnectionError:
            pass                                    # the client left
        finally:
            reading.cancel()
            await ws.close()
        return ws

    @staticmethod
    async def _read_client(ws: web.WebSocketResponse, inbox: asyncio.Queue, handler: asyncio.Task) -> None:
        """Client frames -> ExecRequests (stdin, stdin_eof, resize). When the client closes
        the socket first, the handler is cancelled (which cancels the command)."""
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    data = msg.data
                elif msg.type == WSMsgType.TEXT:
                    data = msg.data.encode()
                else:
                    continue
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel == STDIN and payload:
                    inbox.put_nowait(node_pb2.ExecRequest(stdin_data=payload))
                elif channel == RESIZE:
                    try:
                        size = json.loads(payload)
                        inbox.put_nowait(node_pb2.ExecRequest(resize=node_pb2.TerminalSize(
                            width=int(size.get("Width", 0)), height=int(size.get("Height", 0)))))
                    except (ValueError, TypeError, AttributeError):
                        pass                        # kubelet ignores a bad resize too
                elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                    inbox.put_nowait(node_pb2.ExecRequest(stdin_eof=True))
        finally:
            inbox.put_nowait(None)
        handler.cancel()


async def settle(pending: asyncio.Future) -> None:
    """Cancel a pending next-chunk read and let it finish (the generator may then be closed)."""
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await pending


async def first_size(inbox: asyncio.Queue, first: node_pb2.ExecRequest):
    """With a TTY, kubectl sends the terminal's size right after connecting: wait up to
    TTY_SIZE_WAIT for it so the command starts at the right size (no 80x24 flash before the
    resize); it goes into the first request. Returns a message taken that was not a size."""
    try:
        req = await asyncio.wait_for(inbox.get(), TTY_SIZE_WAIT)
    except TimeoutError:
        return None
    if req is not None and req.HasField("resize") and not req.stdin_data and not req.stdin_eof:
        first.resize.CopyFrom(req.resize)
        return None
    if req is None:
        inbox.put_nowait(None)
    return req


def exit_status(code: int) -> dict:
    """What kubelet reports for a command that exited non-zero (kubectl exits with the code)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command [...], "
                       f"exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
