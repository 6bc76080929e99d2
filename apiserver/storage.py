"""etcd access for the apiserver: the only module that imports aetcd.

We use aetcd's generated etcd v3 stubs (`aetcd.rpc`) on a grpc.aio channel
of our own rather than `aetcd.Client`'s convenience methods, because the
apiserver needs what those hide: Range at a revision and with a limit,
keys-only and count-only reads, a deadline on every call, raw KeyValue
messages (no wrapper object per key when listing 10,000 pods), txns whose
failure branch reads keys back, and watch streams it owns (aetcd's shared
Watcher fails every watch of a client at once and has no progress requests).

Concurrency: one grpc.aio channel per etcd member multiplexes every
concurrent call to it. Every unary call carries a deadline (`timeout`), so
a dead etcd becomes errors.Unavailable("etcd unavailable: ...") within that
time instead of a hang. gRPC reconnects a channel by itself (backoff capped
at one second), so recovery after an etcd restart needs nothing from the
caller. Watch streams end with errors.Unavailable when the connection drops
or their member loses its leader; the watch cache re-opens them from the
last revision it saw.

Several members (`--etcd-servers URL,URL,URL`): apiserver.etcdendpoints
keeps the current member and says when a failed call may be tried on the
next one — reads always, a write only when it surely did not reach etcd
(else errors.Unavailable, never acknowledged) — and every call and watch
requires a leader (`hasleader=true`), so a member cut from the quorum is
left at once. A watch that breaks moves `current` on, so the watch cache
re-opens it on another member.

Everything aetcd/grpc raises is translated here into errors.ApiError
subclasses (`raise ... from exc`).

Encryption at rest sits here too, below everything else: with an
`encryption.EncryptionConfig`, every value put under an encrypted prefix
(`/registry/secrets/`) is encrypted on its way into a txn, and every value
read back (get, range, txn reads, watch events and their prev_kv) is
decrypted in place before the caller sees it, so the rest of the apiserver
only ever handles plaintext. A value that cannot be decrypted raises
encryption.TransformError (an InternalError naming the key). Values read
with a key other than the current one are remembered as stale, so that an
update rewrites them even when nothing changed (key rotation).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Iterable

import grpc
from aetcd import rpc

from apiserver import etcdendpoints, metrics
from machinery import errors

log = logging.getLogger(__name__)

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 512 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 5_000),   # gRPC core: the deadline of one connection attempt
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_http_proxy", 0),
]

KeyValue = rpc.KeyValue
EVENT_PUT = rpc.Event.PUT
EVENT_DELETE = rpc.Event.DELETE


# ------------------------------------------------------------ op builders

def put(key: bytes, value: bytes, lease: int = 0) -> rpc.RequestOp:
    """`lease`: an etcd lease ID the key is attached to (etcd deletes it when the lease ends); 0: none."""
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def delete(key: bytes) -> rpc.RequestOp:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def get(key: bytes) -> rpc.RequestOp:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


def mod_is(key: bytes, revision: int) -> rpc.Compare:
    """The key was last written at `revision` (0: the key does not exist)."""
    return rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision)


def absent(key: bytes) -> rpc.Compare:
    return rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)


def present(key: bytes) -> rpc.Compare:
    return rpc.Compare(key=key, target=rpc.Compare.VERSION, result=rpc.Compare.GREATER, version=0)


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class Member:
    """One etcd member: its channel and the stubs on it."""

    def __init__(self, address: str, tls):
        self.address = address
        self.channel = (grpc.aio.secure_channel(address, tls, options=CHANNEL_OPTIONS) if tls is not None
                        else grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS))
        self.kv = rpc.KVStub(self.channel)
        self.watch = rpc.WatchStub(self.channel)
        self.maintenance = rpc.MaintenanceStub(self.channel)
        self.lease = rpc.LeaseStub(self.channel)


# ----------------------------------------------------------- translation

def _short(details: str | None) -> str:
    details = (details or "").strip()
    for marker in ("Connection refused", "connection refused", "Deadline Exceeded", "Connection reset",
                   "Socket closed", "failed to connect"):
        if marker in details:
            return marker.lower()
    return details.splitlines()[0][:200] if details else "no answer"


def translate(exc: grpc.aio.AioRpcError, endpoint: str) -> errors.ApiError:
    code, details = exc.code(), exc.details() or ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return errors.Unavailable(f"etcd unavailable: {endpoint}: {_short(details)}")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return errors.Expired(f"etcd: {details}")
    if "request is too large" in details or "too many operations in txn" in details:
        return errors.BadRequest(f"request entity too large for etcd: {details}")
    return errors.ApiError(f"etcd error: {code.name}: {details}")


class Compacted(errors.Expired):
    """A watch start revision below etcd's compaction revision."""

    def __init__(self, requested: int, compact_revision: int, message: str = ""):
        super().__init__(message or f"too old resource version: {requested} ({compact_revision})")
        self.requested = requested
        self.compact_revision = compact_revision


# ---------------------------------------------------------------- storage

class Storage:
    def __init__(self, etcd_servers: str, *, timeout: float = 3.0, encryption=None, tls=None):
        """`etcd_servers`: one URL or a comma list (every member of one cluster).
        `tls`: grpc.ChannelCredentials for an https:// etcd (its CA, the
        apiserver's etcd client certificate), used for every member;
        plaintext otherwise (loopback)."""
        _, addresses = etcdendpoints.parse_servers(etcd_servers)
        self.endpoints = etcdendpoints.Endpoints(addresses, lambda a: Member(a, tls))
        self.timeout = timeout
        self.encryption = encryption               # encryption.EncryptionConfig or None
        self._stale: dict[bytes, int] = {}         # key -> mod_revision read with an old key

    @property
    def endpoint(self) -> str:
        """host:port of the member calls go to now."""
        return self.endpoints.address

    async def close(self) -> None:
        for member in self.endpoints.members:
            await member.channel.close()

    # encryption at rest
    def _seal(self, ops: Iterable[rpc.RequestOp]) -> list[rpc.RequestOp]:
        ops = list(ops)
        if self.encryption is not None:
            for op in ops:
                if op.HasField("request_put"):
                    t = self.encryption.for_key(op.request_put.key)
                    if t is not None:
                        op.request_put.value = t.to_storage(op.request_put.value, op.request_put.key)
        return ops

    def _open(self, kv) -> None:
        if self.encryption is None or not kv.value:
            return
        t = self.encryption.for_key(kv.key)
        if t is not None:
            kv.value, stale = t.from_storage(kv.value, kv.key)
            if stale:
                self._stale[kv.key] = kv.mod_revision

    def stale(self, kv: KeyValue) -> bool:
        """The value was read with a key other than the current one: an update
        must write it again even when nothing changed."""
        rev = self._stale.get(kv.key)
        if rev is not None and rev != kv.mod_revision:
            del self._stale[kv.key]
        return rev == kv.mod_revision

    async def _call(self, operation: str, pick, request, timeout: float | None = None, *, write: bool = False):
        """`pick(member)` is the stub method; `write`: the call may change etcd (retry rules)."""
        started = time.perf_counter()
        try:
            return await self.endpoints.call(pick, request, timeout=timeout or self.timeout, write=write)
        except etcdendpoints.Failed as exc:
            raise translate(exc.rpc_error, exc.address) from exc.rpc_error
        finally:
            metrics.ETCD_DURATION.labels(operation).observe(time.perf_counter() - started)

    # reads
    async def get(self, key: bytes) -> tuple[KeyValue | None, int]:
        """The key's KeyValue (or None) and the store revision of the read."""
        resp = await self._call("get", lambda m: m.kv.Range, rpc.RangeRequest(key=key))
        for kv in resp.kvs:
            self._open(kv)
        return (resp.kvs[0] if resp.kvs else None), resp.header.revision

    async def get_many(self, keys: list[bytes]) -> tuple[list[KeyValue | None], int]:
        """Several keys in one round trip (a read-only txn, ≤ 128 keys)."""
        resp = await self._call("get_many", lambda m: m.kv.Txn, rpc.TxnRequest(success=[get(k) for k in keys]))
        out = [(r.response_range.kvs[0] if r.response_range.kvs else None) for r in resp.responses]
        for kv in out:
            if kv is not None:
                self._open(kv)
        return out, resp.header.revision

    async def range(self, prefix: bytes, *, start: bytes | None = None, revision: int = 0,
                    limit: int = 0, keys_only: bool = False) -> tuple[list[KeyValue], int, bool]:
        """Keys under `prefix` (from `start`), their store revision and whether more remain."""
        req = rpc.RangeRequest(key=start or prefix, range_end=prefix_end(prefix), revision=revision,
                               limit=limit, keys_only=keys_only)
        resp = await self._call("range", lambda m: m.kv.Range, req, timeout=max(self.timeout, 10.0))
        for kv in resp.kvs:
            self._open(kv)
        return list(resp.kvs), resp.header.revision, resp.more

    async def revision(self) -> int:
        resp = await self._call("revision", lambda m: m.kv.Range,
                                rpc.RangeRequest(key=b"/registry/", count_only=True, limit=1))
        return resp.header.revision

    # writes
    async def txn(self, compares: Iterable[rpc.Compare], success: Iterable[rpc.RequestOp],
                  failure: Iterable[rpc.RequestOp] = (), operation: str = "txn") -> rpc.TxnResponse:
        req = rpc.TxnRequest(compare=list(compares), success=self._seal(success), failure=self._seal(failure))
        write = any(not op.HasField("request_range") for op in (*req.success, *req.failure))
        resp = await self._call(operation, lambda m: m.kv.Txn, req, write=write)
        for r in resp.responses:
            for kv in r.response_range.kvs:
                self._open(kv)
        return resp

    async def grant_lease(self, ttl: int) -> int:
        """A new etcd lease of `ttl` seconds; its ID."""
        resp = await self._call("lease_grant", lambda m: m.lease.LeaseGrant, rpc.LeaseGrantRequest(TTL=ttl),
                                write=True)
        if resp.error:
            raise errors.ApiError(f"etcd refused a lease of {ttl}s: {resp.error}")
        return resp.ID

    async def compact(self, revision: int) -> None:
        await self._call("compact", lambda m: m.kv.Compact, rpc.CompactionRequest(revision=revision, physical=True),
                         timeout=max(self.timeout, 30.0), write=True)

    async def version(self) -> str:
        resp = await self._call("status", lambda m: m.maintenance.Status, rpc.StatusRequest())
        return resp.version

    # watch
    async def watch(self, prefix: bytes, start_revision: int, *,
                    progress_interval: float | None = None) -> AsyncIterator[rpc.WatchResponse]:
        """WatchResponses for keys under `prefix` from `start_revision` on, with
        prev_kv; the first one is etcd's `created` answer. Raises Compacted
        when etcd has compacted past the start, and errors.Unavailable when
        the stream breaks or its member loses its leader (the stream requires
        one); the next watch then goes to the next member. With
        `progress_interval`, asks etcd for a progress notification that
        often, so an idle stream still tells the caller the current revision
        (empty `events`)."""
        index = self.endpoints.current
        member = self.endpoints.members[index]
        call = member.watch.Watch(metadata=etcdendpoints.REQUIRE_LEADER)
        create = rpc.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix), start_revision=start_revision,
                                        prev_kv=True, progress_notify=progress_interval is not None)
        ticker = None
        try:
            await asyncio.wait_for(call.write(rpc.WatchRequest(create_request=create)), self.timeout)
            first = await asyncio.wait_for(call.read(), self.timeout)
            if first is grpc.aio.EOF:
                raise errors.Unavailable(f"etcd unavailable: {member.address}: watch stream closed")
            if first.compact_revision or first.canceled:
                if first.compact_revision:
                    raise Compacted(start_revision - 1, first.compact_revision)
                raise errors.ApiError(f"etcd refused the watch: {first.cancel_reason}")
            if progress_interval:
                ticker = asyncio.create_task(self._progress(call, progress_interval), name="etcd-watch-progress")
            yield first                          # `created`: the watch is established
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise errors.Unavailable(f"etcd unavailable: {member.address}: watch stream closed")
                if resp.compact_revision:
                    raise Compacted(start_revision - 1, resp.compact_revision)
                if resp.canceled:
                    raise errors.Unavailable(f"etcd cancelled the watch: {resp.cancel_reason or 'no reason'}")
                for ev in resp.events:
                    self._open(ev.kv)
                    if ev.HasField("prev_kv"):
                        self._open(ev.prev_kv)
                yield resp
        except grpc.aio.AioRpcError as exc:
            self.endpoints.failed(index, f"watch: {_short(exc.details())}")
            raise translate(exc, member.address) from exc
        except asyncio.TimeoutError as exc:
            self.endpoints.failed(index, "watch not established in time")
            raise errors.Unavailable(f"etcd unavailable: {member.address}: watch not established in time") from exc
        except errors.Unavailable as exc:
            self.endpoints.failed(index, f"watch: {exc.message}")
            raise
        finally:
            if ticker is not None:
                ticker.cancel()
            call.cancel()

    @staticmethod
    async def _progress(call, interval: float) -> None:
        """Progress requests: quickly at first (etcd answers only once the
        watch has caught up with its history), then every `interval`."""
        request = rpc.WatchRequest(progress_request=rpc.WatchProgressRequest())
        delay = 0.02
        try:
            while True:
                await call.write(request)
                await asyncio.sleep(delay)
                delay = min(delay * 2, interval)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, RuntimeError):
            return
