"""Typed operations on manifest dicts, as structured-merge-diff's typed
package does them (typed/tofieldset.go, compare.go, merge.go, remove.go):

* to_field_set(obj)       the fields an object sets (scalars, atomic lists and
                          maps, list items, empty maps and unknown map keys);
* compare(old, new)       added / modified / removed field sets;
* merge(live, config)     config's values over live's; keyed lists merged by
                          key in the order structured-merge-diff gives;
* remove_items(obj, set)  the object without the fields in the set (a map or
                          list left empty disappears, as it does upstream);
* validate(config)        the schema errors apply refuses a config for
                          (`.spec.foo: field not declared in schema`).

`t` is always a fieldpath.Type; a field the schema does not declare is
treated as an atomic leaf.
"""
from __future__ import annotations

from machinery.patch.fieldpath import SCALAR, Type, item_element, path_string, with_prefix

_MISSING = object()


def _leaf(t: Type | None) -> bool:
    return t is None or t.kind == "scalar" or t.atomic


def _child_type(t: Type | None, pe) -> Type | None:
    if t is None:
        return None
    if pe[0] == "f":
        return t.field(pe[1]) if t.kind in ("struct", "map") else None
    return t.elem if t.kind == "list" else None


def _items(t: Type, lst):
    """(path element, item) per list item; items that cannot be keyed are skipped."""
    out = []
    for item in lst or ():
        pe = item_element(t, item)
        if pe is not None:
            out.append((pe, item))
    return out


# -------------------------------------------------------------- field set

def to_field_set(obj, t: Type) -> set:
    out: set = set()
    _fields(obj, t, (), out)
    return out


def _fields(v, t: Type | None, path: tuple, out: set):
    if _leaf(t) or v is None:
        out.add(path)
        return
    if t.kind == "list":
        if not isinstance(v, list):
            out.add(path)
            return
        seen: dict = {}
        for pe, item in _items(t, v):
            seen[pe] = seen.get(pe, 0) + 1
        for pe, item in _items(t, v):
            out.add(path + (pe,))
            if seen[pe] == 1:
                _fields(item, t.elem, path + (pe,), out)
        return
    if not isinstance(v, dict):
        out.add(path)
        return
    for key, val in v.items():
        ft = t.field(key)
        p = path + (("f", key),)
        _fields(val, ft, p, out)
        if val is None or (isinstance(val, dict) and not val) or (t.kind == "struct" and ft is None) \
                or t.kind == "map":
            out.add(p)


# ---------------------------------------------------------------- compare

def compare(old, new, t: Type) -> tuple[set, set, set]:
    """(added, modified, removed) from `old` to `new`."""
    added, modified, removed = set(), set(), set()
    _compare(old, new, t, (), added, modified, removed)
    return added, modified, removed


def _compare(lhs, rhs, t, path, added, modified, removed):
    if not _leaf(t):              # a null list or map is there, and empty
        empty = [] if t.kind == "list" else {}
        lhs = empty if lhs is None else lhs
        rhs = empty if rhs is None else rhs
    if _leaf(t) or not _same_shape(lhs, rhs, t):
        if lhs is _MISSING:
            added.add(path)
        elif rhs is _MISSING:
            removed.add(path)
        elif not equal(lhs, rhs):
            modified.add(path)
        return
    if t.kind == "list":
        left = _grouped(t, lhs)
        right = _grouped(t, rhs)
        for pe in list(left) + [pe for pe in right if pe not in left]:
            ls, rs = left.get(pe, []), right.get(pe, [])
            p = path + (pe,)
            if len(ls) <= 1 and len(rs) <= 1:
                _compare(ls[0] if ls else _MISSING, rs[0] if rs else _MISSING, t.elem, p,
                         added, modified, removed)
            elif len(ls) >= 2 and len(rs) >= 2:
                if not equal(ls, rs):
                    modified.add(p)
            elif len(ls) >= 2:
                removed.add(p)
            else:
                added.add(p)
    else:
        lm = lhs if isinstance(lhs, dict) else {}
        rm = rhs if isinstance(rhs, dict) else {}
        if not lm and not rm:                     # emptyPromoteToLeaf
            if lhs is _MISSING:
                added.add(path)
            elif rhs is _MISSING:
                removed.add(path)
            return
        for key in list(lm) + [k for k in rm if k not in lm]:
            _compare(lm.get(key, _MISSING), rm.get(key, _MISSING), t.field(key),
                     path + (("f", key),), added, modified, removed)
    if lhs is _MISSING:
        added.add(path)
    elif rhs is _MISSING:
        removed.add(path)


def equal(a, b) -> bool:
    """value.Equals: numbers by value (1 == 1.0), booleans only to booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _same_shape(lhs, rhs, t: Type) -> bool:
    want = list if t.kind == "list" else dict
    return (lhs is _MISSING or isinstance(lhs, want)) and (rhs is _MISSING or isinstance(rhs, want))


def _grouped(t: Type, lst) -> dict:
    out: dict = {}
    if lst is _MISSING:
        return out
    for pe, item in _items(t, lst):
        out.setdefault(pe, []).append(item)
    return out


# ------------------------------------------------------------------ merge

def merge(lhs, rhs, t: Type):
    """live.Merge(config): rhs (the config) wins; keyed lists merge by key."""
    return _merge(lhs, rhs, t)


def _merge(lhs, rhs, t):
    if _leaf(t) or not _same_shape(lhs, rhs, t):
        return lhs if rhs is _MISSING else rhs
    if t.kind == "list":
        left = [] if lhs is _MISSING else lhs
        right = [] if rhs is _MISSING else rhs
        if not left and not right:                # emptyPromoteToLeaf
            return lhs if rhs is _MISSING else rhs
        return _merge_list(t, left, right)
    lm = {} if lhs is _MISSING else lhs
    rm = {} if rhs is _MISSING else rhs
    if not lm and not rm:
        return lhs if rhs is _MISSING else rhs
    out = {}
    for key in list(lm) + [k for k in rm if k not in lm]:
        out[key] = _merge(lm.get(key, _MISSING), rm.get(key, _MISSING), t.field(key))
    return out


def _merge_list(t: Type, lhs: list, rhs: list) -> list:
    """mergingWalker.visitListItems, its ordering included."""
    r_pes = [pe for pe, _ in _items(t, rhs)]
    r_obs = dict(_items(t, rhs))
    l_items = _items(t, lhs)
    l_pes = [pe for pe, _ in l_items]
    l_obs: dict = {}
    for pe, item in l_items:
        l_obs[pe] = None if pe in l_obs else item      # duplicated in live: nil
    shared = [pe for pe in r_pes if pe in l_obs]
    next_shared = shared.pop(0) if shared else None
    merged_rhs: set = set()
    out = []

    def item(pe, left, right):
        out.append(_merge(_MISSING if left is None else left,
                          _MISSING if right is None else right, t.elem))

    li = ri = 0
    while li < len(l_pes) or ri < len(r_pes):
        if li < len(l_pes) and ri < len(r_pes):
            pe = l_pes[li]
            if pe == r_pes[ri]:
                merged_rhs.add(pe)
                item(pe, l_obs.get(pe), r_obs.get(pe))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in r_obs and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(l_pes):
            pe = l_pes[li]
            if pe not in r_obs:
                item(pe, l_items[li][1], None)
                li += 1
                continue
            if pe in merged_rhs:
                li += 1
        if ri < len(r_pes):
            pe = r_pes[ri]
            merged_rhs.add(pe)
            item(pe, l_obs.get(pe), r_obs.get(pe))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


# ----------------------------------------------------------- remove items

def remove_items(v, to_remove: set, t: Type | None):
    """removingWalker without extraction; an emptied map or list becomes None."""
    if _leaf(t) or not to_remove:
        return v
    if t.kind == "list":
        if not isinstance(v, list) or not v:
            return v
        out = []
        for item in v:
            pe = item_element(t, item)
            if pe is not None and (pe,) in to_remove:
                continue
            sub = with_prefix(to_remove, pe) if pe is not None else set()
            out.append(remove_items(item, sub, t.elem) if sub else item)
        return out or None
    if not isinstance(v, dict) or not v:
        return v
    out = {}
    for key, val in v.items():
        pe = ("f", key)
        if (pe,) in to_remove:
            continue
        sub = with_prefix(to_remove, pe)
        out[key] = remove_items(val, sub, t.field(key)) if sub else val
    return out or None


def drop_nulls(v):
    """The object as it decodes: keys whose value is null are gone."""
    if isinstance(v, dict):
        return {k: drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [drop_nulls(x) for x in v]
    return v


# --------------------------------------------------------------- validate

def validate(v, t: Type, path: tuple = ()) -> list[str]:
    """Schema errors of an applied configuration, structured-merge-diff's words."""
    errs: list[str] = []
    where = path_string(path)
    if v is None or t.kind == "scalar":
        if isinstance(v, (dict, list)) and t is SCALAR and path and path[-1][0] == "f":
            errs.append(f"{where}: expected a scalar, got {'map' if isinstance(v, dict) else 'list'}")
        return errs
    if t.kind == "list":
        if not isinstance(v, list):
            return [f"{where}: expected list, got {_kind(v)}"]
        seen = set()
        for i, item in enumerate(v):
            pe = item_element(t, item)
            if t.list_kind == "map" and pe is None:
                errs.append(f"{where}: element {i}: associative list with keys has an element that "
                            f"omits all key fields {_go_list(t.keys)} (and doesn't have default "
                            "values for any key fields)")
                continue
            if pe is not None and t.list_kind != "atomic":
                if pe in seen:
                    errs.append(f"{where}: duplicate entries for key {path_string((pe,))}")
                seen.add(pe)
                errs += validate(item, t.elem, path + (pe,))
            elif t.elem is not None:
                errs += validate(item, t.elem, path + (("i", i),))
        return errs
    if not isinstance(v, dict):
        return [f"{where}: expected map, got {_kind(v)}"]
    for key, val in v.items():
        ft = t.field(key)
        if ft is None:
            errs.append(f"{path_string(path + (('f', key),))}: field not declared in schema")
        else:
            errs += validate(val, ft, path + (("f", key),))
    return errs


def _kind(v) -> str:
    return {dict: "map", list: "list", str: "string", bool: "bool"}.get(type(v), "number")


def _go_list(keys) -> str:
    return "[" + " ".join(f'"{k}"' for k in keys) + "]"
