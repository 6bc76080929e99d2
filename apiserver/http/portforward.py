"""`pods/X/portforward`: kubectl's port-forward, SPDY/3.1 tunnelled through a WebSocket.

kubectl 1.31+ asks for the WebSocket subprotocol `SPDY/3.1+portforward.k8s.io`
and speaks, inside it, the protocol the kubelet serves over SPDY
(apiserver/http/spdy.py for the framing). For every local connection it
opens two streams carrying the headers `streamtype` (`error` or `data`),
`port` and `requestid`; the pair shares the requestid. The server:

* answers each stream (SYN_REPLY), and when a `data` stream arrives opens
  one node-proxy PortForward call (the agent connects to localhost:PORT in
  the pod's network namespace) and relays bytes both ways: the client's
  FIN half-closes the pod connection, the pod's end is a FIN on the data
  stream and on the error stream;
* when the connection cannot be made, writes the error's message on the
  `error` stream (kubectl prints it: `an error occurred forwarding ...`)
  and closes both.

One connection task per data stream; the WebSocket reader feeds the SPDY
connection. When the WebSocket closes, every relay is cancelled, which
cancels its agent call and so closes the pod side.

The older WebSocket protocol, `v4.channel.k8s.io` with `?ports=80,8080`
(the Python client's `portforward`), is served too: port i has the data
channel 2i and the error channel 2i+1, the server first sends each
channel its port (2 bytes, little-endian), then one pod connection per
port relays for the WebSocket's lifetime; the WebSocket closes when every
pod connection has ended.

Both share `_relay` (one node-proxy PortForward call; the client's bytes
from a queue, None = its end; errors as `error forwarding port P to pod
X: ...`). The pod is checked (exists, bound, its node has an agent) before
the upgrade, so such errors are plain HTTP Statuses. A request that is no
WebSocket upgrade, or offers neither protocol, is a 400 — kctl does not
serve SPDY over a plain HTTP upgrade (kubectl before 1.31 and
`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from aiohttp import WSMsgType, web

from apiserver.http import spdy
from apiserver.http.resources import Target
from machinery import errors
from machinery.pb import node_pb2

log = logging.getLogger(__name__)

PROTOCOL = "SPDY/3.1+portforward.k8s.io"
CHANNELS = "v4.channel.k8s.io"


class PortForward:
    def __init__(self, proxy):
        self.proxy = proxy

    async def portforward(self, request: web.Request, t: Target) -> web.StreamResponse:
        ns = t.ns or "default"
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        protocol = PROTOCOL if PROTOCOL in offered else CHANNELS if CHANNELS in offered else ""
        ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok or not protocol:
            raise errors.BadRequest(f"Upgrade request required: a WebSocket with the subprotocol {PROTOCOL} "
                                    f"or {CHANNELS}")
        ports = query_ports(request) if protocol == CHANNELS else []
        await self.proxy.resolve_pod(ns, t.name)
        await ws.prepare(request)
        relays: set[asyncio.Task] = set()

        def start(coro, name: str) -> None:
            task = asyncio.create_task(coro, name=f"portforward-{ns}/{t.name}-{name}")
            relays.add(task)
            task.add_done_callback(relays.discard)
        try:
            if protocol == PROTOCOL:
                await self._spdy(ws, ns, t.name, start)
            else:
                await self._channels(ws, ns, t.name, ports, start, relays)
        except ConnectionError:
            pass
        finally:
            for task in list(relays):
                task.cancel()
            await ws.close()
        return ws

    async def _spdy(self, ws: web.WebSocketResponse, ns: str, pod: str, start) -> None:
        errs: dict[str, spdy.Stream] = {}

        async def on_stream(stream: spdy.Stream) -> None:
            kind, rid = stream.headers.get("streamtype", ""), stream.headers.get("requestid", "")
            if kind == "error":
                errs[rid] = stream
            elif kind == "data":
                start(self._spdy_relay(conn, stream, errs, ns, pod), rid)
            else:
                await conn.reset(stream, spdy.PROTOCOL_ERROR)
        conn = spdy.Connection(ws.send_bytes, on_stream)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await conn.feed(msg.data)
        except spdy.ProtocolError as exc:
            log.info("port-forward %s/%s: %s", ns, pod, exc)
            await conn.goaway()

    async def _spdy_relay(self, conn: spdy.Connection, data: spdy.Stream, errs: dict[str, spdy.Stream],
                          ns: str, pod: str) -> None:
        rid = data.headers.get("requestid", "")

        async def fail(message: str) -> None:
            err = errs.pop(rid, None)
            if err is not None:
                await conn.data(err, message.encode(), fin=True)
        try:
            port = parse_port(data.headers.get("port", ""))
        except errors.ApiError as exc:
            await fail(exc.message)
        else:
            await self._relay(ns, pod, port, data.inbox, lambda b: conn.data(data, b), fail)
        with contextlib.suppress(ConnectionError):
            await conn.data(data, fin=True)
            if rid in errs:
                await fail("")

    async def _channels(self, ws: web.WebSocketResponse, ns: str, pod: str, ports: list[int], start,
                        relays: set) -> None:
        inboxes = [asyncio.Queue() for _ in ports]
        for i, port in enumerate(ports):
            for channel in (2 * i, 2 * i + 1):
                await ws.send_bytes(bytes([channel]) + port.to_bytes(2, "little"))
            start(self._relay(ns, pod, port, inboxes[i], lambda b, c=2 * i: ws.send_bytes(bytes([c]) + b),
                              lambda m, c=2 * i + 1: ws.send_bytes(bytes([c]) + m.encode())), str(port))
        all_done = asyncio.ensure_future(asyncio.gather(*relays, return_exceptions=True))
        reading = asyncio.ensure_future(self._read_channels(ws, inboxes))
        try:
            await asyncio.wait([all_done, reading], return_when=asyncio.FIRST_COMPLETED)
        finally:
            reading.cancel()
            all_done.cancel()

    @staticmethod
    async def _read_channels(ws: web.WebSocketResponse, inboxes: list[asyncio.Queue]) -> None:
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY and msg.data and msg.data[0] % 2 == 0 \
                        and msg.data[0] // 2 < len(inboxes) and len(msg.data) > 1:
                    inboxes[msg.data[0] // 2].put_nowait(msg.data[1:])
        finally:
            for q in inboxes:
                q.put_nowait(None)

    async def _relay(self, ns: str, pod: str, port: int, inbox: asyncio.Queue, send, fail) -> None:
        """One connection to the pod's port: inbox (bytes, None at the client's end) -> the pod;
        the pod's bytes -> send(bytes); a failure -> fail(message)."""
        async def client_bytes() -> AsyncIterator[node_pb2.PortForwardRequest]:
            while (chunk := await inbox.get()) is not None:
                yield node_pb2.PortForwardRequest(data=chunk)
            yield node_pb2.PortForwardRequest(eof=True)
        with contextlib.suppress(ConnectionError):
            try:
                async with contextlib.aclosing(self.proxy.port_forward(ns, pod, port, client_bytes())) as out:
                    async for resp in out:
                        if resp.error:
                            raise errors.BadRequest(resp.error)
                        await send(resp.data)
            except errors.ApiError as exc:
                await fail(f"error forwarding port {port} to pod {pod}: {exc.message}")


def parse_port(text: str) -> int:
    try:
        port = int(text)
        if 0 < port < 65536:
            return port
    except ValueError:
        pass
    raise errors.BadRequest(f'invalid port "{text}"')


def query_ports(request: web.Request) -> list[int]:
    """The `ports` of a v4.channel.k8s.io port-forward (repeated and/or comma-separated)."""
    ports = [parse_port(p) for v in request.query.getall("ports", []) for p in v.split(",") if p]
    if not ports:
        raise errors.BadRequest("query parameter \"ports\" is required")
    return ports
