"""List order and list bookkeeping for strategic merge patch (smp.py):
the parts of strategicpatch/patch.go that decide where each item of a
merged list ends up — `$setElementOrder` validation, partitioning into
patch and server-only items, normalizeElementOrder / mergeSortedSlice, Go's
in-place primitive de-duplication — and Backing, which replays the Go slice
aliasing that order depends on."""
from __future__ import annotations

from machinery.patch.goerrors import bad as _bad, bad_arg_type as _bad_arg_type, gofmt
from machinery.patch.goerrors import no_merge_key as _no_merge_key

DIRECTIVE = "$patch"
DELETE = "delete"
SET_ELEMENT_ORDER = "$setElementOrder"
ERR_BAD_SET_ORDER = "invalid patch format of setElementOrder list"


class Backing:
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


def dedup_scalars(s: list) -> list:
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


def find(lst, key, value):
    """findMapInSliceBasedOnKeyValue -> (item, index) or (None, -1)."""
    for i, v in enumerate(lst):
        if not isinstance(v, dict):
            raise _bad(f"value for key {i} is not a map")
        if key in v and v[key] == value:
            return v, i
    return None, -1


def partition_primitives(lst, by):
    patch, server = [], []
    for v in lst:
        (patch if v in by else server).append(v)
    return patch, server


def partition_maps(lst, by, merge_key):
    patch, server = [], []
    for v in lst:
        if not isinstance(v, dict):
            raise _bad_arg_type("map[string]interface {}", v)
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        found, _ = find(by, merge_key, v[merge_key])
        (patch if found is not None else server).append(v)
    return patch, server


def index_of(lst, item, merge_key, is_map) -> int:
    def val(x):
        return x.get(merge_key) if is_map and isinstance(x, dict) else (None if is_map else x)
    target = val(item)
    for i, v in enumerate(lst or ()):
        if val(v) == target:
            return i
    return -1


def normalize_element_order(patch, server_only, patch_order, server_order, merge_key, is_map):
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
        ia = index_of(order, a, merge_key, is_map)
        if ia >= 0:
            ib = index_of(order, b, merge_key, is_map)
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
            li = index_of(server_order, left[i], merge_key, is_map)
            ri = index_of(server_order, right[j], merge_key, is_map)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i]); i += 1
            else:
                out.append(right[j]); j += 1
    return out


def validate_set_order(patch_list, order, merge_key):
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
