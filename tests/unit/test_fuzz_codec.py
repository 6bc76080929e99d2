"""Fuzzing the manifest path: bytes -> safeyaml -> codec -> defaulting ->
validation must end in an object or in one of the project's own errors
(machinery.errors.KctlError), never anything else; a valid object survives
encode -> decode unchanged. Budget and long mode: tests/unit/fuzzing.py."""
from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from machinery import codec, defaults, errors, safeyaml, validation
from tests.unit import fuzzing
from tests.unit.fuzzing import FUZZ, Slowest

SLOW = {name: Slowest(name) for name in ("bytes", "mutated-text", "mutated-doc", "roundtrip")}
MANIFESTS = fuzzing.real_manifests()


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    for s in SLOW.values():
        print(s.report())


def through_everything(data) -> None:
    """What `kctl apply -f` and the apiserver do with a manifest."""
    for doc in codec.load_documents(data, "fuzz"):
        obj = codec.from_dict(doc)
        defaults.apply_defaults(obj)
        errs = validation.validate(obj)
        if errs:
            msg = errors.Invalid.of("X", "n", errs).message
            assert len(msg) < 16 * 1024, "an error message grew with its input"
        codec.to_dict(obj)


def allowed(fn, data) -> None:
    try:
        fn(data)
    except fuzzing.ALLOWED:
        pass


def test_there_are_real_manifests_to_mutate():
    assert len(MANIFESTS) >= 10


@FUZZ
@given(st.binary(max_size=2048))
@example(b"\xef\xbb\xbf---\n")
@example(b"a: &x [*x]")
@example(b"\x00")
@example(b"- [" * 200)
def test_random_bytes(data):
    with SLOW["bytes"].timed(data):
        allowed(through_everything, data)


@st.composite
def mutated_text(draw):
    _, text = draw(st.sampled_from(MANIFESTS))
    raw = bytearray(text.encode())
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, max(len(raw) - 1, 0)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        if op == "flip" and raw:
            raw[i] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[i:i] = draw(st.sampled_from([b"&a ", b"*a", b"[", b"{", b": ", b"\n  ", b"- ", b"---\n",
                                             b"\x00", b"\xff", b"!!binary ", b"<<: ", b"'", b'"']))
        elif op == "delete":
            del raw[i:i + draw(st.integers(1, 16))]
        else:
            raw[i:i] = raw[i:i + draw(st.integers(1, 64))]
    return bytes(raw)


@FUZZ
@given(mutated_text())
def test_mutated_manifest_text(data):
    with SLOW["mutated-text"].timed(data):
        allowed(through_everything, data)


def _paths(v, path=()):
    yield path
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, path + (i,))


@st.composite
def mutated_doc(draw):
    _, text = draw(st.sampled_from(MANIFESTS))
    docs = safeyaml.load_all(text)
    doc = draw(st.sampled_from(docs))
    paths = [p for p in _paths(doc) if p]
    for _ in range(draw(st.integers(1, 4))):
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            op = draw(st.sampled_from(["set", "delete", "add"]))
            if op == "set":
                parent[path[-1]] = draw(fuzzing.json_values)
            elif op == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(fuzzing.json_values)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


@FUZZ
@given(mutated_doc())
def test_mutated_manifest_documents(doc):
    with SLOW["mutated-doc"].timed(doc):
        try:
            through_everything(json.dumps(doc))
        except fuzzing.ALLOWED:
            pass


@FUZZ
@given(fuzzing.any_message)
@example(codec.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x\x85y"}}))
@example(codec.from_dict({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"targetPort": 0}]}}))
@example(codec.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "N"}}))
def test_valid_objects_round_trip(msg):
    with SLOW["roundtrip"].timed(msg):
        text = codec.to_yaml(codec.to_dict(msg))
        [doc] = codec.load_documents(text)
        again = codec.from_dict(doc)
        assert again == msg
        assert codec.from_dict(json.loads(codec.to_json(codec.to_dict(again)))) == msg


@pytest.mark.parametrize("path", fuzzing.corpus("codec-"), ids=lambda p: p.name)
def test_corpus(path):
    """Inputs that once failed (kept as regression cases)."""
    allowed(through_everything, path.read_bytes())
