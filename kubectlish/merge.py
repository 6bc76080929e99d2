"""The three-way merge behind `kctl apply`, on manifest dicts.

Inputs are the last-applied configuration (what the user applied before,
from the `kubectl.kubernetes.io/last-applied-configuration` annotation), the
new manifest, and the live object. The result is the live object with:

* every field the new manifest sets, set to the manifest's value;
* every field the last-applied configuration had and the manifest no longer
  has, removed (that is how deleting a line from the file deletes it from
  the object);
* every other live field kept: server defaults, allocated clusterIP and
  nodePorts, labels and annotations that other tools added.

Maps recurse. Lists of objects that Kubernetes merges by key (containers,
env, ports, volumes, volumeMounts, ...: machinery/patch/mergekeys.py) are merged item by item with
the same three-way rule, keeping the manifest's order and the live items
nobody applied; so a Service's allocated `nodePort`, absent from the file,
survives. Every other list (args, command, tolerations, taints, ...) is replaced
wholesale by the manifest's, as strategic merge patch does for atomic lists.
"""
from __future__ import annotations

import copy
import json

from machinery.patch.mergekeys import PATCH_META

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# Strategic-merge keys of the lists kctl's kinds have (field name -> key),
# from the one table of Kubernetes' patch metadata; `ports` is the one field
# name with two keys (container and service ports), told apart below.
MERGE_KEYS = {field: key for (_, field), (_, key) in PATCH_META.items() if key and field != "ports"}
# `ports` means container ports or service ports, told apart by their key.
PORT_KEYS = ("containerPort", "port")

# Fields the server owns: never sent from a manifest, never stored in the
# last-applied configuration (so `get -o yaml | apply` is a no-op).
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp",
                   "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink")


def strip_server_fields(manifest: dict) -> dict:
    """A copy of the manifest without status and server-populated metadata."""
    m = copy.deepcopy(manifest)
    m.pop("status", None)
    meta = m.get("metadata")
    if isinstance(meta, dict):
        for k in SERVER_METADATA:
            meta.pop(k, None)
        ann = meta.get("annotations")
        if isinstance(ann, dict):
            ann.pop(LAST_APPLIED, None)
            if not ann:
                meta.pop("annotations", None)
    return m


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def last_applied_json(manifest: dict) -> str:
    """What goes in the annotation, byte for byte what kubectl writes
    (GetModifiedConfiguration): the manifest with `metadata.annotations`
    present (empty if it has none) and without the annotation itself, as Go
    encodes it: compact, keys sorted, `<>&` escaped, UTF-8, a final newline.
    So `kubectl apply` after `kctl apply` of the same file is `unchanged`,
    and the other way round."""
    m = copy.deepcopy(manifest)
    meta = m.setdefault("metadata", {})
    notes = meta.get("annotations")
    meta["annotations"] = {k: v for k, v in notes.items() if k != LAST_APPLIED} if isinstance(notes, dict) else {}
    text = json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in _GO_ESCAPES.items():
        text = text.replace(ch, esc)
    return text + "\n"


def with_last_applied(manifest: dict) -> dict:
    m = copy.deepcopy(manifest)
    meta = m.setdefault("metadata", {})
    meta.setdefault("annotations", {})[LAST_APPLIED] = last_applied_json(manifest)
    return m


def read_last_applied(live: dict) -> dict | None:
    raw = (live.get("metadata") or {}).get("annotations", {}).get(LAST_APPLIED)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


QUANTITY_MAPS = {"limits", "requests", "capacity", "allocatable"}


def canonical_quantities(obj):
    """Write resource quantities the way the server stores them (`0.5` ->
    `500m`), in place, so a merged object compares equal to the live one and
    immutable pod fields are not "changed" by spelling alone."""
    from machinery import quantity
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in QUANTITY_MAPS and isinstance(v, dict):
                for q, amount in v.items():
                    if isinstance(amount, str) and quantity.is_valid(amount):
                        v[q] = quantity.canonical(amount)
            elif k == "sizeLimit" and isinstance(v, str) and quantity.is_valid(v):
                obj[k] = quantity.canonical(v)
            else:
                canonical_quantities(v)
    elif isinstance(obj, list):
        for item in obj:
            canonical_quantities(item)
    return obj


def three_way(last: dict | None, new: dict, live: dict, *, live_order: bool = False) -> dict:
    """The merged object (a new dict; inputs are not modified).

    Keyed lists follow the manifest's order (apply: the file says what the
    list is), or with live_order the live list's order with new items
    appended (a strategic merge patch without $setElementOrder)."""
    merged = canonical_quantities(_merge_maps(last or {}, new, live, live_order))
    if new.get("kind") == "Service":
        drop_type_dependent_fields(merged, new, live)
    return merged


def drop_type_dependent_fields(merged: dict, new: dict, live: dict) -> None:
    """A Service whose type changes away from NodePort/LoadBalancer loses
    the values the server allocated for the old type (nodePorts,
    externalTrafficPolicy) unless the file sets them — what the Kubernetes
    apiserver does itself on such an update (dropTypeDependentFields)."""
    spec, new_spec = merged.get("spec") or {}, new.get("spec") or {}
    old_type = (live.get("spec") or {}).get("type") or "ClusterIP"
    new_type = spec.get("type") or "ClusterIP"
    if old_type == new_type or new_type in ("NodePort", "LoadBalancer"):
        return
    if "externalTrafficPolicy" not in new_spec:
        spec.pop("externalTrafficPolicy", None)
    file_ports = {json.dumps(p.get("port")): p for p in new_spec.get("ports") or [] if isinstance(p, dict)}
    for p in spec.get("ports") or []:
        if isinstance(p, dict) and "nodePort" not in file_ports.get(json.dumps(p.get("port")), {}):
            p.pop("nodePort", None)


def _merge_maps(last: dict, new: dict, live: dict, live_order: bool = False) -> dict:
    out = copy.deepcopy(live) if isinstance(live, dict) else {}
    for key in last:
        if key not in new:
            out.pop(key, None)
    for key, nv in new.items():
        if nv is None:
            out.pop(key, None)
            continue
        lv = out.get(key)
        ov = last.get(key)
        if isinstance(nv, dict) and isinstance(lv, dict):
            out[key] = _merge_maps(ov if isinstance(ov, dict) else {}, nv, lv, live_order)
        elif isinstance(nv, list) and isinstance(lv, list):
            out[key] = _merge_lists(key, ov if isinstance(ov, list) else [], nv, lv, live_order)
        else:
            out[key] = copy.deepcopy(nv)
    return out


def _merge_key(field: str, *lists: list) -> str | None:
    items = [i for lst in lists for i in lst]
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "ports":
        for k in PORT_KEYS:
            if all(k in i for i in items):
                return k
        return None
    key = MERGE_KEYS.get(field)
    if key is None or not all(key in i for i in items):
        return None
    for lst in lists:
        keys = [i[key] for i in lst]
        if len(keys) != len(set(map(json.dumps, keys))):
            return None  # duplicate keys: merging would be ambiguous
    return key


def _merge_lists(field: str, last: list, new: list, live: list, live_order: bool = False) -> list:
    key = _merge_key(field, last, new, live)
    if key is None:
        return copy.deepcopy(new)
    last_by = {json.dumps(i[key]): i for i in last}
    live_by = {json.dumps(i[key]): i for i in live}
    new_by = {json.dumps(i[key]): i for i in new}

    def merged(k):
        if k in live_by:
            return _merge_maps(last_by.get(k, {}), new_by[k], live_by[k], live_order)
        return copy.deepcopy(new_by[k])
    out = []
    if live_order:
        for item in live:
            k = json.dumps(item[key])
            if k in new_by:
                out.append(merged(k))
            elif k not in last_by:
                out.append(copy.deepcopy(item))
        out += [merged(k) for k in new_by if k not in live_by]
        return out
    out = [merged(k) for k in new_by]
    for item in live:
        k = json.dumps(item[key])
        if k not in new_by and k not in last_by:
            out.append(copy.deepcopy(item))  # added by someone else: keep
    return out
