"""Several apiservers behind one Client: which one a call goes to, and when
it moves on to the next (machinery/client.py builds on this).

An HA control plane runs one apiserver per control-plane machine, all on
one etcd cluster; every client is given all of them (`--apiserver
a:6443,b:6443,c:6443`, or the kubeconfig's `kctl.dev/grpc` `servers`).

Why one gRPC channel per endpoint and our own choice between them, rather
than gRPC's multi-address target (`ipv4:a:6443,b:6443`): gRPC's pick_first
moves on only when the connection is lost, so an apiserver that is up but
cut from etcd (it answers UNAVAILABLE on a healthy connection) would keep
every call; round_robin spreads calls over all of them, including that
one. And whether a failed write may be sent again depends on *how* it
failed, which only the caller can judge. A channel per endpoint with a
current index is simple to reason about: every call and watch goes to the
current endpoint; a failure moves the index on for everyone.

The rules:

* A call fails over when the endpoint answers UNAVAILABLE: connection
  refused, the connection lost, or the apiserver itself saying its etcd is
  unreachable. DEADLINE_EXCEEDED (a silent apiserver) moves the index on
  too, so the next call goes elsewhere, but the call is not retried (its
  deadline is spent); so does a call its caller cancels after it waited
  more than SILENT (1 s; apiserver calls answer in milliseconds): leader
  election gives up on a renewal after renew_deadline/2, and an apiserver
  cut off by a partition, whose TCP connection looks alive until keepalive
  ends it (~30 s), must not get the next renewal. Several tasks failing at once move it only once (`advance(i)`
  moves only while i is current).
* A read (get, list, version, a review) is tried again at once on the next
  endpoint, each endpoint at most once per call, all within the call's one
  deadline: with every apiserver down it fails as fast as with one.
* A write is tried again only when it surely was not sent: the channel
  could not connect (gRPC's "failed to connect to all addresses", or no
  connection within CONNECT_TIMEOUT). Any other failure goes up as the
  ApiError it is, as with a single apiserver: the write may have been
  applied, the caller reads and decides (leader election reads the Lease
  again on its next retry, controllers requeue).
* Before a call, a channel still connecting gets CONNECT_TIMEOUT (the last
  endpoint of the round: the rest of the deadline), so a machine that
  drops packets costs seconds, not the whole deadline; a channel in
  TRANSIENT_FAILURE is called at once and gRPC fails it fast with its own
  reason. Reconnect back-off is capped at 5 s (RECONNECT_OPTIONS) so a
  restarted apiserver is used again soon.
* A watch (`watch()`) resumes on the next endpoint from the resourceVersion
  of the last event it delivered (events and BOOKMARKs): the other
  apiserver's watch cache sends only events after it (no gap, no
  duplicate), or answers Expired, which goes up (informers relist). A watch
  that started without a resourceVersion (the current state as ADDED
  events) cannot resume once it delivered something: the error goes up.
  The events an endpoint delivered reset its failure count; a watch gives
  up once every endpoint failed in a row.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable, Sequence

import grpc

from machinery import errors
from machinery.pb import api_pb2, api_pb2_grpc

CONNECT_TIMEOUT = 5.0
SILENT = 1.0             # a unary call its caller cancels after waiting longer: move on
# Not grpc.min_reconnect_backoff_ms: gRPC core uses it as the deadline of each
# connection attempt (subchannel min_connect_timeout, default 20 s). At 500 ms a
# TLS handshake with a busy apiserver (a control plane VM under QEMU TCG) timed
# out "before receiving SETTINGS frame" and failed the Vagrant provisioning.
RECONNECT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5_000)]
CONNECT_FAILED = "failed to connect to all addresses"
READY, FAILURE = grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE
SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN

Translate = Callable[[grpc.aio.AioRpcError, str], errors.ApiError]


def normalize_target(server: str) -> str:
    """Accept `host:port`, `grpc://host:port`, `http(s)://host:port`."""
    for prefix in ("grpc://", "http://", "https://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    return server.rstrip("/")


def parse(target: str | Sequence[str]) -> list[str]:
    """The endpoints of `a:6443,b:6443` (or a list of them), normalized, in
    order, each once. Raises ConfigError when there is none."""
    items = target.split(",") if isinstance(target, str) else [str(t) for t in target]
    out: list[str] = []
    for item in items:
        t = normalize_target(item.strip())
        if t and t not in out:
            out.append(t)
    if not out:
        raise errors.ConfigError(f"no apiserver address in {target!r} (want HOST:PORT[,HOST:PORT...])")
    return out


def fails_over(exc: grpc.aio.AioRpcError) -> bool:
    """The endpoint is down or cannot serve: use the next one from now on."""
    return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def not_sent(exc: grpc.aio.AioRpcError) -> bool:
    """The call surely never reached an apiserver (no connection)."""
    return exc.code() == grpc.StatusCode.UNAVAILABLE and CONNECT_FAILED in (exc.details() or "")


def retried(exc: grpc.aio.AioRpcError, read: bool) -> bool:
    """Whether a call that failed with exc is tried again on the next endpoint."""
    return exc.code() == grpc.StatusCode.UNAVAILABLE and (read or not_sent(exc))


class Unreachable(grpc.aio.AioRpcError):
    """No connection to an endpoint within the connect timeout: not sent."""

    def __init__(self, target: str, timeout: float):
        super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                         f"{CONNECT_FAILED}: no connection to {target} within {timeout:g}s")


class Endpoints:
    """The channels to every endpoint and the current index (see the module docstring)."""

    def __init__(self, targets: Sequence[str], make_channel: Callable[[str], grpc.aio.Channel],
                 connect_timeout: float = CONNECT_TIMEOUT, make_stub=api_pb2_grpc.ApiStub):
        self.targets = list(targets)
        self.connect_timeout = connect_timeout
        self._make_stub = make_stub
        self.current = 0
        self.channels: list[grpc.aio.Channel] = []
        self.stubs: list[api_pb2_grpc.ApiStub] = []
        self.renew(make_channel)

    def renew(self, make_channel: Callable[[str], grpc.aio.Channel]) -> list[grpc.aio.Channel]:
        """New channels to every endpoint (new credentials); returns the old ones to close."""
        old = self.channels
        self.channels = [make_channel(t) for t in self.targets]
        self.stubs = [self._make_stub(c) for c in self.channels]
        return old

    def advance(self, failed: int) -> None:
        """Endpoint `failed` failed: move on, unless another task already did."""
        if self.current == failed:
            self.current = (failed + 1) % len(self.targets)

    def round(self) -> list[int]:
        """Each endpoint once, the current first."""
        n = len(self.targets)
        return [(self.current + k) % n for k in range(n)]

    async def connected(self, i: int, timeout: float | None) -> bool:
        """Wait while endpoint i's channel is idle or connecting (at most
        `timeout`); False if it still is. READY or TRANSIENT_FAILURE: True
        (a call then fails fast with gRPC's own reason)."""
        ch = self.channels[i]
        state = ch.get_state(try_to_connect=True)
        try:
            async with asyncio.timeout(timeout):
                while state not in (READY, FAILURE, SHUTDOWN):
                    await ch.wait_for_state_change(state)
                    state = ch.get_state(try_to_connect=True)
        except TimeoutError:
            return False
        return True

    def _connect_timeout(self, remaining: float | None, last: bool) -> float | None:
        if last or len(self.targets) == 1:
            return remaining
        return self.connect_timeout if remaining is None else min(self.connect_timeout, remaining)

    async def _attempt(self, i: int, method: str, request, remaining: float | None, last: bool):
        t = self._connect_timeout(remaining, last)
        if not await self.connected(i, t):
            raise Unreachable(self.targets[i], t)
        return await getattr(self.stubs[i], method)(request, timeout=remaining)

    async def call(self, method: str, request, *, read: bool, timeout: float | None, translate: Translate):
        """One unary call of the Api service with failover; raises the
        translated ApiError of the last endpoint tried."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        order = self.round()
        for n, i in enumerate(order):
            started = loop.time()
            remaining = None if deadline is None else deadline - started
            try:
                return await self._attempt(i, method, request, remaining, n == len(order) - 1)
            except asyncio.CancelledError:
                if loop.time() - started > SILENT:
                    self.advance(i)          # the caller gave up on a silent apiserver
                raise
            except grpc.aio.AioRpcError as exc:
                if fails_over(exc):
                    self.advance(i)
                out_of_time = remaining is not None and deadline - loop.time() <= 0
                if n == len(order) - 1 or out_of_time or not retried(exc, read):
                    raise translate(exc, self.targets[i]) from exc

    async def watch(self, request: api_pb2.WatchRequest, translate: Translate) -> AsyncIterator[api_pb2.WatchEvent]:
        """The Watch stream, resumed on the next endpoint after a failover."""
        req = api_pb2.WatchRequest()
        req.CopyFrom(request)
        resumable = req.resource_version not in ("", "0")
        delivered = failures = 0
        while True:
            i = self.current
            try:
                if not await self.connected(i, self._connect_timeout(None, False)):
                    raise Unreachable(self.targets[i], self.connect_timeout)
                stub = self.stubs[i]
                call = stub.Watch(req)
                try:
                    async for ev in call:
                        failures, delivered = 0, delivered + 1
                        if ev.resource_version:
                            req.resource_version = ev.resource_version
                        yield ev
                except asyncio.CancelledError:
                    if not self._closed_by_renew(stub) or (delivered and not resumable):
                        raise
                    continue        # its channel was closed after renew(): go on, on the new one
                finally:
                    call.cancel()
                return
            except grpc.aio.AioRpcError as exc:
                if not fails_over(exc):
                    raise translate(exc, self.targets[i]) from exc
                self.advance(i)
                failures += 1
                if failures >= len(self.targets) or (delivered and not resumable):
                    raise translate(exc, self.targets[i]) from exc

    def _closed_by_renew(self, stub) -> bool:
        """A watch stream cancelled because renew() replaced its channel (and
        Client.rotate closed the old one after its grace), not because the
        task reading it is being cancelled: gRPC reports both as
        CancelledError."""
        task = asyncio.current_task()
        return stub not in self.stubs and not (task is not None and task.cancelling())

    async def close(self, channels: Sequence[grpc.aio.Channel] | None = None) -> None:
        for ch in self.channels if channels is None else channels:
            await ch.close()
