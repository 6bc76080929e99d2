"""Field paths and field sets as structured-merge-diff (sigs.k8s.io/
structured-merge-diff/v6 fieldpath) defines them, on kctl's proto schema.

A path is a tuple of path elements:

    ("f", "spec")                      a struct field or map key   f:spec
    ("k", (("name", "app"),))          a list-map item by its keys k:{"name":"app"}
    ("v", "foregroundDeletion")        a set item by its value     v:"foregroundDeletion"
    ("i", 3)                           a list item by index        i:3 (no k8s type uses it)

A field set is a plain Python set of paths; `to_fields_v1` / `from_fields_v1`
are the FieldsV1 encoding in `metadata.managedFields` (a tree whose leaves
are `{}`, with `".": {}` marking a member that also has children), and
`path_string` is the form conflicts are reported in
(`.spec.template.spec.containers[name="app"].image`).

`Type` is the schema: what structured-merge-diff learns from Kubernetes'
OpenAPI, derived here from the proto descriptors and mergekeys' tables
(list types, list-map keys and their defaults, atomic structs and maps).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf.descriptor import FieldDescriptor as FD

from machinery.patch import mergekeys

# Messages that are scalars in JSON (codec maps them to strings or numbers)
# or free-form JSON.
_SCALAR_MESSAGES = {"kctl.v1.IntOrString", "google.protobuf.Timestamp", "google.protobuf.Struct"}


# ------------------------------------------------------------------ schema

@dataclass(frozen=True)
class Type:
    kind: str                     # "struct", "map", "list", "scalar"
    desc: object = None           # struct: its message descriptor
    elem: "Type | None" = None    # map / list: the element type
    atomic: bool = False
    list_kind: str = "atomic"     # list: "atomic", "set", "map"
    keys: tuple = ()              # list-map keys
    key_defaults: tuple = ()      # (key, default) for keys with a default

    def field(self, name: str) -> "Type | None":
        """The type of a struct field or a map value (None: not declared)."""
        if self.kind == "map":
            return self.elem
        if self.kind == "struct":
            return field_type(self.desc, name)
        return None


SCALAR = Type("scalar")


def struct_type(desc) -> Type:
    return Type("struct", desc=desc, atomic=mergekeys.is_atomic_struct(desc))


def _value_type(f) -> Type:
    if f.type == FD.TYPE_MESSAGE and f.message_type.full_name not in _SCALAR_MESSAGES:
        return struct_type(f.message_type)
    return SCALAR


@lru_cache(maxsize=None)
def field_type(desc, json_name: str) -> Type | None:
    f = next((x for x in desc.fields if x.json_name == json_name), None)
    if f is None:
        return None
    if f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
        return Type("map", elem=_value_type(f.message_type.fields_by_name["value"]),
                    atomic=mergekeys.is_atomic_map(desc, json_name))
    if f.is_repeated:
        elem = _value_type(f)
        kind, keys = mergekeys.list_type(desc, json_name)
        defaults = ()
        if elem.kind == "struct":
            defaults = tuple((k, mergekeys.key_default(elem.desc, k)) for k in keys
                             if mergekeys.key_default(elem.desc, k) is not None)
        return Type("list", elem=elem, atomic=kind == "atomic", list_kind=kind, keys=keys,
                    key_defaults=defaults)
    return _value_type(f)


# ------------------------------------------------------------ path elements

def _freeze(v):
    return v if v is None or isinstance(v, (str, int, float, bool)) else ("json", _dumps(v))


def _thaw(v):
    return json.loads(v[1]) if isinstance(v, tuple) else v


def item_element(t: Type, item):
    """The path element of a list item (listItemToPathElement); None when
    the item cannot be keyed (a keyed-list item without any key)."""
    if t.list_kind == "set":
        return ("v", _freeze(item))
    if t.list_kind == "map":
        if not isinstance(item, dict):
            return None
        defaults = dict(t.key_defaults)
        pairs = []
        for k in t.keys:
            if k in item:
                pairs.append((k, _freeze(item[k])))
            elif k in defaults:
                pairs.append((k, defaults[k]))
        return ("k", tuple(sorted(pairs))) if pairs else None
    return None


def _dumps(v) -> str:
    """Go's encoding/json (jsoniter, standard-library compatible): compact,
    HTML characters escaped."""
    s = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def element_key(pe) -> str:
    kind, v = pe
    if kind == "f":
        return "f:" + v
    if kind == "k":
        return "k:" + _dumps({name: _thaw(x) for name, x in v})
    if kind == "v":
        return "v:" + _dumps(_thaw(v))
    return f"i:{v}"


def parse_element(s: str):
    kind, sep, rest = s.partition(":")
    if sep != ":" or kind not in ("f", "k", "v", "i"):
        raise ValueError(f"unknown path element type: {s!r}")
    if kind == "f":
        return ("f", rest)
    if kind == "i":
        return ("i", int(rest))
    value = json.loads(rest)
    if kind == "v":
        return ("v", _freeze(value))
    if not isinstance(value, dict):
        raise ValueError(f"a key path element must be an object: {s!r}")
    return ("k", tuple(sorted((k, _freeze(x)) for k, x in value.items())))


def _show(v) -> str:
    """value.ToString: strings quoted, numbers and booleans bare."""
    v = _thaw(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v) if not isinstance(v, (dict, list)) else _dumps(v)


def path_string(path) -> str:
    out = []
    for kind, v in path:
        if kind == "f":
            out.append("." + v)
        elif kind == "k":
            out.append("[" + ",".join(f"{name}={_show(x)}" for name, x in v) + "]")
        elif kind == "v":
            out.append(f"[={_show(v)}]")
        else:
            out.append(f"[{v}]")
    return "".join(out)


def element_order(pe):
    """PathElement.Compare: fields, then keys, then values, then indices."""
    kind, v = pe
    rank = "fkvi".index(kind)
    return (rank, element_key(pe))


# -------------------------------------------------------------- FieldsV1

def _tree(paths: set) -> dict:
    """The paths as nested dicts keyed by path element."""
    tree: dict = {}
    for p in paths:
        node = tree
        for pe in p:
            node = node.setdefault(pe, {})
    return tree


def to_fields_v1(paths: set) -> dict:
    """The FieldsV1 tree of a set of paths."""
    def render(node: dict, prefix: tuple) -> dict:
        out = {}
        if prefix in paths and node:
            out["."] = {}
        for pe in sorted(node, key=element_order):
            out[element_key(pe)] = render(node[pe], prefix + (pe,))
        return out

    return render(_tree(paths), ())


def iterate(paths: set) -> list:
    """Set.Iterate's order: at each level the members, then the children,
    each sorted as path elements sort."""
    out: list = []

    def walk(node: dict, prefix: tuple):
        kids = sorted(node, key=element_order)
        out.extend(prefix + (pe,) for pe in kids if prefix + (pe,) in paths)
        for pe in kids:
            walk(node[pe], prefix + (pe,))

    walk(_tree(paths), ())
    return out


def from_fields_v1(tree: dict) -> set:
    """The set of paths a FieldsV1 tree encodes (ValueError if malformed)."""
    out: set = set()

    def walk(node, prefix: tuple):
        if not isinstance(node, dict):
            raise ValueError(f"expected an object at {path_string(prefix) or '.'}")
        for key, child in node.items():
            if key == ".":
                out.add(prefix)
                continue
            p = prefix + (parse_element(key),)
            if isinstance(child, dict) and not child:
                out.add(p)
            else:
                walk(child, p)

    walk(tree or {}, ())
    return out


# The field manager's entries (apiserver/fieldmanager.py) carry the same few field sets write
# after write: every status update of a kind, every manager that did not change.  For callers
# that never change what they pass or get back, both directions are remembered.
SHARED_FORMS = 1024
_trees: dict[frozenset, dict] = {}
_sets: dict[int, tuple[dict, frozenset]] = {}


def to_fields_v1_shared(paths: set) -> dict:
    """to_fields_v1(paths), one tree shared by every caller with an equal set: read only."""
    key = frozenset(paths)
    tree = _trees.get(key)
    if tree is None:
        tree = to_fields_v1(key)
        if len(_trees) >= SHARED_FORMS:
            _trees.clear()
        _trees[key] = tree
    return tree


def from_fields_v1_shared(tree: dict) -> set:
    """from_fields_v1(tree), a set of its own, for a tree nobody changes: remembered by the
    tree's identity (the memo holds the tree, so its id is not reused while remembered)."""
    hit = _sets.get(id(tree))
    if hit is None or hit[0] is not tree:
        hit = (tree, frozenset(from_fields_v1(tree)))
        if len(_sets) >= SHARED_FORMS:
            _sets.clear()
        _sets[id(tree)] = hit
    return set(hit[1])


# ------------------------------------------------------------- set helpers

def with_prefix(paths: set, pe) -> set:
    """Set.WithPrefix: the paths under `pe`, with `pe` taken off."""
    return {p[1:] for p in paths if len(p) > 1 and p[0] == pe}


def ensure_named_fields_are_members(paths: set, root: Type) -> set:
    """Set.EnsureNamedFieldsAreMembers: every struct field on the way to a
    member becomes a member too (map keys and list items do not)."""
    out = set(paths)
    for p in paths:
        t = root
        for i, pe in enumerate(p[:-1]):
            if t is None:
                break
            if pe[0] == "f" and t.kind == "struct":
                out.add(p[:i + 1])
            t = t.field(pe[1]) if pe[0] == "f" else (t.elem if t.kind == "list" else None)
    return out
