"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), with the answers
Kubernetes' apiserver gives for bad ones (apiserver's
endpoints/handlers/patch.go, jsonPatcher.applyJSPatch, which runs with
fieldValidation=Strict as kubectl sends it):

* a body that is not JSON: 400 `invalid JSON patch`;
* a merge patch that is not an object: 400 `error decoding patch: json:
  cannot unmarshal array into Go value of type map[string]interface {}`;
  `null`: 400 `Invalid JSON Patch`;
* a JSON patch that is not a list of operation objects: 400 `error decoding
  patch: ...`; more than 10000 operations: 413;
* an operation that cannot be applied (missing path, failed `test`, unknown
  op): 422 Invalid, `the server rejected our request due to an error in our
  request`, the failed operation named in a cause of type
  UnexpectedServerResponse (as NewGenericServerResponse keeps it).

RFC 6902 itself is the `jsonpatch` package's; RFC 7386 is ten lines here.
"""
from __future__ import annotations

import copy
import json

import jsonpatch
import jsonpointer

from machinery import errors, safeyaml
from machinery.patch.goerrors import UNPROCESSABLE, Unprocessable, unexpected_response

MAX_JSON_PATCH_OPERATIONS = 10000
_GO_KIND = {list: "array", str: "string", int: "number", float: "number", bool: "bool"}


def decode_json(body: bytes):
    """validateAndTranscodePatch: the body must be valid JSON."""
    try:
        value = json.loads(body, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.BadRequest("invalid JSON patch") from None
    if safeyaml.depth(value) > safeyaml.MAX_DEPTH:       # the merge walks recurse
        raise errors.BadRequest(f"invalid JSON patch: exceeded max depth of {safeyaml.MAX_DEPTH}")
    return value


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def merge_patch(target, patch):
    """RFC 7386 MergePatch (neither argument is modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def apply_merge_patch(original: dict, body: bytes) -> dict:
    patch = decode_json(body)
    if patch is None:
        raise errors.BadRequest("Invalid JSON Patch")
    if not isinstance(patch, dict):
        raise errors.BadRequest("error decoding patch: json: cannot unmarshal "
                                f"{_GO_KIND.get(type(patch), 'value')} into Go value of type "
                                "map[string]interface {}")
    return merge_patch(original, patch)


def apply_json_patch(original: dict, body: bytes):
    ops = decode_json(body)
    if not isinstance(ops, list):
        kind = "object" if isinstance(ops, dict) else _GO_KIND.get(type(ops), "value")
        raise errors.BadRequest(f"error decoding patch: json: cannot unmarshal {kind} into Go "
                                "value of type []handlers.jsonPatchOp")
    for op in ops:
        if not isinstance(op, dict):
            raise errors.BadRequest("error decoding patch: json: cannot unmarshal "
                                    f"{_GO_KIND.get(type(op), 'value')} into Go struct field "
                                    "of type handlers.jsonPatchOp")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.RequestEntityTooLarge(
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    doc = copy.deepcopy(original)
    for op in ops:          # one at a time, so the error names the operation (as evanphx/json-patch)
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise Unprocessable(UNPROCESSABLE, causes=[unexpected_response(
                f"testing value {op.get('path')} failed: test failed")]) from exc
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException,
                KeyError, IndexError, TypeError, ValueError) as exc:
            raise Unprocessable(UNPROCESSABLE, causes=[unexpected_response(
                f"{str(op.get('op'))[:20]} operation does not apply: doc is missing path: "
                f"{json.dumps(str(op.get('path'))[:200])}: missing value")]) from exc
    return doc
