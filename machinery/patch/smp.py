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
upstream).

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

DIRECTIVE = "$patch"
DELETE, REPLACE, MERGE = "delete", "replace", "merge"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER = "$setElementOrder"

ERR_BAD_PRIMITIVE = "invalid patch format of primitive list"
ERR_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_SET_ORDER = "invalid patch format of setElementOrder list"
ERR_NO_LIST_OF_LISTS = "lists of lists are not supported"
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

class _Backing:
    """The array under a Go slice header of the live list's length.

    Go's mergeSlice deletes in place (`append(s[:k], s[k+1:]...)`) and
    appends into the freed capacity, and mergePatchIntoOriginal then reads
    the live order through its old header, which sees those writes. The
    order Kubernetes returns for `$setElementOrder` plus `$patch: delete`
    depends on it (patch_test.go: "add map and delete map from merging
    list"), so this records what that header sees."""

    def __init__(self, items):
        self.arr = list(items)
        self.len = len(self.arr)

    def items(self) -> list:
        return self.arr[:self.len]

    def delete(self, k: int):
        self.arr[k:self.len - 1] = self.arr[k + 1:self.len]
        self.len -= 1

    def append(self, v):
        if self.len < len(self.arr):      # past capacity Go copies to a new array
            self.arr[self.len] = v
        self.len += 1


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
        merged = _dedup_scalars(original + patch)
    else:
        if not merge_key:
            raise _bad("cannot merge lists without merge key for struct")
        backing = backing or _Backing(original)
        original, patch = _merge_special_elements(backing, patch, merge_key)
        merged = _merge_without_special(original, patch, merge_key, schema, backing)
    if not merge_key:
        patch_items, server_only = _partition_primitives(merged, patch)
    else:
        patch_items, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_element_order(patch_items, server_only, patch, original, merge_key, is_map)


def _dedup_scalars(s: list) -> list:
    """Go's deduplicateScalars, order effects included."""
    s = list(s)
    length = len(s) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if s[i] == s[j] and type(s[i]) is type(s[j]):
                s[j] = s[length]
                s = s[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return s


def _find(lst, key, value):
    """findMapInSliceBasedOnKeyValue -> (item, index) or (None, -1)."""
    for i, v in enumerate(lst):
        if not isinstance(v, dict):
            raise _bad(f"value for key {i} is not a map")
        if key in v and v[key] == value:
            return v, i
    return None, -1


def _merge_special_elements(backing: _Backing, patch, merge_key):
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
                _, k = _find(backing.items(), merge_key, v[merge_key])
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


def _merge_without_special(original, patch, merge_key, schema, backing: _Backing):
    original = list(original)
    for v in patch:
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        found, idx = _find(original, merge_key, v[merge_key])
        if found is not None:
            original[idx] = _merge_map(found, v, schema)
        else:
            original.append(v)
            backing.append(v)
    return original


def _partition_primitives(lst, by):
    patch, server = [], []
    for v in lst:
        (patch if v in by else server).append(v)
    return patch, server


def _partition_maps(lst, by, merge_key):
    patch, server = [], []
    for v in lst:
        if not isinstance(v, dict):
            raise _bad_arg_type("map[string]interface {}", v)
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        found, _ = _find(by, merge_key, v[merge_key])
        (patch if found is not None else server).append(v)
    return patch, server


def _index(lst, item, merge_key, is_map) -> int:
    def val(x):
        return x.get(merge_key) if is_map and isinstance(x, dict) else (None if is_map else x)
    target = val(item)
    for i, v in enumerate(lst or ()):
        if val(v) == target:
            return i
    return -1


def _normalize_element_order(patch, server_only, patch_order, server_order, merge_key, is_map):
    patch = _normalize_slice_order(patch, patch_order, merge_key, is_map)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, is_map)
    return _merge_sorted(server_only, patch, server_order, merge_key, is_map)


def _normalize_slice_order(to_sort, order, merge_key, is_map):
    to_delete = []
    if is_map:
        for lst in (to_sort, order):
            for v in lst or ():
                if not isinstance(v, dict):
                    raise _bad_arg_type("map[string]interface {}", v)
                if merge_key not in v:
                    raise _no_merge_key(v, merge_key)
        to_delete = [v for v in to_sort if v.get(DIRECTIVE) == DELETE]
        to_sort = [v for v in to_sort if v.get(DIRECTIVE) != DELETE]

    def less(a, b):
        ia = _index(order, a, merge_key, is_map)
        if ia >= 0:
            ib = _index(order, b, merge_key, is_map)
            if ib >= 0:
                return ia < ib
        return True

    out = list(to_sort)   # Go's insertionSort, which sort.SliceStable uses for short lists
    for i in range(1, len(out)):
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out + to_delete


def _merge_sorted(left, right, server_order, merge_key, is_map):
    out, i, j = [], 0, 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j]); j += 1
        elif j >= len(right):
            out.append(left[i]); i += 1
        else:
            li = _index(server_order, left[i], merge_key, is_map)
            ri = _index(server_order, right[j], merge_key, is_map)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i]); i += 1
            else:
                out.append(right[j]); j += 1
    return out


# -------------------------------------------------------- $setElementOrder

def _validate_set_order(patch_list, order, merge_key):
    if not isinstance(order, list) or not isinstance(patch_list, list):
        raise _bad(ERR_BAD_SET_ORDER)
    if not order or not patch_list:
        return
    items = [v for v in patch_list if not (merge_key and isinstance(v, dict)
                                           and v.get(DIRECTIVE) == DELETE)]
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        if isinstance(items[pi], dict) and DIRECTIVE in items[pi]:
            pi += 1
            continue
        if merge_key:
            for m in (items[pi], order[oi]):
                if not isinstance(m, dict):
                    raise _bad_arg_type("map[string]interface {}", m)
                if merge_key not in m:
                    raise _no_merge_key(m, merge_key)
            equal = items[pi][merge_key] == order[oi][merge_key]
        else:
            equal = items[pi] == order[oi]
        if equal:
            pi += 1
        oi += 1
    if pi < len(items) and oi >= len(order):
        raise _bad(f"The order in patch list:\n{gofmt(patch_list)}\n doesn't match "
                   f"{SET_ELEMENT_ORDER} list:\n{gofmt(order)}\n")


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
        _validate_set_order(patch_list if found_patch else [], order, merge_key)
        if found_orig and not found_patch:
            merged = orig_list
        elif found_patch and not found_orig:
            merged, _ = _remove_directives(patch_list)
        elif found_orig and found_patch:
            backing = _Backing(orig_list)
            merged = _merge_slice_handler(orig_list, patch_list, sub, strategy, merge_key, False,
                                          backing)
            orig_list = backing.arr
        else:
            continue
        if not merge_key:
            items, server_only = _partition_primitives(merged, order)
        else:
            items, server_only = _partition_maps(merged, order, merge_key)
        is_map = _element_type(orig_list, patch_list) is dict
        original[name] = _normalize_element_order(items, server_only, order, orig_list,
                                                   merge_key, is_map)
        patch.pop(name, None)
