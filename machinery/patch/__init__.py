"""PATCH for the HTTP API: the four patch media types Kubernetes serves, as
pure functions on manifest dicts (codec.to_dict's form). No I/O.

    apply_patch(content_type, original, body, info) -> dict

dispatches on the Content-Type (parameters such as `; charset=utf-8` are
dropped, as Kubernetes drops them):

* application/json-patch+json          RFC 6902 (the `jsonpatch` package), jsonpatches.py
* application/merge-patch+json         RFC 7386, jsonpatches.py
* application/strategic-merge-patch+json   smp.py and smporder.py, with
                                       Kubernetes' merge keys from mergekeys.py
* application/apply-patch+yaml         server-side apply: yamlbody.py reads the
                                       body, ssa.py applies it (over fieldpath.py,
                                       typed.py and managedfields.py)

Anything else is 415 with Kubernetes' message; a malformed body is 400
(422 where Kubernetes answers 422). `original` is never modified. The
result is a dict still to be decoded and validated by the caller:
`decode_patched` decodes it with the 422 Kubernetes gives a patch whose
result is not an object of the kind. For every write that is not an apply,
the caller records field ownership with ssa.track_update, as Kubernetes'
field manager does.
"""
from __future__ import annotations

import json

from google.protobuf.message import Message

from machinery import codec, errors
from machinery.kinds import KindInfo
from machinery.patch import jsonpatches, smp
from machinery.patch.goerrors import gofmt

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH_YAML)


def media_type(content_type: str | None) -> str:
    """The media type without parameters (`a/b; charset=utf-8` -> `a/b`)."""
    ct = content_type or ""
    idx = ct.find(";")
    return ct[:idx] if idx > 0 else ct


def unsupported_media_type() -> errors.UnsupportedMediaType:
    return errors.UnsupportedMediaType(
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(PATCH_TYPES))


def apply_patch(content_type: str, original: dict | None, body: bytes, info: KindInfo, *,
                manager: str = "", force: bool = False, now: str = "") -> dict:
    """The object `original` with the patch in `body` applied.

    For apply (`application/apply-patch+yaml`) `original` may be None (the
    object does not exist yet: apply creates it), and `manager`, `force`
    and `now` (RFC 3339) are those of ssa.server_side_apply. The other
    types need the live object: the caller answers 404 before calling."""
    mt = media_type(content_type)
    if mt == APPLY_PATCH_YAML:
        from machinery.patch import ssa, yamlbody
        config = yamlbody.load(body)
        return ssa.server_side_apply(original, config, manager=manager, force=force,
                                     info=info, now=now)
    if mt not in PATCH_TYPES:
        raise unsupported_media_type()
    if mt == JSON_PATCH:
        return jsonpatches.apply_json_patch(original, body)
    if mt == MERGE_PATCH:
        return jsonpatches.apply_merge_patch(original, body)
    patch = jsonpatches.decode_json(body)
    if not isinstance(patch, dict):
        kind = "array" if isinstance(patch, list) else "value"
        raise errors.BadRequest(f"json: cannot unmarshal {kind} into Go value of type "
                                "map[string]interface {}")
    return smp.strategic_merge(original, patch, info.message.DESCRIPTOR)


def decode_patched(content_type: str, patched, body: bytes, info: KindInfo) -> Message:
    """The patched dict as its kind's message. A result that does not decode
    is 422 as Kubernetes words it (`The  "" is invalid: patch: Invalid value:
    "<the patch>": strict decoding error: unknown field "spec.foo"`): the
    value shown is the patch as Go prints it for a strategic merge patch,
    and the patched object's JSON for the other types."""
    try:
        if not isinstance(patched, dict):
            raise codec.DecodeError("expected an object at the top of the document, got "
                                    + type(patched).__name__)
        return codec.from_dict({**patched, "apiVersion": patched.get("apiVersion", info.api_version),
                                "kind": patched.get("kind", info.kind)})
    except codec.DecodeError as exc:
        unknown = [i.field for i in exc.issues if getattr(i, "message", "") == "unknown field"]
        others = [str(i) for i in exc.issues if getattr(i, "message", "") != "unknown field"]
        if unknown:
            detail = "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
            detail = ", ".join([detail] + others)
        else:
            detail = ", ".join(others) or str(exc)
        if media_type(content_type) == STRATEGIC_MERGE_PATCH:
            try:
                shown = gofmt(json.loads(body))
            except ValueError:
                shown = body.decode("utf-8", "replace")
        else:
            shown = json.dumps(patched, separators=(",", ":"))
        raise errors.Invalid.of("", "", [errors.invalid("patch", shown, detail)]) from exc


__all__ = ["decode_patched", "apply_patch", "media_type", "unsupported_media_type", "PATCH_TYPES", "JSON_PATCH",
           "MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "APPLY_PATCH_YAML"]
