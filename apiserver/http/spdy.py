"""The server side of SPDY/3.1 framing, as much as kubectl's port-forward uses.

kubectl (client-go's tools/portforward since 1.31) tunnels a SPDY/3.1
connection through a WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`):
the binary messages, concatenated, are the SPDY byte stream; message
boundaries mean nothing. On it the client opens streams (SYN_STREAM with
headers), the server answers each with SYN_REPLY, and both sides send DATA
frames; the FIN flag half-closes a stream. The client PINGs every 10 s and
expects the PING back.

Frames (draft 3.1, big-endian): control frames start with the control bit,
version 3 and a 16-bit type, then 8 bits of flags and a 24-bit length; data
frames start with a 31-bit stream id, then flags and length. Header blocks
(`count, (len, name, len, value)*`, 32-bit lengths) are zlib-compressed
with the SPDY dictionary, one compression context per direction for the
whole connection, each block ended by a sync flush.

Not implemented, because no Kubernetes client relies on them: server push,
HEADERS frames' effect, per-stream flow control windows (client-go's
spdystream sends WINDOW_UPDATE-free data and is read as fast as it comes;
WINDOW_UPDATE and SETTINGS are accepted and ignored). A malformed frame
ends the connection with GOAWAY (protocol error).
"""
from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Awaitable, Callable

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
PROTOCOL_ERROR, CANCEL = 1, 5
MAX_DATA = 64 * 1024

_WORDS = ("options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges "
          "age allow authorization cache-control connection content-base content-encoding content-language "
          "content-length content-location content-md5 content-range content-type date etag expect expires from "
          "host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location "
          "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te trailer "
          "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status 200|OK "
          "version HTTP/1.1 url public set-cookie keep-alive origin").split(" ")
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
         "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
         "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
         "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
         "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
# The header compression dictionary of SPDY/3 (draft 3.1, 2.6.10.1): length-prefixed words, then a tail.
DICTIONARY = b"".join(len(w).to_bytes(4, "big") + w.replace("|", " ").encode() for w in _WORDS) + _TAIL.encode()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1."""


def encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for k, v in headers.items():
        kb, vb = k.lower().encode(), v.encode()
        out += [struct.pack(">I", len(kb)), kb, struct.pack(">I", len(vb)), vb]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    """name -> value (several values of one name are NUL-separated in SPDY; kept as sent)."""
    try:
        (n,), pos, out = struct.unpack_from(">I", block), 4, {}
        for _ in range(n):
            (kl,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + kl].decode()
            pos += 4 + kl
            (vl,) = struct.unpack_from(">I", block, pos)
            out[name] = block[pos + 4:pos + 4 + vl].decode()
            pos += 4 + vl
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad header block: {exc}") from None
    return out


def control(ftype: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


class Stream:
    """One stream the client opened: its headers and the data it sent (None after its FIN)."""

    def __init__(self, sid: int, headers: dict[str, str]):
        self.id, self.headers = sid, headers
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.closed_by_us = False


class Connection:
    """Server side of one SPDY/3.1 connection: `feed()` the client's bytes; `on_stream(stream)`
    is awaited for each stream it opens (after our SYN_REPLY); `send(bytes)` writes ours."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], on_stream: Callable[[Stream], Awaitable[None]]):
        self._send, self.on_stream = send, on_stream
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=DICTIONARY)
        self._lock = asyncio.Lock()
        self.streams: dict[int, Stream] = {}

    async def feed(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                return
            head, payload = bytes(self._buf[:8]), bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = head[4]
            if head[0] & 0x80:
                version, ftype = struct.unpack_from(">HH", head)
                if version & 0x7FFF != VERSION:
                    raise ProtocolError(f"SPDY version {version & 0x7FFF} is not 3")
                await self._control(ftype, flags, payload)
            else:
                self._data(int.from_bytes(head[:4], "big") & 0x7FFFFFFF, flags, payload)

    async def _control(self, ftype: int, flags: int, payload: bytes) -> None:
        if ftype == SYN_STREAM:
            if len(payload) < 10:
                raise ProtocolError("short SYN_STREAM")
            sid = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            try:
                block = self._inflate.decompress(payload[10:])
            except zlib.error as exc:
                raise ProtocolError(f"header block: {exc}") from None
            stream = self.streams[sid] = Stream(sid, decode_headers(block))
            await self.reply(sid)
            if flags & FLAG_FIN:
                stream.inbox.put_nowait(None)
            await self.on_stream(stream)
        elif ftype == RST_STREAM and len(payload) >= 4:
            stream = self.streams.pop(int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, None)
            if stream is not None:
                stream.inbox.put_nowait(None)
        elif ftype == PING:
            await self._write(control(PING, 0, payload[:4]))
        elif ftype == GOAWAY:
            for stream in self.streams.values():
                stream.inbox.put_nowait(None)
        # SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do for port-forward

    def _data(self, sid: int, flags: int, payload: bytes) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return                       # reset or unknown: dropped, as the draft says
        if payload:
            stream.inbox.put_nowait(payload)
        if flags & FLAG_FIN:
            stream.inbox.put_nowait(None)

    async def _write(self, frame: bytes) -> None:
        async with self._lock:
            await self._send(frame)

    async def reply(self, sid: int) -> None:
        async with self._lock:         # the compressor's state follows the order frames are sent in
            block = self._deflate.compress(encode_headers({})) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            await self._send(control(SYN_REPLY, 0, struct.pack(">I", sid) + block))

    async def data(self, stream: Stream, data: bytes = b"", fin: bool = False) -> None:
        if stream.closed_by_us:
            return
        for i in range(0, len(data), MAX_DATA):
            chunk = data[i:i + MAX_DATA]
            await self._write(struct.pack(">II", stream.id, len(chunk)) + chunk)
        if fin:
            stream.closed_by_us = True
            await self._write(struct.pack(">II", stream.id, FLAG_FIN << 24))

    async def reset(self, stream: Stream, status: int = CANCEL) -> None:
        stream.closed_by_us = True
        self.streams.pop(stream.id, None)
        await self._write(control(RST_STREAM, 0, struct.pack(">II", stream.id, status)))

    async def goaway(self, status: int = PROTOCOL_ERROR) -> None:
        await self._write(control(GOAWAY, 0, struct.pack(">II", max(self.streams, default=0), status)))
