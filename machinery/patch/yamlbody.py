"""The body of an apply patch (`application/apply-patch+yaml`) as a JSON
object, read the way Kubernetes' sigs.k8s.io/yaml reads it, safely.

* YAML 1.1 scalars as go-yaml v2 resolves them (`yes`, `on` and `y` are
  true); timestamps stay strings (go-yaml keeps them strings for
  interface{}); map keys become strings (`1: x` -> `"1": x`): the result is
  JSON.
* Size: a body over MAX_BODY_BYTES (Kubernetes' default
  MaxRequestBodyBytes, 3 MiB) is 413 `Request entity too large: limit is N`.
* YAML bombs: anchors and aliases let a small document stand for an
  exponentially large one ("billion laughs"). PyYAML shares aliased nodes,
  so loading is cheap, but anything that walks the result (JSON encoding,
  deep copies, the merge) pays the expanded size. The composed node graph
  is measured with aliases expanded before anything is constructed; past
  MAX_EXPANDED_NODES, or on a recursive alias, the body is refused with
  400 `error encoding patch: yaml: document contains excessive aliasing`
  (go-yaml's words for its own guard).
"""
from __future__ import annotations

import re

import yaml

from machinery import errors

MAX_BODY_BYTES = 3 * 1024 * 1024
MAX_EXPANDED_NODES = 100_000
_EXCESSIVE = "error encoding patch: yaml: document contains excessive aliasing"


class _Loader(yaml.SafeLoader):
    """SafeLoader resolving scalars as go-yaml v2 does: timestamps stay
    strings, and `y`/`n` (any case) are booleans like `yes`/`no`."""
    bool_values = {**yaml.SafeLoader.bool_values, "y": True, "n": False}


_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


def _expanded_size(root) -> int:
    """Nodes in the document with every alias expanded; raises on cycles
    and stops counting past the limit."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise errors.BadRequest(_EXCESSIVE)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                raise errors.BadRequest(_EXCESSIVE)
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _jsonify(v):
    if isinstance(v, dict):
        return {_key(k): _jsonify(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonify(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("latin-1")
    return v


def _key(k) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, bool):
        return "true" if k else "false"
    if k is None:
        return "null"
    return str(k)


def load(body: bytes):
    """The document in `body` (YAML or JSON), as JSON-compatible data."""
    if len(body) > MAX_BODY_BYTES:
        raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {MAX_BODY_BYTES}")
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    except UnicodeDecodeError as exc:
        raise errors.BadRequest(f"error encoding patch: {exc}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise errors.BadRequest(f"error encoding patch: yaml: {exc}") from None
    except RecursionError:
        raise errors.BadRequest(_EXCESSIVE) from None
    finally:
        loader.dispose()
    return _jsonify(data)
