"""The endpoint selection and retry rules of machinery/endpoints.py, with
fake channels and stubs: which failures move the current endpoint on,
which calls are sent again, and how a watch resumes."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from machinery import endpoints, errors
from machinery.pb import api_pb2

READY, CONNECTING = grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.CONNECTING
SENT_LOST = "Stream removed (Socket closed)"
REFUSED = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused"


def rpc_error(code=grpc.StatusCode.UNAVAILABLE, details=SENT_LOST):
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


HANG = object()


class FakeChannel:
    def __init__(self, target, state=READY):
        self.target, self.state, self.closed = target, state, False

    def get_state(self, try_to_connect=False):
        return self.state

    async def wait_for_state_change(self, state):
        await asyncio.Event().wait()           # never connects

    async def close(self):
        self.closed = True


class FakeStream:
    def __init__(self, events, error):
        self.events, self.error, self.cancelled = events, error, False

    async def _gen(self):
        for ev in self.events:
            yield ev
        if self.error is not None:
            raise self.error

    def __aiter__(self):
        return self._gen()

    def cancel(self):
        self.cancelled = True


class FakeStub:
    """Answers each method from a script: a response, an AioRpcError to raise, or HANG."""

    def __init__(self, channel):
        self.channel = channel
        self.script: dict[str, object] = {}
        self.calls: list[tuple[str, object]] = []

    def __getattr__(self, method):
        async def call(request, timeout=None):
            self.calls.append((method, request))
            out = self.script[method]
            if out is HANG:
                await asyncio.Event().wait()
            if isinstance(out, BaseException):
                raise out
            return out
        return call

    def Watch(self, request):                  # noqa: N802 - gRPC's method name
        self.calls.append(("Watch", api_pb2.WatchRequest.FromString(request.SerializeToString())))
        events, error = self.script["Watch"]
        return FakeStream(events, error)


def make(n=3, states=None, connect_timeout=5.0):
    states = states or {}
    ep = endpoints.Endpoints([f"h{i}:6443" for i in range(n)],
                             lambda t: FakeChannel(t, states.get(t, READY)),
                             connect_timeout=connect_timeout, make_stub=FakeStub)
    return ep, ep.stubs


def translate(exc, target):
    return errors.from_rpc_error(exc, target)


async def call(ep, method="Get", read=True, timeout=5.0):
    return await ep.call(method, api_pb2.GetRequest(name="x"), read=read, timeout=timeout, translate=translate)


def test_parse_a_comma_list_or_a_list():
    assert endpoints.parse("a:6443, grpc://b:6443,https://c:6443/") == ["a:6443", "b:6443", "c:6443"]
    assert endpoints.parse(["a:6443", "a:6443", "b:6443"]) == ["a:6443", "b:6443"]
    with pytest.raises(errors.ConfigError, match="no apiserver address"):
        endpoints.parse(" , ")


async def test_a_read_answered_unavailable_goes_to_the_next_endpoint():
    ep, stubs = make()
    stubs[0].script["Get"] = rpc_error(details="etcd unavailable: deadline")   # an apiserver cut from etcd
    stubs[1].script["Get"] = "answer"
    assert await call(ep) == "answer"
    assert ep.current == 1
    assert await call(ep) == "answer" and len(stubs[0].calls) == 1      # later calls start at the new current


async def test_a_write_that_may_have_been_sent_is_not_sent_again():
    ep, stubs = make()
    stubs[0].script["Create"] = rpc_error(details=SENT_LOST)
    stubs[1].script["Create"] = "created"
    with pytest.raises(errors.Unavailable):
        await call(ep, "Create", read=False)
    assert stubs[1].calls == [] and ep.current == 1                    # not retried, but the next call moves on


async def test_a_write_that_could_not_connect_goes_to_the_next_endpoint():
    ep, stubs = make()
    stubs[0].script["Create"] = rpc_error(details=REFUSED)
    stubs[1].script["Create"] = "created"
    assert await call(ep, "Create", read=False) == "created"


async def test_an_endpoint_still_connecting_after_the_connect_timeout_is_skipped():
    ep, stubs = make(states={"h0:6443": CONNECTING}, connect_timeout=0.05)
    stubs[1].script["Create"] = "created"
    assert await call(ep, "Create", read=False) == "created"
    assert stubs[0].calls == [] and ep.current == 1


async def test_a_deadline_moves_on_without_retrying():
    ep, stubs = make()
    stubs[0].script["Get"] = rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    stubs[1].script["Get"] = "answer"
    with pytest.raises(errors.Timeout):
        await call(ep)
    assert stubs[1].calls == [] and ep.current == 1


async def test_an_api_error_neither_retries_nor_moves_on():
    ep, stubs = make()
    stubs[0].script["Get"] = rpc_error(grpc.StatusCode.NOT_FOUND, 'configmaps "x" not found')
    with pytest.raises(errors.NotFound):
        await call(ep)
    assert ep.current == 0 and stubs[1].calls == []


async def test_every_endpoint_is_tried_once_then_the_last_error_goes_up():
    ep, stubs = make()
    for s in stubs:
        s.script["Get"] = rpc_error(details=REFUSED)
    with pytest.raises(errors.Unavailable, match="h2:6443"):
        await call(ep)
    assert [len(s.calls) for s in stubs] == [1, 1, 1]


async def test_a_call_its_caller_gave_up_on_moves_on_after_a_silence(monkeypatch):
    monkeypatch.setattr(endpoints, "SILENT", 0.05)
    ep, stubs = make()
    stubs[0].script["Get"] = HANG                  # an apiserver behind a partition never answers
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):          # given up sooner: stays
            await call(ep)
    assert ep.current == 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await call(ep)
    assert ep.current == 1


def test_concurrent_failures_move_the_current_endpoint_once():
    ep, _ = make()
    ep.advance(0)
    ep.advance(0)                               # a second task saw the same endpoint fail
    assert ep.current == 1 and ep.round() == [1, 2, 0]


def event(type_, rv):
    return api_pb2.WatchEvent(type=type_, resource_version=rv)


async def collect(ep, rv):
    req = api_pb2.WatchRequest(kind="ConfigMap", resource_version=rv)
    return [(e.type, e.resource_version) async for e in ep.watch(req, translate)]


async def test_a_watch_resumes_on_the_next_endpoint_from_the_last_resource_version():
    ep, stubs = make()
    stubs[0].script["Watch"] = ([event("ADDED", "5"), event("BOOKMARK", "7")], rpc_error(details=SENT_LOST))
    stubs[1].script["Watch"] = ([event("MODIFIED", "8")], None)
    assert await collect(ep, "4") == [("ADDED", "5"), ("BOOKMARK", "7"), ("MODIFIED", "8")]
    assert stubs[1].calls[0][1].resource_version == "7"


async def test_a_watch_gives_up_once_every_endpoint_failed_in_a_row():
    ep, stubs = make(2)
    stubs[0].script["Watch"] = ([event("ADDED", "5")], rpc_error(details=SENT_LOST))
    stubs[1].script["Watch"] = ([], rpc_error(details=REFUSED))
    with pytest.raises(errors.Unavailable):
        await collect(ep, "4")
    assert [r.resource_version for _, r in stubs[0].calls + stubs[1].calls] == ["4", "5"]


async def test_a_watch_of_the_current_state_cannot_resume_once_it_delivered():
    ep, stubs = make()
    stubs[0].script["Watch"] = ([event("ADDED", "3")], rpc_error(details=SENT_LOST))
    with pytest.raises(errors.Unavailable):
        await collect(ep, "")
    assert stubs[1].calls == []


async def test_expired_goes_up_without_failover():
    ep, stubs = make()
    stubs[0].script["Watch"] = ([], rpc_error(grpc.StatusCode.OUT_OF_RANGE, "too old resource version: 4 (9)"))
    with pytest.raises(errors.Expired):
        await collect(ep, "4")
    assert ep.current == 0


async def test_renew_replaces_every_channel_and_returns_the_old_ones():
    ep, _ = make()
    old = list(ep.channels)
    assert ep.renew(lambda t: FakeChannel(t)) == old
    assert all(a is not b for a, b in zip(old, ep.channels))
    await ep.close(old)
    assert all(c.closed for c in old)


def test_connection_attempts_get_grpc_default_deadline():
    """grpc.min_reconnect_backoff_ms is gRPC core's deadline for one connection
    attempt: at 500 ms a slow TLS handshake (a QEMU TCG control plane) failed
    the Vagrant provisioning. Clients leave it at gRPC's 20 s; the apiserver's
    etcd channels give an attempt seconds, not 100 ms."""
    from apiserver import storage
    from machinery import client
    assert "grpc.min_reconnect_backoff_ms" not in dict(client.CHANNEL_OPTIONS)
    assert dict(storage.CHANNEL_OPTIONS)["grpc.min_reconnect_backoff_ms"] >= 5_000


class CancelledStream(FakeStream):
    """A stream whose channel gets closed: grpc.aio raises CancelledError in the reader."""

    async def _gen(self):
        for ev in self.events:
            yield ev
        raise asyncio.CancelledError()


async def test_a_watch_on_a_channel_closed_after_renew_resumes_on_the_new_channel():
    ep, stubs = make()
    stubs[0].Watch = lambda req: (stubs[0].calls.append(("Watch", req)),
                                  CancelledStream([event("ADDED", "5")], None))[1]
    got = []
    async for e in ep.watch(api_pb2.WatchRequest(kind="ConfigMap", resource_version="4"), translate):
        got.append((e.type, e.resource_version))
        if len(got) == 1:                   # Client.rotate: new channels; the old one closes later
            ep.renew(lambda t: FakeChannel(t))
            ep.stubs[0].script["Watch"] = ([event("MODIFIED", "6")], None)
    assert got == [("ADDED", "5"), ("MODIFIED", "6")]
    assert ep.stubs[0].calls[0][1].resource_version == "5"
    assert ep.current == 0                  # not a failover


async def test_a_watch_whose_reader_is_cancelled_stops():
    ep, stubs = make()
    stubs[0].script["Watch"] = ([event("ADDED", "5")], None)
    stubs[0].Watch = lambda req: CancelledStream([event("ADDED", "5")], None)
    with pytest.raises(asyncio.CancelledError):        # same stub: not a renew, so it goes up
        await collect(ep, "4")
