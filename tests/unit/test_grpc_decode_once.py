"""A Create/Update's object is decoded once per call: the auth gate decodes
it to authorize its namespace (apiserver/auth/gate.py) and the servicer
takes that decode over (apiserver/objects.unpack_request / take_unpacked).
Run through a real grpc.aio server with the Gate and the real ApiServicer."""
from __future__ import annotations

import contextlib

import grpc
import pytest

from apiserver import objects
from apiserver.auth import authz
from apiserver.auth.gate import Gate
from apiserver.server import ApiServicer
from harness.objects import new_object
from machinery import errors
from machinery.pb import api_pb2, api_pb2_grpc


class RecordingAuthorizer:
    def __init__(self):
        self.seen = []

    async def authorize(self, a):
        self.seen.append((a.verb, a.namespace, a.resource, a.name))
        return authz.Decision(authz.ALLOW)


class FakeVerbs:
    def __init__(self):
        self.written = []

    @contextlib.asynccontextmanager
    async def measured(self, verb, kind=""):
        yield

    async def create(self, obj, dry_run=False, manager=None):
        self.written.append(obj)
        return obj, []

    async def update(self, obj, *, status=False, dry_run=False, subresource="", manager=None):
        self.written.append(obj)
        return obj, []


@pytest.fixture
async def api(monkeypatch):
    decodes = []
    real = objects.unpack

    def counting(a):
        decodes.append(a.type_url)
        return real(a)
    monkeypatch.setattr(objects, "unpack", counting)
    authorizer, verbs = RecordingAuthorizer(), FakeVerbs()
    server = grpc.aio.server(interceptors=[Gate(authorizer=authorizer)])
    api_pb2_grpc.add_ApiServicer_to_server(ApiServicer(verbs), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield api_pb2_grpc.ApiStub(channel), decodes, authorizer, verbs
    await channel.close()
    await server.stop(0)


@pytest.mark.parametrize("method", ["Create", "Update", "UpdateStatus"])
async def test_the_object_is_decoded_once_for_the_gate_and_the_servicer(api, method):
    stub, decodes, authorizer, verbs = api
    pod = new_object("Pod", "web", "team-a")
    request = (api_pb2.CreateRequest if method == "Create" else api_pb2.UpdateRequest)(object=objects.pack(pod))
    out = await getattr(stub, method)(request)
    assert decodes == [request.object.type_url]
    assert verbs.written == [pod]                              # the servicer got the gate's decode, intact
    verb = "create" if method == "Create" else "update"
    assert authorizer.seen == [(verb, "team-a", "pods", "" if verb == "create" else "web")]
    assert objects.unpack(out.object)[1] == pod


async def test_an_object_that_does_not_decode_is_400_before_authorization(api):
    stub, _, authorizer, verbs = api
    bad = api_pb2.CreateRequest()
    bad.object.type_url = objects.pack(new_object("Pod", "x")).type_url
    bad.object.value = b"\x0a\x09abc"                          # metadata: 9 bytes announced, 3 sent
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Create(bad)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.from_rpc_error(exc.value).message == f"cannot decode {bad.object.type_url}"
    assert authorizer.seen == [] and verbs.written == []


def test_take_unpacked_decodes_an_any_the_gate_did_not():
    first, other = objects.pack(new_object("Pod", "a")), objects.pack(new_object("Pod", "b"))
    _, held = objects.unpack_request(first)
    _, got = objects.take_unpacked(other)
    assert got.metadata.name == "b"
    _, again = objects.take_unpacked(first)      # taken once: what was held was forgotten
    assert again == held and again is not held
