"""apiserver.limits: the in-flight ceilings over HTTP (429 + Retry-After)
and gRPC (RESOURCE_EXHAUSTED with the Status), corrupt request bytes,
capped warnings, the object size limit, and the watch send timeout."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from apiserver import limits
from apiserver.http import statuses
from machinery import errors, kinds
from machinery.pb import api_pb2, api_pb2_grpc


class Verbs:
    limiter = None


@pytest.fixture
async def http_app():
    limiter = limits.Inflight(max_requests=1, max_mutating=1)
    gate = asyncio.Event()

    async def slow(request):
        await gate.wait()
        return web.json_response({})

    app = web.Application(middlewares=[statuses, *limits.http_middlewares(limiter)])
    app.add_routes([web.get("/api/v1/pods", slow), web.post("/api/v1/pods", slow), web.get("/healthz", slow)])
    async with TestClient(TestServer(app)) as client:
        yield client, gate, limiter


async def test_http_requests_over_the_limit_get_429_with_retry_after(http_app):
    client, gate, limiter = http_app
    first = asyncio.create_task(client.get("/api/v1/pods"))
    while limiter.current[False] == 0:
        await asyncio.sleep(0.01)
    refused = await client.get("/api/v1/pods")
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    body = await refused.json()
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Too many requests, please try again later."
    assert body["details"]["retryAfterSeconds"] == 1
    # mutating requests have their own ceiling; watches and health checks are not counted
    mutating = asyncio.create_task(client.post("/api/v1/pods", data=b"{}"))
    watch = asyncio.create_task(client.get("/api/v1/pods?watch=true"))
    health = asyncio.create_task(client.get("/healthz"))
    while limiter.current[True] == 0:
        await asyncio.sleep(0.01)
    gate.set()
    for t in (first, mutating, watch, health):
        assert (await t).status == 200
    assert limiter.current == {False: 0, True: 0}
    assert limiter.rejected == 1


class SlowApi(api_pb2_grpc.ApiServicer):
    def __init__(self):
        self.gate = asyncio.Event()

    async def Get(self, request, context):
        await self.gate.wait()
        return api_pb2.ObjectResponse()

    async def Version(self, request, context):
        return api_pb2.VersionResponse(git_version="v")


@pytest.fixture
async def grpc_api():
    limiter = limits.Inflight(max_requests=1, max_mutating=1)
    server = grpc.aio.server(interceptors=[limits.GrpcInflight(limiter)])
    api = SlowApi()
    api_pb2_grpc.add_ApiServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield api, api_pb2_grpc.ApiStub(channel), channel, limiter
    await channel.close()
    await server.stop(0)


async def test_grpc_requests_over_the_limit_are_resource_exhausted_with_the_status(grpc_api):
    api, stub, _, limiter = grpc_api
    first = asyncio.ensure_future(stub.Get(api_pb2.GetRequest(kind="Pod")))
    while limiter.current[False] == 0:
        await asyncio.sleep(0.01)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Version(api_pb2.VersionRequest())
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = errors.from_rpc_error(exc.value)
    assert isinstance(err, errors.TooManyRequests) and err.retry_after == 1
    assert err.message == "Too many requests, please try again later."
    api.gate.set()
    await first
    assert (await stub.Version(api_pb2.VersionRequest())).git_version == "v"


async def test_grpc_corrupt_request_bytes_are_bad_request(grpc_api):
    _, _, channel, _ = grpc_api
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await channel.unary_unary("/kctl.v1.Api/Get")(b"\x0a\x09abc")
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.from_rpc_error(exc.value).message == \
        "cannot decode the Get request: the message is not valid protobuf"


def test_warnings_are_capped_like_kube_apiserver():
    out = limits.capped_warnings([f'unknown field "{"x" * 300}"'] + [f"w{i}" for i in range(10_000)])
    assert len(out[0]) == 256 and out[0].endswith("...")
    assert len(out) == limits.MAX_WARNINGS
    assert sum(map(len, limits.capped_warnings(["y" * 200] * 100))) <= limits.MAX_WARNINGS_BYTES


def test_objects_over_etcds_limit_are_413():
    cm = kinds.new("ConfigMap")
    cm.data["a"] = "x" * limits.MAX_OBJECT_BYTES
    with pytest.raises(errors.RequestEntityTooLarge) as exc:
        limits.check_object_size(cm)
    assert exc.value.http_code == 413 and "the limit is 1572864" in exc.value.message
    cm.data["a"] = "x" * 1000
    limits.check_object_size(cm)


async def test_a_write_not_taken_in_time_ends_the_watch():
    verbs = Verbs()
    verbs.limiter = limits.Inflight(watch_send_timeout=0.05)
    never = asyncio.get_running_loop().create_future()
    with pytest.raises(limits.Stalled) as exc:
        await limits.sent_within(never, verbs, "pods")
    assert exc.value.message == "watch of pods closed: the client took no event for 0.05s"
    assert exc.value.http_code == 429 and not never.cancelled()     # the write in flight is left alone
    never.set_result(None)
    await exc.value.settled()
    done = asyncio.get_running_loop().create_future()
    done.set_result(7)
    assert await limits.sent_within(done, verbs, "pods") == 7
