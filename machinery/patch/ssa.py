"""Server-side apply and field ownership, as Kubernetes' field manager does
them (k8s.io/apimachinery/pkg/util/managedfields/internal over
sigs.k8s.io/structured-merge-diff/v6 merge/update.go).

    server_side_apply(live, config, *, manager, force, info, now) -> dict
    track_update(old, new, *, manager, operation, info, now) -> dict
    update_entries(old, new, *, manager, operation, info, now) -> list   (its managedFields only)

Both take and return manifest dicts (codec.to_dict's form); neither
modifies its arguments. `now` is the RFC 3339 time written into the
entries this write touches.

Apply (Updater.Apply): the config is merged over the live object; the
manager's field set becomes exactly the config's fields; fields the
manager applied last time and no longer applies are removed from the
object unless another manager owns them (prune, addBackOwnedItems,
addBackDanglingItems); then, as for any write, the fields whose value
changed are taken from their other owners (Updater.update). If another
manager owns a field whose value the apply changes, that is a conflict:
409 `Apply failed with 1 conflict: conflict with "kubectl-edit" using
apps/v1: .spec.replicas`, one cause per field — unless `force`, which takes
the fields over. Applying the same value as another manager shares the
field.

Update (every create, update and patch that is not an apply): the fields
this write added or changed go to `manager` (on top of what it had), and
leave every other manager; removed fields leave every manager. A create
starts from the kind's zero object (mergekeys.zero_object), as Kubernetes'
does, so the creator's entry reads like Kubernetes' (`f:spec` without `.`).
A client may send managedFields with its write (used as given), or `[]` to
clear them.

On the main resource of a kind with a status subresource the status is
not tracked (it is reset there, as Kubernetes' strategies reset it); on
`status` the spec is not. apiVersion, kind and the server-owned metadata
(name, namespace, uid, resourceVersion, generation, creationTimestamp,
managedFields) are never owned (stripmeta.go).
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Callable, Hashable

from machinery import errors
from machinery.kinds import KindInfo
from machinery.patch import managedfields as mf
from machinery.patch import mergekeys
from machinery.patch import typed
from machinery.patch.fieldpath import (ensure_named_fields_are_members, from_fields_v1, from_fields_v1_shared,
                                       struct_type, to_fields_v1, to_fields_v1_shared)

CURRENT = ("current-operation", mf.UPDATE, "", "")
_META = (("f", "metadata"),)
STRIP = {(("f", "apiVersion"),), (("f", "kind"),), _META} | {
    _META + (("f", name),) for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
        "generation", "managedFields", "resourceVersion")}

__all__ = ["create_entries", "server_side_apply", "track_update", "update_entries"]


# ------------------------------------------------------------------ helpers

def _gvk(api_version, kind) -> str:
    """schema.GroupVersionKind's String(): `apps/v1, Kind=Deployment`, `/v1, Kind=Pod`."""
    av = api_version if isinstance(api_version, str) else ""
    group, _, version = av.rpartition("/")
    return f"{group}/{version}, Kind={kind if isinstance(kind, str) else ''}"


def _ignored(info: KindInfo, subresource: str) -> set:
    return {(("f", top),) for top in ignored_tops(info, subresource)}


def ignored_tops(info: KindInfo, subresource: str) -> tuple[str, ...]:
    """The top-level fields (JSON names) an Update on `subresource` neither owns nor takes from
    anyone (the reset fields): a status write's spec, an update's status.  Nothing under them
    is compared, so a caller may leave them out of the objects it passes."""
    if subresource == "status":
        return ("spec",)
    return ("status",) if info.has_status else ()


def _exclude(paths: set, ignored: set) -> set:
    """RecursiveDifference: drop the ignored paths and everything under them."""
    return {p for p in paths if not any(p[:len(i)] == i for i in ignored)}


def _without_ignored(obj: dict, ignored: set) -> dict:
    """obj (shallow) without its ignored top-level fields (a status update's spec, an update's
    status): what is under them is not compared at all rather than compared and then excluded."""
    tops = [p[0][1] for p in ignored if len(p) == 1 and p[0][0] == "f"]
    if not any(k in obj for k in tops):
        return obj
    return {k: v for k, v in obj.items() if k not in tops}


def _without_managed_fields(obj: dict | None) -> dict:
    obj = copy.deepcopy(obj) if obj else {}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _entries(managers: mf.Managers, shared: bool = False) -> list[dict]:
    """The managedFields entries; shared: their fieldsV1 trees shared with other calls (read only)."""
    return mf.encode(mf.cap_update_managers(managers), to_fields_v1_shared if shared else to_fields_v1)


def _read_only_without_managed_fields(obj: dict | None) -> dict:
    """obj without metadata.managedFields, sharing everything else with obj: for
    readers only (compare), where a deep copy would only cost time."""
    obj = dict(obj) if obj else {}
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return obj


@lru_cache(maxsize=None)
def _zero(descriptor) -> dict:
    """mergekeys.zero_object, built once per kind (read only: compared, never changed)."""
    return mergekeys.zero_object(descriptor)


def _with_managers(obj: dict, managers: mf.Managers) -> dict:
    obj = typed.drop_nulls(obj)          # a new dict: obj itself is not modified
    entries = _entries(managers)
    meta = obj.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)
    return obj


def _live_managers(live: dict | None) -> mf.Managers:
    try:
        return mf.decode(((live or {}).get("metadata") or {}).get("managedFields"))
    except ValueError as exc:
        raise errors.ApiError(f"failed to decode managed fields: {exc}") from exc


def _decode_or_empty(entries, shared: bool = False) -> mf.Managers:
    """shared: entries nobody changes (their field sets are remembered, fieldpath)."""
    try:
        return mf.decode(entries, from_fields_v1_shared if shared else from_fields_v1)
    except ValueError:
        return {}


def _update(old: dict, new: dict, managers: mf.Managers, current: tuple, force: bool,
            t, ignored: set) -> tuple[set, set]:
    """Updater.update: take changed fields from the other managers (or
    report them as conflicts); returns (added | modified, removed)."""
    added, modified, removed = (_exclude(s, ignored) for s in typed.compare(old, new, t))
    changed = added | modified
    conflicts = {}
    for key, entry in managers.items():
        if key == current:
            continue
        lost = entry.fields & changed
        if lost:
            conflicts[entry] = lost
    if conflicts and not force:
        raise mf.conflict_error(conflicts)
    for entry in list(managers.values()):
        if entry.key == current:
            continue
        entry.fields = entry.fields - changed - removed
        if not entry.fields:
            del managers[entry.key]
    return changed, removed


# -------------------------------------------------------------------- apply

def _check_config(config, info: KindInfo):
    if not isinstance(config, dict):
        kind = "array" if isinstance(config, list) else "value"
        raise errors.BadRequest(f"error decoding patch: json: cannot unmarshal {kind} into Go "
                                "value of type map[string]interface {}")
    api_version, kind = config.get("apiVersion"), config.get("kind")
    if (api_version, kind) != (info.api_version, info.kind):
        raise errors.BadRequest(f"invalid object type: {_gvk(api_version, kind)}")
    meta = config.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise errors.BadRequest("metadata.managedFields must be nil")
    errs = typed.validate(config, struct_type(info.message.DESCRIPTOR))
    if errs:
        meta = meta if isinstance(meta, dict) else {}
        where = f"{meta.get('namespace', '')}/{meta.get('name', '')}; {_gvk(api_version, kind)}"
        body = errs[0] if len(errs) == 1 else "errors:\n  " + "\n  ".join(errs)
        raise errors.BadRequest(f"failed to create typed patch object ({where}): {body}")


def _prune(merged, managers: mf.Managers, last: set | None, t):
    """Updater.prune: drop what the applier owned before and no longer
    applies, keeping what anybody else owns."""
    if not last:
        return merged
    last_e = ensure_named_fields_are_members(last, t)
    pruned = typed.remove_items(merged, last_e, t) or {}
    owned = set().union(*(e.fields for e in managers.values()))
    merged_set = ensure_named_fields_are_members(typed.to_field_set(merged, t), t)
    pruned_set = ensure_named_fields_are_members(typed.to_field_set(pruned, t), t)
    owned_e = ensure_named_fields_are_members(owned, t)
    pruned = typed.remove_items(merged, merged_set - (pruned_set | owned_e), t) or {}
    pruned_set = ensure_named_fields_are_members(typed.to_field_set(pruned, t), t)
    return typed.remove_items(merged, (merged_set - pruned_set) & last_e, t) or {}


def server_side_apply(live: dict | None, config: dict, *, manager: str, force: bool,
                      info: KindInfo, now: str, subresource: str = "") -> dict:
    """The object after `manager` applies `config` to `live` (None: create)."""
    if not manager:
        raise errors.Invalid('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                             "value: is required for apply requests", kind="PatchOptions",
                             group="meta.k8s.io",
                             causes=[errors.required("fieldManager",
                                                     "is required for apply requests").to_cause()])
    _check_config(config, info)
    t = struct_type(info.message.DESCRIPTOR)
    ignored = _ignored(info, subresource)
    managers = _live_managers(live)
    live_obj = _without_managed_fields(live)
    me = mf.Entry(manager, mf.APPLY, info.api_version, subresource=subresource)
    previous = managers.get(me.key)
    last = previous.fields if previous else None
    merged = typed.merge(live_obj, copy.deepcopy(config), t)
    me.fields = _exclude(typed.to_field_set(config, t), ignored)
    me.time = previous.time if previous else None
    managers[me.key] = me
    new = _prune(merged, managers, last, t)
    _update(live_obj, new, managers, me.key, force, t, ignored)
    me.fields -= STRIP
    if not me.fields:
        managers.pop(me.key, None)
    if not typed.equal(typed.drop_nulls(new), live_obj):
        me.time = now        # managedFieldsUpdater: only an apply that changed the object
    return _with_managers(new, managers)


# ------------------------------------------------------------------- update

def _tracked(old: dict | None, new: dict, manager: str, operation: str, info: KindInfo, now: str,
             subresource: str, shared: bool = False) -> tuple[dict, mf.Managers]:
    """Updater.update for an Update: (new without managedFields, the managers after it).
    shared: old's and new's managedFields entries are never changed by anyone (update_entries)."""
    t = struct_type(info.message.DESCRIPTOR)
    sent = ((new or {}).get("metadata") or {}).get("managedFields")
    if not subresource and mf.is_reset(sent):
        managers = {}
    else:         # decodeLiveOrNew: what was sent, else the live object's, else none
        managers = {} if subresource else _decode_or_empty(sent, shared)
        managers = managers or _decode_or_empty(((old or {}).get("metadata") or {}).get("managedFields"), shared)
    old_obj = _read_only_without_managed_fields(old) if old is not None else _zero(info.message.DESCRIPTOR)
    new_obj = _read_only_without_managed_fields(new)
    managers.pop(CURRENT, None)
    ignored = _ignored(info, subresource)
    changed, _ = _update(_without_ignored(old_obj, ignored), _without_ignored(new_obj, ignored), managers, CURRENT,
                         True, t, ignored)
    mine = changed - STRIP
    if mine:
        entry = mf.Entry(manager or "unknown", operation, info.api_version, subresource=subresource)
        previous = managers.get(entry.key)
        entry.fields = mine | (previous.fields if previous else set())
        entry.time = now
        managers[entry.key] = entry
    return new_obj, managers


def track_update(old: dict | None, new: dict, *, manager: str, operation: str = mf.UPDATE,
                 info: KindInfo, now: str, subresource: str = "") -> dict:
    """`new` with managedFields recording that `manager` wrote it over `old`
    (None: a create). `operation` is "Update" for create, update and patch."""
    new_obj, managers = _tracked(old, new, manager, operation, info, now, subresource)
    return _with_managers(new_obj, managers)


def update_entries(old: dict | None, new: dict, *, manager: str, operation: str = mf.UPDATE,
                   info: KindInfo, now: str, subresource: str = "") -> list[dict]:
    """Only the managedFields entries of track_update(...): for a caller that
    holds the object as a message and sets just that list (no copy of the
    object without its nulls is made). The entries are read only, and the
    managedFields entries of old and new are taken as never changing: their
    field sets are remembered by identity (fieldpath.from_fields_v1_shared).

    A create that sends no managedFields gets one entry owning every field it
    set but the server-owned ones, so its entries depend only on the object
    without those (`_create_key`): every pod of a template, every replacement
    a ReplicaSet creates, has the same. They are computed once per such object
    and reused with this write's time."""
    if old is not None or ((new.get("metadata") or {}).get("managedFields")):
        return _entries(_tracked(old, new, manager, operation, info, now, subresource, True)[1], shared=True)
    return create_entries(_create_key(new), lambda: new, manager=manager, operation=operation, info=info,
                          now=now, subresource=subresource)


def create_entries(shape: Hashable, new: Callable[[], dict], *, manager: str, operation: str = mf.UPDATE,
                   info: KindInfo, now: str, subresource: str = "") -> list[dict]:
    """update_entries(None, new(), ...) of a create that sends no managedFields,
    cached by `shape`: a key that is equal only for objects whose creates own
    the same fields (`_create_key` of the dict: equal but for the server-owned
    metadata; apiserver/fieldmanager.py keys by the message and makes the dict,
    `new()`, only when the cache misses)."""
    key = (info.kind, manager, operation, subresource, shape)
    cached = _creates.get(key)
    if cached is None:
        cached = _entries(_tracked(None, new(), manager, operation, info, now, subresource, True)[1], shared=True)
        if len(_creates) >= CREATE_CACHE:
            _creates.clear()
        _creates[key] = cached
    return [{**e, "time": now} if "time" in e else e for e in cached]


CREATE_CACHE = 1024
_creates: dict[tuple, list[dict]] = {}
SERVER_OWNED = frozenset(p[1][1] for p in STRIP if len(p) == 2 and p[0] == _META[0])   # metadata, JSON names


def _create_key(new: dict) -> str:
    """What a create's entries depend on: the object without the server-owned
    metadata (name, namespace, uid, ...), as text."""
    meta = new.get("metadata")
    if isinstance(meta, dict):
        new = {**new, "metadata": {k: v for k, v in meta.items() if k not in SERVER_OWNED}}
    return repr(new)
