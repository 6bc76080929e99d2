"""Fuzzing kctl.v1.Api on a real apiserver (loopback, its own etcd):
random objects of every kind through Create/Update/UpdateStatus, random
kinds, names, selectors, limits, tokens and resourceVersions through
Get/List/Delete/Watch, and raw random bytes as request messages. Every
answer is a success or an error with the kctl.v1.Status of a deliberate
ApiError; never INTERNAL/UNKNOWN (an unexpected exception in the server),
and the apiserver logs no traceback. Budget: tests/unit/fuzzing.py."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from hypothesis import given
from hypothesis import strategies as st

from machinery import errors, kinds
from machinery.pb import api_pb2, api_pb2_grpc
from tests.unit import fuzzing
from tests.unit.fuzzing import FUZZ, Slowest

SLOW = Slowest("grpc")
BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
words = st.one_of(st.sampled_from(["", "default", "kube-system", "x", "a.b", "-", "*", "pods", "Pod"]),
                  st.text(max_size=30))
kind_names = st.one_of(st.sampled_from([k.kind for k in kinds.KINDS] + [k.plural for k in kinds.KINDS]), words)
selectors = st.one_of(st.sampled_from(["", "a=b", "a in (x,y)", "!a", "a!=", "metadata.name=x",
                                       "spec.nodeName=n1", "a==b,c", "(", "a in x"]), st.text(max_size=30))


@pytest.fixture(scope="module")
def channel(shared_apiserver):
    ch = shared_apiserver.channel()
    yield ch
    ch.close()
    print(SLOW.report())
    log = shared_apiserver.log_tail(100_000)
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def stub(channel):
    return api_pb2_grpc.ApiStub(channel)


def call(fn, request, stream=False):
    with SLOW.timed(request):
        try:
            if stream:
                it = fn(request, timeout=0.3)
                try:
                    for _ in it:
                        pass
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise
                return
            fn(request, timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() not in BAD_CODES, exc.details()
            err = errors.from_rpc_error(exc)
            assert isinstance(err, errors.ApiError)
            assert len(err.message) < 16 * 1024


def packed(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


@st.composite
def objects(draw):
    msg = draw(fuzzing.any_message)
    if draw(st.booleans()):                     # often a plausible identity, so some are accepted
        msg.metadata.name = draw(st.sampled_from(["fz-a", "fz-b", "fz-c"]))
        if kinds.of(msg).namespaced:
            msg.metadata.namespace = "default"
    return msg


@FUZZ
@given(objects(), st.sampled_from(["Create", "Update", "UpdateStatus"]), st.booleans())
def test_random_objects(stub, obj, verb, dry_run):
    call(getattr(stub, verb), api_pb2.CreateRequest(object=packed(obj), dry_run=dry_run)
         if verb == "Create" else api_pb2.UpdateRequest(object=packed(obj), dry_run=dry_run))


@FUZZ
@given(kind_names, words, words, selectors, selectors, st.integers(-5, 10**12), words,
       st.sampled_from(["Get", "List", "Delete", "Watch"]), st.text(max_size=12))
def test_random_reads_and_deletes(stub, kind, ns, name, labels, fields, limit, token, verb, rv):
    if verb == "Get":
        call(stub.Get, api_pb2.GetRequest(kind=kind, namespace=ns, name=name))
    elif verb == "List":
        call(stub.List, api_pb2.ListRequest(kind=kind, namespace=ns, label_selector=labels,
                                            field_selector=fields, limit=limit, continue_token=token))
    elif verb == "Delete":
        call(stub.Delete, api_pb2.DeleteRequest(kind=kind, namespace=ns, name=name, dry_run=True,
                                                propagation_policy=token[:12]))
    else:
        call(stub.Watch, api_pb2.WatchRequest(kind=kind, namespace=ns, label_selector=labels,
                                              field_selector=fields, resource_version=rv), stream=True)


@FUZZ
@given(st.binary(max_size=512), st.sampled_from(["Create", "Update", "Get", "List", "Delete", "BindBatch"]))
def test_random_bytes_as_requests(channel, data, method):
    """Bytes that may not even parse as the request message."""
    call(channel.unary_unary(f"/kctl.v1.Api/{method}"), data)
