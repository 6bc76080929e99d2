"""The HTTP streaming routes (apiserver/http/streams.py, portforward.py, spdy.py) without a cluster.

A real aiohttp server on loopback serves make_app() with a fake node proxy
(scripted responses, recorded requests); aiohttp's WebSocket client plays
kubectl's side of the channel protocol, and a small SPDY client written
here (frames built by hand, the header block compressed with the SPDY
dictionary) plays client-go's port-forward.
"""
from __future__ import annotations

import asyncio
import json
import struct
import zlib

import aiohttp
import pytest
from aiohttp import web

from apiserver import http
from apiserver.http import spdy
from machinery import errors
from machinery.pb import node_pb2


class FakeProxy:
    def __init__(self):
        self.log_chunks = [b"one\n", b"two\n", b"three\n"]
        self.exec_script: list[node_pb2.ExecResponse] = []
        self.requests: list = []
        self.fail: errors.ApiError | None = None
        self.pod_echo = True

    async def resolve(self, namespace, name, container):
        if self.fail:
            raise self.fail
        return container or "c"

    async def resolve_pod(self, namespace, name):
        if self.fail:
            raise self.fail
        return "node", "endpoint"

    async def logs(self, req):
        self.requests.append(req)
        for c in self.log_chunks:
            yield node_pb2.LogChunk(data=c)

    async def stream(self, verb, first, rest):
        self.requests.append((verb, first))
        got = []
        while first.stdin:                     # until stdin's end
            req = await anext(rest)
            got.append(req)
            if req.stdin_eof:
                break
        self.requests.append(got)
        for r in self.exec_script:
            yield r

    async def port_forward(self, ns, pod, port, rest):
        self.requests.append((ns, pod, port))
        if port == 81:
            yield node_pb2.PortForwardResponse(error="failed to connect to localhost:81: Connection refused")
            return
        async for req in rest:
            if req.data:
                yield node_pb2.PortForwardResponse(data=req.data.upper())
            if req.eof:
                return


class Verbs:  # the resource routes are not exercised here
    pass


@pytest.fixture
async def server():
    proxy = FakeProxy()
    runner = web.AppRunner(http.make_app(Verbs(), proxy))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as s:
        yield s, proxy
    await runner.cleanup()


POD = "/api/v1/namespaces/default/pods/p"


async def test_log_params_and_body(server):
    s, proxy = server
    async with s.get(f"{POD}/log?container=a&tailLines=2&timestamps=true&sinceSeconds=60") as r:
        assert (r.status, r.content_type, await r.text()) == (200, "text/plain", "one\ntwo\nthree\n")
    req = proxy.requests[-1]
    assert (req.container, req.tail_lines, req.timestamps, req.since_seconds, req.follow) == ("a", 2, True, 60, False)
    async with s.get(f"{POD}/log?limitBytes=6") as r:
        assert await r.text() == "one\ntw"


@pytest.mark.parametrize("query, message", [
    ("tailLines=-1", "tailLines: Invalid value: -1: must be greater than or equal to 0"),
    ("sinceSeconds=0", "sinceSeconds: Invalid value: 0: must be greater than 0"),
    ("limitBytes=0", "limitBytes: Invalid value: 0: must be greater than 0"),
    ("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z", "at most one of `sinceTime` or `sinceSeconds`"),
])
async def test_log_options_are_checked(server, query, message):
    s, _ = server
    async with s.get(f"{POD}/log?{query}") as r:
        body = await r.json()
        assert r.status == 422 and body["reason"] == "Invalid" and message in body["message"], body


async def test_log_error_before_output_is_a_status(server):
    s, proxy = server

    async def failing(req):
        raise errors.BadRequest("container zz is not valid for pod p")
        yield  # pragma: no cover
    proxy.logs = failing
    async with s.get(f"{POD}/log?container=zz") as r:
        assert r.status == 400 and (await r.json())["message"] == "container zz is not valid for pod p"


async def ws_exec(s, query: str, frames=(), protocol="v5.channel.k8s.io"):
    """Run one exec over a WebSocket: send frames, collect (channel, payload) until the server closes."""
    got = []
    async with s.ws_connect(f"{POD}/exec?{query}", protocols=(protocol,)) as ws:
        assert ws.protocol == protocol
        for f in frames:
            await ws.send_bytes(f)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                got.append((msg.data[0], msg.data[1:]))
    return got


async def test_exec_channels_status_and_close(server):
    s, proxy = server
    proxy.exec_script = [node_pb2.ExecResponse(stdout=b"out"), node_pb2.ExecResponse(stderr=b"err"),
                         node_pb2.ExecResponse(exit_code=3)]
    got = await ws_exec(s, "command=sh&command=-c&command=x&stdin=true&stdout=true&stderr=true&tty=true",
                        [b"\x04" + json.dumps({"Width": 120, "Height": 40}).encode(), b"\x00hello", b"\xff\x00"])
    verb, first = proxy.requests[0]
    assert (verb, list(first.command), first.stdin, first.tty) == ("exec", ["sh", "-c", "x"], True, True)
    assert (first.resize.width, first.resize.height) == (120, 40)        # the size came first: in the start
    assert [(r.stdin_data, r.stdin_eof) for r in proxy.requests[1]] == [(b"hello", False), (b"", True)]
    assert got[:2] == [(1, b"out"), (2, b"err")]
    status = json.loads(got[2][1])
    assert got[2][0] == 3 and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_exec_success_v4_and_unrequested_streams(server):
    s, proxy = server
    proxy.exec_script = [node_pb2.ExecResponse(stdout=b"out"), node_pb2.ExecResponse(stderr=b"hidden"),
                         node_pb2.ExecResponse(exit_code=0)]
    got = await ws_exec(s, "command=true&stdout=true", protocol="v4.channel.k8s.io")
    assert got[0] == (1, b"out") and got[1][0] == 3 and len(got) == 2
    assert json.loads(got[1][1])["status"] == "Success"


async def test_exec_refusals_before_the_upgrade(server):
    s, proxy = server
    async with s.get(f"{POD}/exec?command=true&stdout=true") as r:       # no WebSocket
        assert r.status == 400 and (await r.json())["message"] == "Upgrade request required"
    async with s.get(f"{POD}/exec?stdout=true") as r:
        assert (await r.json())["message"] == "you must specify at least one command for the container"
    async with s.get(f"{POD}/exec?command=true") as r:
        assert (await r.json())["message"] == "you must specify at least one of stdin, stdout, stderr"
    proxy.fail = errors.NotFound('pods "p" not found')
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await ws_exec(s, "command=true&stdout=true")
    assert info.value.status == 404


async def test_attach_needs_no_command(server):
    s, proxy = server
    async with s.ws_connect(f"{POD}/attach?stdout=true", protocols=("v5.channel.k8s.io",)) as ws:
        msgs = [m async for m in ws]
    assert proxy.requests[0][0] == "attach" and json.loads(msgs[-1].data[1:])["status"] == "Success"


# ------------------------------------------------------------- SPDY client

class SpdyClient:
    """Just enough of client-go's side: SYN_STREAM out, frames in."""

    def __init__(self, ws):
        self.ws = ws
        self.deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=spdy.DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
        self.buf = b""

    async def syn(self, sid: int, headers: dict, fin: bool = False) -> None:
        block = self.deflate.compress(spdy.encode_headers(headers)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        await self.ws.send_bytes(spdy.control(spdy.SYN_STREAM, spdy.FLAG_FIN if fin else 0,
                                              struct.pack(">IIH", sid, 0, 0) + block))

    async def data(self, sid: int, data: bytes, fin: bool = False) -> None:
        await self.ws.send_bytes(struct.pack(">II", sid, ((spdy.FLAG_FIN if fin else 0) << 24) | len(data)) + data)

    async def frame(self):
        """("ctl", type, flags, payload) or ("data", stream id, flags, payload)."""
        while len(self.buf) < 8 or len(self.buf) < 8 + int.from_bytes(self.buf[5:8], "big"):
            msg = await asyncio.wait_for(self.ws.receive(), 10)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            self.buf += msg.data
        n = int.from_bytes(self.buf[5:8], "big")
        head, payload, self.buf = self.buf[:8], self.buf[8:8 + n], self.buf[8 + n:]
        if head[0] & 0x80:
            return "ctl", struct.unpack(">H", head[2:4])[0], head[4], payload
        return "data", int.from_bytes(head[:4], "big"), head[4], payload


def test_dictionary_is_spdy3s():
    d = spdy.DICTIONARY        # draft 3.1 2.6.10.1: 1423 bytes, no trailing NUL
    assert len(d) == 1423 and d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert b"\x00\x00\x00\x06status\x00\x00\x00\x06200 OK\x00\x00\x00\x07version" in d
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


async def portforward(s):
    return await s.ws_connect(f"{POD}/portforward", protocols=("SPDY/3.1+portforward.k8s.io",))


async def test_portforward_relays_a_connection(server):
    s, proxy = server
    async with await portforward(s) as ws:
        c = SpdyClient(ws)
        await c.syn(1, {"streamtype": "error", "port": "80", "requestid": "0"}, fin=True)
        kind, ftype, _, payload = await c.frame()
        assert (kind, ftype, payload[:4]) == ("ctl", spdy.SYN_REPLY, struct.pack(">I", 1))
        assert c.inflate.decompress(payload[4:]) == b"\0\0\0\0"     # no headers, compressed with our dictionary
        await c.syn(3, {"streamtype": "data", "port": "80", "requestid": "0"})
        kind, ftype, _, payload = await c.frame()
        assert (kind, ftype, payload[:4]) == ("ctl", spdy.SYN_REPLY, struct.pack(">I", 3))
        assert c.inflate.decompress(payload[4:]) == b"\0\0\0\0"      # one compression context per direction
        await ws.send_bytes(spdy.control(spdy.PING, 0, struct.pack(">I", 7)))
        assert await c.frame() == ("ctl", spdy.PING, 0, struct.pack(">I", 7))
        await c.data(3, b"get /", fin=True)
        assert await c.frame() == ("data", 3, 0, b"GET /")
        assert await c.frame() == ("data", 3, spdy.FLAG_FIN, b"")     # the pod closed: FIN on data...
        assert await c.frame() == ("data", 1, spdy.FLAG_FIN, b"")     # ... and on error
    assert proxy.requests[0] == ("default", "p", 80)


async def test_portforward_error_goes_on_the_error_stream(server):
    s, _ = server
    async with await portforward(s) as ws:
        c = SpdyClient(ws)
        await c.syn(1, {"streamtype": "error", "port": "81", "requestid": "5"}, fin=True)
        await c.frame()
        await c.syn(3, {"streamtype": "data", "port": "81", "requestid": "5"})
        await c.frame()
        assert await c.frame() == ("data", 1, 0, b"error forwarding port 81 to pod p: "
                                                 b"failed to connect to localhost:81: Connection refused")
        assert await c.frame() == ("data", 1, spdy.FLAG_FIN, b"")
        assert await c.frame() == ("data", 3, spdy.FLAG_FIN, b"")


async def test_portforward_needs_a_known_protocol_and_ports(server):
    s, _ = server
    for url, protocol in ((f"{POD}/portforward", "v5.channel.k8s.io"), (f"{POD}/portforward", "v4.channel.k8s.io"),
                          (f"{POD}/portforward?ports=0", "v4.channel.k8s.io")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(url, protocols=(protocol,))
        assert info.value.status == 400


async def test_portforward_channels_protocol(server):
    """v4.channel.k8s.io: port i = data channel 2i + error channel 2i+1, each opened with its port."""
    s, proxy = server
    async with s.ws_connect(f"{POD}/portforward?ports=80,81", protocols=("v4.channel.k8s.io",)) as ws:
        first = [(await ws.receive_bytes()) for _ in range(4)]
        assert sorted(first) == [b"\x00P\x00", b"\x01P\x00", b"\x02Q\x00", b"\x03Q\x00"]   # 80, 81 LE
        assert await ws.receive_bytes() == (b"\x03error forwarding port 81 to pod p: "
                                            b"failed to connect to localhost:81: Connection refused")
        await ws.send_bytes(b"\x00ping")
        assert await ws.receive_bytes() == b"\x00PING"
    assert sorted(r for r in proxy.requests if isinstance(r, tuple)) == [("default", "p", 80), ("default", "p", 81)]


def test_headers_round_trip_and_bad_blocks():
    block = spdy.encode_headers({"StreamType": "data", "port": "80"})
    assert spdy.decode_headers(block) == {"streamtype": "data", "port": "80"}
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_headers(b"\x00\x00\x00\x05\x00")


async def test_a_follower_that_left_ends_the_agent_call(server, monkeypatch):
    from apiserver.http import streams
    monkeypatch.setattr(streams, "CLIENT_CHECK", 0.05)
    s, proxy = server
    ended = asyncio.Event()

    async def silent_after_one(req):
        try:
            yield node_pb2.LogChunk(data=b"first\n")
            await asyncio.Event().wait()           # a container that says nothing more
        finally:
            ended.set()
    proxy.logs = silent_after_one
    async with s.get(f"{POD}/log?follow=true") as r:
        assert await r.content.readline() == b"first\n"
    await asyncio.wait_for(ended.wait(), 10)
