"""Shared pieces of the fuzz tests (tests/unit/test_fuzz_*.py).

Budget: every target runs KCTL_FUZZ_EXAMPLES examples (default 200, a
few seconds each) in the ordinary suite; for a long run set it higher:

    KCTL_FUZZ_EXAMPLES=20000 .venv/bin/pytest -p no:cacheprovider -q -s tests/unit/test_fuzz_*.py

No per-example deadline (the machine is shared; a timed assertion would
flake): each target records the slowest input it saw and prints it at the
end of its module (`-s` shows it), so a slow input is reported, not
hidden. Inputs that once failed are kept in tests/fuzz_corpus/ (one file
per input, replayed by every run) or as `@example`s.

`messages(info)` generates valid-by-type protobuf objects of a kind by
walking its descriptor (strings, numbers, maps, lists, nested messages,
bounded depth), so that codec round trips are tried on shapes nobody wrote
by hand.
"""
from __future__ import annotations

import os
import pathlib
import time
from contextlib import contextmanager

from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from machinery import errors, kinds
from tests import k8s_examples

EXAMPLES = int(os.environ.get("KCTL_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz_corpus"
EXAMPLE_DIRS = [ROOT.parent / "examples", k8s_examples.DIR]   # seeds: those present
ALLOWED = (errors.KctlError,)


class Slowest:
    """The slowest input of a target: `with slowest.timed(input): ...`."""

    def __init__(self, name: str):
        self.name, self.seconds, self.input = name, 0.0, None

    @contextmanager
    def timed(self, value):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            if dt > self.seconds:
                self.seconds, self.input = dt, value

    def report(self) -> str:
        shown = repr(self.input)
        return f"fuzz {self.name}: slowest input {self.seconds * 1000:.1f} ms: {shown[:120]}"


def corpus(prefix: str) -> list[pathlib.Path]:
    return sorted(CORPUS.glob(f"{prefix}*"))


def real_manifests() -> list[tuple[str, str]]:
    out = []
    for d in EXAMPLE_DIRS:
        if d.is_dir():
            out.extend((str(p), p.read_text()) for p in sorted(d.rglob("*.yaml")))
    return out


# ------------------------------------------------------------ strategies

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=False),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)

_SHORT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_INT_RANGES = {FD.TYPE_INT32: (-2**31, 2**31 - 1), FD.TYPE_SINT32: (-2**31, 2**31 - 1),
               FD.TYPE_SFIXED32: (-2**31, 2**31 - 1), FD.TYPE_UINT32: (0, 2**32 - 1),
               FD.TYPE_FIXED32: (0, 2**32 - 1), FD.TYPE_INT64: (-2**63, 2**63 - 1),
               FD.TYPE_SINT64: (-2**63, 2**63 - 1), FD.TYPE_SFIXED64: (-2**63, 2**63 - 1),
               FD.TYPE_UINT64: (0, 2**64 - 1), FD.TYPE_FIXED64: (0, 2**64 - 1)}
_SPECIAL = {"google.protobuf.Timestamp", "google.protobuf.Struct", "google.protobuf.Value",
            "google.protobuf.ListValue", "google.protobuf.Any"}


def _scalar(f):
    if f.type == FD.TYPE_STRING:
        return _SHORT
    if f.type == FD.TYPE_BOOL:
        return st.booleans()
    if f.type in _INT_RANGES:
        return st.integers(*_INT_RANGES[f.type])
    if f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.integers(-1000, 1000).map(float)
    if f.type == FD.TYPE_BYTES:
        return st.binary(max_size=16)
    if f.type == FD.TYPE_ENUM:
        return st.sampled_from([v.number for v in f.enum_type.values])
    return st.nothing()


@st.composite
def _fill(draw, desc, depth: int):
    """A dict of field name -> python value for message `desc`."""
    if desc.full_name == "kctl.v1.IntOrString":     # always one of the two, as in Kubernetes
        return draw(st.one_of(st.builds(lambda i: {"int_val": i}, st.integers(-2**31, 2**31 - 1)),
                              st.builds(lambda t: {"str_val": t}, _SHORT)))
    out = {}
    fields = [f for f in desc.fields if depth > 0 or f.type != FD.TYPE_MESSAGE]
    chosen = draw(st.lists(st.sampled_from(fields), max_size=4, unique=True)) if fields else []
    for f in chosen:
        if f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            vf = f.message_type.fields_by_name["value"]
            if vf.type == FD.TYPE_MESSAGE:
                if vf.message_type.full_name in _SPECIAL:
                    continue
                vals = _fill(vf.message_type, depth - 1)
            else:
                vals = _scalar(vf)
            out[f.name] = draw(st.dictionaries(_SHORT, vals, max_size=3))
        elif f.type == FD.TYPE_MESSAGE:
            if f.message_type.full_name in _SPECIAL:
                continue
            inner = _fill(f.message_type, depth - 1)
            out[f.name] = draw(st.lists(inner, max_size=2)) if f.is_repeated else draw(inner)
        else:
            out[f.name] = draw(st.lists(_scalar(f), max_size=3)) if f.is_repeated else draw(_scalar(f))
    return out


def _build(msg, values: dict):
    for name, v in values.items():
        f = msg.DESCRIPTOR.fields_by_name[name]
        target = getattr(msg, name)
        if f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            vf = f.message_type.fields_by_name["value"]
            for k, x in v.items():
                if vf.type == FD.TYPE_MESSAGE:
                    _build(target[k], x)
                else:
                    target[k] = x
        elif f.type == FD.TYPE_MESSAGE:
            if f.is_repeated:
                for x in v:
                    _build(target.add(), x)
            else:
                target.SetInParent()
                _build(target, v)
        elif f.is_repeated:
            target.extend(v)
        else:
            setattr(msg, name, v)
    return msg


def messages(info: kinds.KindInfo, depth: int = 4):
    """Objects of one kind with apiVersion/kind set and random fields."""
    def make(values):
        msg = _build(info.message(), values)
        msg.api_version, msg.kind = info.api_version, info.kind
        return msg
    return _fill(info.message.DESCRIPTOR, depth).map(make)


any_message = st.sampled_from(kinds.KINDS).flatmap(messages)
