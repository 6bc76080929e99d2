"""The body of an apply patch (`application/apply-patch+yaml`) as a JSON
object, read the way Kubernetes' sigs.k8s.io/yaml reads it, safely.

machinery.safeyaml does the reading (the one guarded decoder kctl and the
apiserver share); this module maps its refusals to the apply-patch errors:

* YAML 1.1 scalars as go-yaml v2 resolves them (`yes`, `on` and `y` are
  true); timestamps stay strings (go-yaml keeps them strings for
  interface{}); map keys become strings (`1: x` -> `"1": x`): the result is
  JSON.
* Size: a body over MAX_BODY_BYTES (Kubernetes' default
  MaxRequestBodyBytes, 3 MiB) is 413 `Request entity too large: limit is N`.
* YAML bombs (go-yaml's alias ratio) and recursive aliases are 400
  `error encoding patch: yaml: document contains excessive aliasing`
  (go-yaml's words for its own guard); too deep nesting, bad UTF-8 and
  syntax errors are 400 `error encoding patch: yaml: ...`.
"""
from __future__ import annotations

from machinery import errors, safeyaml

MAX_BODY_BYTES = safeyaml.MAX_BYTES
_EXCESSIVE = "error encoding patch: yaml: document contains excessive aliasing"


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
        data = safeyaml.load_one(body, go_v2=True)
    except safeyaml.LimitError as exc:
        if "alias" in str(exc) or "contains itself" in str(exc):
            raise errors.BadRequest(_EXCESSIVE) from None
        raise errors.BadRequest(f"error encoding patch: {exc}") from None
    except errors.DecodeError as exc:
        raise errors.BadRequest(f"error encoding patch: {exc}") from None
    return _jsonify(data)
