"""YAML and JSON from people and the network, read with limits: the one
decoder behind `kctl -f`, the apiserver's HTTP bodies and apply patches.

A manifest is small, but YAML lets a small text stand for a huge value:
anchors and aliases ("billion laughs": 600 bytes that expand to 10^8
nodes), or nesting so deep that a recursive walker overflows the stack.
Every input therefore goes through `load_all` / `load_one` / `load_json`,
which refuse, before any Python object is built:

* more than MAX_BYTES (3 MiB, Kubernetes' MaxRequestBodyBytes; also the
  limit on one `-f` file and on one gRPC request, see machinery.client);
* excessive aliasing, by go-yaml's own rule (yaml.v3 decode.go,
  allowedAliasRatio): once a document has decoded more than 1,000 nodes
  and more than 100 of them came from alias expansion, the share of
  alias-expanded nodes may be at most 99% up to 400,000 decoded nodes,
  falling linearly to 10% at 4,000,000. A recursive alias (`&a [*a]`) is
  refused outright;
* nesting deeper than MAX_DEPTH (100) collections; Kubernetes objects
  are rarely deeper than 20, and Python's recursive composer and
  json_format would overflow the interpreter's stack long before
  go-yaml's 10,000;
* text that is not UTF-8 (after a UTF-8 or UTF-16 byte order mark, which
  is dropped or decoded as kubectl does).

The check is one streaming pass over the parser's events (libyaml when
available): it counts nodes, alias expansions (each anchor's expanded
size is known when its node ends) and depth, so nothing is expanded to be
measured. Timestamps stay strings as go-yaml keeps them for JSON; apply
patches (`load_one(..., go_v2=True)`) also read `y`/`n` as booleans like
go-yaml v2 (sigs.k8s.io/yaml).

Every refusal is a `LimitError` (a DecodeError) and every syntax error a
`DecodeError`, each one line naming the source, the document and the rule:
`web.yaml: document 2: yaml: document contains excessive aliasing (more
than 99% of 1001 nodes come from aliases)`.
"""
from __future__ import annotations

import codecs
import json
import re

import yaml

from machinery.errors import DecodeError

MAX_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 100
# go-yaml v3's alias_ratio_range_low/high
_RATIO_LOW, _RATIO_HIGH = 400_000, 4_000_000

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader(_Base):
    """SafeLoader (libyaml when built) keeping timestamps strings, as go-yaml
    does for JSON."""


Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


class GoV2Loader(Loader):
    """Loader that also reads `y`/`n` (any case) as booleans, as go-yaml v2
    does: apply-patch bodies (machinery.patch.yamlbody). Manifests keep
    them strings, so that a data key or label `y` stays one."""
    bool_values = {**yaml.SafeLoader.bool_values, "y": True, "n": False}


GoV2Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


class LimitError(DecodeError):
    """Input refused by a size, alias or depth limit."""


def _where(source: str, doc: int | None = None) -> str:
    parts = [p for p in (source, f"document {doc}" if doc else "") if p]
    return ": ".join(parts) + ": " if parts else ""


def allowed_alias_ratio(decoded: int) -> float:
    """go-yaml v3's allowedAliasRatio."""
    if decoded <= _RATIO_LOW:
        return 0.99
    if decoded >= _RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - _RATIO_LOW) / (_RATIO_HIGH - _RATIO_LOW)


def check_size(data, source: str = "", limit: int = MAX_BYTES) -> None:
    if len(data) > limit:
        raise LimitError(f"{_where(source)}the input is larger than the limit of {limit} bytes")


def to_text(data: bytes | str, source: str = "") -> str:
    """UTF-8 (or BOM-marked UTF-16) bytes as text, refusing anything else;
    a leading UTF-8 BOM is dropped as kubectl drops it."""
    if isinstance(data, str):
        return data[1:] if data.startswith("\ufeff") else data
    check_size(data, source)
    encoding = "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{_where(source)}the input is not valid UTF-8 "
                          f"(invalid byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def yaml_error(exc: yaml.YAMLError, source: str = "") -> DecodeError:
    """A PyYAML error as one line, go-yaml style: `yaml: line 3: <problem>`."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if context and problem and "while" in context:
        problem = f"{problem} ({context})"
    line = f"line {mark.line + 1}: " if mark is not None else ""
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"unacceptable character #x{exc.character:04x}: special characters are not allowed"
        line = ""
    text = f"{_where(source)}yaml: {line}{problem}"
    return DecodeError(text[:500])


def _check_events(text: str, source: str, single: bool) -> None:
    """One pass over the parser events: depth, aliases, recursion."""
    loader = Loader(text)
    doc = 0
    try:
        while True:
            ev = loader.get_event()
            if ev is None or isinstance(ev, yaml.StreamEndEvent):
                return
            if isinstance(ev, yaml.DocumentStartEvent):
                doc += 1
                if single and doc > 1:
                    raise DecodeError(f"{_where(source)}yaml: expected a single document in the stream")
                _check_document(loader, source, doc if not single else None)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, _where(source, doc if not single else None).rstrip(": ")) from None
    finally:
        loader.dispose()


def _check_document(loader, source: str, doc: int | None) -> None:
    sizes: dict[str, int] = {}
    frames: list[tuple[str | None, int]] = []     # (anchor, decoded before the node)
    decoded = aliased = 0
    where = _where(source, doc)
    while True:
        ev = loader.get_event()
        if isinstance(ev, yaml.DocumentEndEvent):
            return
        if isinstance(ev, yaml.AliasEvent):
            if any(a == ev.anchor for a, _ in frames):
                raise LimitError(f"{where}yaml: anchor '{ev.anchor}' value contains itself")
            n = sizes.get(ev.anchor, 1)
            decoded += n
            aliased += n
        elif isinstance(ev, yaml.ScalarEvent):
            decoded += 1
            if ev.anchor:
                sizes[ev.anchor] = 1
        elif isinstance(ev, yaml.CollectionStartEvent):
            decoded += 1
            frames.append((ev.anchor, decoded - 1))
            if len(frames) > MAX_DEPTH:
                raise LimitError(f"{where}yaml: exceeded max depth of {MAX_DEPTH}")
        elif isinstance(ev, yaml.CollectionEndEvent):
            anchor, start = frames.pop()
            if anchor:
                sizes[anchor] = decoded - start
        if aliased > 100 and decoded > 1000 and aliased / decoded > allowed_alias_ratio(decoded):
            raise LimitError(f"{where}yaml: document contains excessive aliasing (more than "
                             f"{allowed_alias_ratio(decoded):.0%} of {decoded} nodes come from aliases)")


def load_all(data: bytes | str, source: str = "") -> list:
    """Every document of a YAML/JSON stream (`---`, `...`), empty ones
    dropped; DecodeError (LimitError for a limit) on anything refused."""
    text = to_text(data, source)
    check_size(text, source)
    _check_events(text, source, single=False)
    try:
        return [d for d in yaml.load_all(text, Loader=Loader) if d is not None]
    except yaml.YAMLError as exc:
        raise yaml_error(exc, source) from None
    except RecursionError:
        raise LimitError(f"{_where(source)}yaml: exceeded max depth") from None


def load_one(data: bytes | str, source: str = "", go_v2: bool = False):
    """The single document of `data` (None when empty)."""
    text = to_text(data, source)
    check_size(text, source)
    _check_events(text, source, single=True)
    try:
        return yaml.load(text, Loader=GoV2Loader if go_v2 else Loader)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, source) from None
    except RecursionError:
        raise LimitError(f"{_where(source)}yaml: exceeded max depth") from None


def load_json(data: bytes | str, source: str = ""):
    """One JSON value, under the size and depth limits."""
    text = to_text(data, source)
    check_size(text, source)
    try:
        value = json.loads(text)
    except RecursionError:
        raise LimitError(f"{_where(source)}json: exceeded max depth of {MAX_DEPTH}") from None
    except ValueError as exc:
        raise DecodeError(f"{_where(source)}{str(exc)[:300]}") from None
    if depth(value) > MAX_DEPTH:
        raise LimitError(f"{_where(source)}json: exceeded max depth of {MAX_DEPTH}")
    return value


def depth(value) -> int:
    """Nesting depth of JSON-like data, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((x, d + 1) for x in v)
    return deepest
