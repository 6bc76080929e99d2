"""Strategic merge patch (`application/strategic-merge-patch+json`), applied
the way k8s.io/apimachinery/pkg/util/strategicpatch/patch.go applies it
(StrategicMergeMapPatch: MergeParallelList and IgnoreUnmatchedNulls on).

A port of the apply half of that file, function for function, so that the
subtle parts behave as Kubernetes' do: list order (`$setElementOrder/<f>`
first, then the patch's order, then the live order, merged by
mergeSortedSlice), primitive lists deduplicated by Go's in-place algorithm,
`$patch: replace|delete` on maps and list items, `$retainKeys`,
`$deleteFromPrimitiveList/<f>`, and `null` deleting a key. Where a list
merges and by which key comes from mergekeys.PATCH_META, found by walking
kctl's proto descriptors alongside the JSON (the role Go's struct tags play
upstream). Where merged list items end up is smporder.py's part.

Errors carry Kubernetes' messages (mergepatch/errors.go, Go's %v rendering
of maps). The apiserver's interpretStrategicMergePatchError answers 400 for
the malformed-directive errors and 422 for lists of lists / retainKeys
mismatches; every other error of this package is a plain Go error there,
which Kubernetes answers with 500. kctl answers those with 400 BadRequest
(the fault is the request's), same message.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from google.protobuf.descriptor import FieldDescriptor as FD

from machinery.patch import mergekeys
from machinery.patch.goerrors import (
    UNPROCESSABLE, Unprocessable, bad as _bad, bad_arg_type as _bad_arg_type, gofmt,
    no_merge_key as _no_merge_key)
from machinery.patch.smporder import (
    DELETE, DIRECTIVE, ERR_BAD_SET_ORDER, SET_ELEMENT_ORDER, Backing, dedup_scalars, find,
    normalize_element_order, partition_maps, partition_primitives, validate_set_order)

REPLACE, MERGE = "replace", "merge"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList"

ERR_BAD_PRIMITIVE = "invalid patch format of primitive list"
ERR_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"


# ------------------------------------------------------------- the schema

@dataclass(frozen=True)
class StructSchema:
    """A schema that is not a proto message (Kubernetes' test types, say):
    json field -> (subschema or None, "patchStrategy" tag, patchMergeKey)."""
    fields: dict = field(default_factory=dict)


def _lookup(desc, key):
    """(subschema, [strategies], mergeKey) for `key` of message `desc`
    (LookupPatchMetadataForStruct/ForSlice); maps and unknown fields have
    no metadata and no subschema."""
    if desc is None:
        return None, [], ""
    if isinstance(desc, StructSchema):
        sub, tag, merge_key = desc.fields.get(key, (None, "", ""))
        return sub, tag.split(",") if tag else [], merge_key or ""
    f = next((x for x in desc.fields if x.json_name == key), None)
    if f is None:
        return None, [], ""
    sub = None
    if f.type == FD.TYPE_MESSAGE and not f.message_type.GetOptions().map_entry:
        sub = f.message_type
    meta = mergekeys.patch_meta(desc, key)
    if meta is None:
        return sub, [], ""
    return sub, meta[0].split(","), meta[1] or ""


def _strategy(strategies: list[str]) -> str:
    """extractRetainKeysPatchStrategy: the strategy other than retainKeys."""
    others = [s for s in strategies if s != "retainKeys"]
    if len(strategies) > 2 or len(others) > 1:
        raise _bad(f"unexpected patch strategy: {gofmt(strategies)}")
    return others[0] if others else ""


# ----------------------------------------------------------- entry point

def strategic_merge(original: dict, patch: dict, descriptor) -> dict:
    """Apply `patch` to `original` (neither is modified) for the message
    type `descriptor` (a protobuf Descriptor, or a StructSchema)."""
    if not isinstance(patch, dict):
        raise _bad_arg_type("map[string]interface {}", patch)
    return _merge_map(copy.deepcopy(original), copy.deepcopy(patch), descriptor)


def _merge_map(original, patch, schema):
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == REPLACE:
            del patch[DIRECTIVE]
            return patch
        if directive == DELETE:
            return {}
        raise _bad(f"unknown patch type: {gofmt(directive)} in map: {gofmt(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, schema)
    for k in list(patch):
        patch_v = patch[k]
        is_delete_list = False
        if k.startswith(DELETE_FROM_PRIMITIVE):
            k = _extract_key(k, DELETE_FROM_PRIMITIVE)
            is_delete_list = True
        if patch_v is None:
            original.pop(k, None)
            continue
        if k not in original or type(original[k]) is not type(patch_v):
            if not is_delete_list:
                _discard_nulls(patch_v)
                value, keep = _remove_directives(patch_v)
                if keep:
                    original[k] = value
                else:
                    original.pop(k, None)
            continue
        if isinstance(patch_v, dict):
            sub, strategies, _ = _lookup(schema, k)
            if _strategy(strategies) != REPLACE:
                original[k] = _merge_map(original[k], patch_v, sub)
            else:
                original[k] = patch_v
        elif isinstance(patch_v, list):
            sub, strategies, merge_key = _lookup(schema, k)
            original[k] = _merge_slice_handler(original[k], patch_v, sub, _strategy(strategies),
                                               merge_key, is_delete_list)
        else:
            value, keep = _remove_directives(patch_v)
            if keep:
                original[k] = value
            else:
                original.pop(k, None)
    return original


def _discard_nulls(v):
    if isinstance(v, dict):
        for k in [k for k, x in v.items() if x is None]:
            del v[k]
        for x in v.values():
            _discard_nulls(x)
    elif isinstance(v, list):
        for x in v:
            _discard_nulls(x)


def _remove_directives(obj):
    """(value, keep): drops maps that carry $patch, recursively."""
    if isinstance(obj, dict):
        if DIRECTIVE in obj:
            return None, False
        for k in list(obj):
            value, keep = _remove_directives(obj[k])
            if keep:
                obj[k] = value
            else:
                del obj[k]
        return obj, True
    if isinstance(obj, list):
        out = []
        for v in obj:
            value, keep = _remove_directives(v)
            if keep:
                out.append(value)
        return out, True
    return obj, True


def _extract_key(s: str, prefix: str) -> str:
    parts = s.split("/", 1)
    if len(parts) <= 1 or parts[0] != prefix:
        raise _bad(ERR_BAD_PRIMITIVE if prefix == DELETE_FROM_PRIMITIVE else ERR_BAD_SET_ORDER)
    return parts[1]


def _apply_retain_keys(original: dict, patch: dict):
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _bad(ERR_BAD_RETAIN_KEYS)
    keep = set(x for x in retain if isinstance(x, (str, int, float, bool)))
    for k, v in patch.items():
        if v is None or k.startswith(DELETE_FROM_PRIMITIVE) or k.startswith(SET_ELEMENT_ORDER):
            continue
        if k not in keep:
            raise _bad(ERR_BAD_RETAIN_KEYS)
    for k in [k for k in original if k not in keep]:
        del original[k]


# ------------------------------------------------------------------ lists

def _merge_slice_handler(original, patch, schema, strategy, merge_key, is_delete_list,
                         backing=None):
    if not isinstance(original, list):
        raise _bad_arg_type("[]interface {}", original)
    if not isinstance(patch, list):
        raise _bad_arg_type("[]interface {}", patch)
    if strategy == MERGE or is_delete_list:
        return _merge_slice(original, patch, schema, merge_key, is_delete_list, backing)
    return patch


def _element_type(*lists) -> type:
    """sliceElementType: one element type across the lists, never a list."""
    prev = None
    for lst in lists:
        for v in lst or ():
            t = type(v)
            if prev is None:
                prev = t
                if t is list:
                    raise Unprocessable(UNPROCESSABLE)
            elif prev is not t:
                raise _bad("list element types are not identical: "
                           + gofmt([list(x) if x is not None else [] for x in lists]))
    if prev is None:
        raise _bad("no elements in any of the given slices")
    return prev


def _merge_slice(original, patch, schema, merge_key, is_delete_list, backing=None):
    if not original and not patch:
        return original
    is_map = _element_type(original, patch) is dict
    if not is_map:
        if is_delete_list:
            drop = patch
            return [v for v in original if v not in drop]
        merged = dedup_scalars(original + patch)
    else:
        if not merge_key:
            raise _bad("cannot merge lists without merge key for struct")
        backing = backing or Backing(original)
        original, patch = _merge_special_elements(backing, patch, merge_key)
        merged = _merge_without_special(original, patch, merge_key, schema, backing)
    if not merge_key:
        patch_items, server_only = partition_primitives(merged, patch)
    else:
        patch_items, server_only = partition_maps(merged, patch, merge_key)
    return normalize_element_order(patch_items, server_only, patch, original, merge_key, is_map)


def _merge_special_elements(backing: Backing, patch, merge_key):
    plain, replace = [], False
    for v in patch:
        if DIRECTIVE not in v:
            plain.append(v)
            continue
        directive = v[DIRECTIVE]
        if directive == DELETE:
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            while True:
                _, k = find(backing.items(), merge_key, v[merge_key])
                if k < 0:
                    break
                backing.delete(k)
        elif directive == REPLACE:
            replace = True
        elif directive == MERGE:
            raise _bad("merging lists cannot yet be specified in the patch")
        else:
            raise _bad(f"unknown patch type: {gofmt(directive)} in map: {gofmt(v)}")
    if replace:
        return plain, []
    return backing.items(), plain


def _merge_without_special(original, patch, merge_key, schema, backing: Backing):
    original = list(original)
    for v in patch:
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        found, idx = find(original, merge_key, v[merge_key])
        if found is not None:
            original[idx] = _merge_map(found, v, schema)
        else:
            original.append(v)
            backing.append(v)
    return original


# -------------------------------------------------------- $setElementOrder

def _merge_ordered_lists(original, patch, schema):
    """mergePatchIntoOriginal: each `$setElementOrder/<f>` with its list."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        name = _extract_key(key, SET_ELEMENT_ORDER)
        found_orig, found_patch = name in original, name in patch
        orig_list = original.get(name)
        patch_list = patch.get(name)
        if found_orig and not isinstance(orig_list, list):
            raise _bad_arg_type("[]interface {}", orig_list)
        if found_patch and not isinstance(patch_list, list):
            raise _bad_arg_type("[]interface {}", patch_list)
        sub, strategies, merge_key = _lookup(schema, name)
        strategy = _strategy(strategies)
        validate_set_order(patch_list if found_patch else [], order, merge_key)
        if found_orig and not found_patch:
            merged = orig_list
        elif found_patch and not found_orig:
            merged, _ = _remove_directives(patch_list)
        elif found_orig and found_patch:
            backing = Backing(orig_list)
            merged = _merge_slice_handler(orig_list, patch_list, sub, strategy, merge_key, False,
                                          backing)
            orig_list = backing.arr
        else:
            continue
        if not merge_key:
            items, server_only = partition_primitives(merged, order)
        else:
            items, server_only = partition_maps(merged, order, merge_key)
        is_map = _element_type(orig_list, patch_list) is dict
        original[name] = normalize_element_order(items, server_only, order, orig_list,
                                                   merge_key, is_map)
        patch.pop(name, None)
