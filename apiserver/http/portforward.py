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

The pod is checked (exists, bound, its node has an agent) before the
upgrade, so such errors are plain HTTP Statuses. A request that is no
WebSocket upgrade, or offers no `SPDY/3.1+portforward.k8s.io`, is a 400 —
kctl does not serve SPDY over a plain HTTP upgrade (kubectl before 1.31
and `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`).
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


class PortForward:
    def __init__(self, proxy):
        self.proxy = proxy

    async def portforward(self, request: web.Request, t: Target) -> web.StreamResponse:
        ns = t.ns or "default"
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        ws = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok or PROTOCOL not in offered:
            raise errors.BadRequest(f"Upgrade request required: a WebSocket with the subprotocol {PROTOCOL}")
        await self.proxy.resolve_pod(ns, t.name)
        await ws.prepare(request)
        errors_by_request: dict[str, spdy.Stream] = {}
        relays: set[asyncio.Task] = set()

        async def on_stream(stream: spdy.Stream) -> None:
            kind, rid = stream.headers.get("streamtype", ""), stream.headers.get("requestid", "")
            if kind == "error":
                errors_by_request[rid] = stream
            elif kind == "data":
                task = asyncio.create_task(self._relay(conn, stream, errors_by_request, ns, t.name),
                                           name=f"portforward-{ns}/{t.name}-{rid}")
                relays.add(task)
                task.add_done_callback(relays.discard)
            else:
                await conn.reset(stream, spdy.PROTOCOL_ERROR)
        conn = spdy.Connection(ws.send_bytes, on_stream)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await conn.feed(msg.data)
        except spdy.ProtocolError as exc:
            log.info("port-forward %s/%s: %s", ns, t.name, exc)
            with contextlib.suppress(ConnectionError):
                await conn.goaway()
        except ConnectionError:
            pass
        finally:
            for task in list(relays):
                task.cancel()
            await ws.close()
        return ws

    async def _relay(self, conn: spdy.Connection, data: spdy.Stream, errs: dict[str, spdy.Stream],
                     ns: str, pod: str) -> None:
        rid = data.headers.get("requestid", "")
        try:
            port = int(data.headers.get("port", ""))
            if not 0 < port < 65536:
                raise ValueError(port)
        except ValueError:
            await self._fail(conn, data, errs.pop(rid, None), f'invalid port "{data.headers.get("port", "")}"')
            return

        async def client_bytes() -> AsyncIterator[node_pb2.PortForwardRequest]:
            while (chunk := await data.inbox.get()) is not None:
                yield node_pb2.PortForwardRequest(data=chunk)
            yield node_pb2.PortForwardRequest(eof=True)
        try:
            async with contextlib.aclosing(self.proxy.port_forward(ns, pod, port, client_bytes())) as pod_bytes:
                async for resp in pod_bytes:
                    if resp.error:
                        raise errors.BadRequest(resp.error)
                    await conn.data(data, resp.data)
        except errors.ApiError as exc:
            await self._fail(conn, data, errs.pop(rid, None),
                             f"error forwarding port {port} to pod {pod}: {exc.message}")
            return
        except ConnectionError:
            return
        with contextlib.suppress(ConnectionError):
            await conn.data(data, fin=True)
            err = errs.pop(rid, None)
            if err is not None:
                await conn.data(err, fin=True)

    @staticmethod
    async def _fail(conn: spdy.Connection, data: spdy.Stream, err: spdy.Stream | None, message: str) -> None:
        with contextlib.suppress(ConnectionError):
            if err is not None:
                await conn.data(err, message.encode(), fin=True)
            await conn.data(data, fin=True)
