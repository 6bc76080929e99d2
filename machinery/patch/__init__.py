"""PATCH for the HTTP API: the four patch media types Kubernetes serves, as
pure functions on manifest dicts (codec.to_dict's form). No I/O.

    apply_patch(content_type, original, body, info) -> dict

dispatches on the Content-Type (parameters such as `; charset=utf-8` are
dropped, as Kubernetes drops them):

* application/json-patch+json          RFC 6902     jsonpatches.py
* application/merge-patch+json         RFC 7386     jsonpatches.py
* application/strategic-merge-patch+json            smp.py (+ mergekeys.py)
* application/apply-patch+yaml         server-side apply, ssa.py

Anything else is 415 with Kubernetes' message; a malformed body is 400
(422 where Kubernetes answers 422). `original` is never modified. The
result is a dict still to be decoded (codec.from_dict) and validated by the
caller; for every write that is not an apply, the caller records field
ownership with ssa.track_update, as Kubernetes' field manager does.
"""
from __future__ import annotations

from machinery import errors
from machinery.kinds import KindInfo
from machinery.patch import jsonpatches, smp

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


__all__ = ["apply_patch", "media_type", "unsupported_media_type", "PATCH_TYPES", "JSON_PATCH",
           "MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "APPLY_PATCH_YAML"]
