"""`metadata.managedFields` in and out, and the 409 an apply conflict gets,
as k8s.io/apimachinery/pkg/util/managedfields/internal does them.

Managers are keyed as BuildManagerIdentifier keys them: manager name,
operation, subresource, and the apiVersion for Update entries only (an
applier keeps one entry whatever version it applies; time is never part of
the key). Entries come out ordered as sortEncodedManagedFields orders them
(operation, time, manager, apiVersion, subresource); beyond
MAX_UPDATE_MANAGERS Update entries the oldest are merged into one
"ancient-changes" entry (capmanagers.go).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from machinery import errors
from machinery.patch.fieldpath import from_fields_v1, iterate, path_string, to_fields_v1
from machinery.pb import api_pb2

APPLY, UPDATE = "Apply", "Update"
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"


@dataclass(eq=False)
class Entry:
    manager: str
    operation: str
    api_version: str
    fields: set = field(default_factory=set)
    time: str | None = None
    subresource: str = ""

    @property
    def key(self) -> tuple:
        return (self.manager, self.operation,
                "" if self.operation == APPLY else self.api_version, self.subresource)

    def describe(self) -> str:
        """printManager: `"kubectl" using apps/v1` for an updater, `"kubectl"` for an applier."""
        s = f'"{self.manager}"'
        if self.subresource:
            s += f' with subresource "{self.subresource}"'
        if self.operation == UPDATE:
            s += f" using {self.api_version}"
        return s


Managers = dict  # Entry.key -> Entry


def decode(entries, fields_of=from_fields_v1) -> Managers:
    """DecodeManagedFields; ValueError on a malformed entry.  fields_of: what reads a fieldsV1
    (fieldpath.from_fields_v1_shared for entries nobody changes)."""
    out: Managers = {}
    for e in entries or ():
        if not isinstance(e, dict):
            raise ValueError("a managedFields entry must be an object")
        if e.get("fieldsType") != "FieldsV1":
            raise ValueError(f'can\'t decode managed fields with fieldsType "{e.get("fieldsType", "")}"')
        if e.get("operation") not in (APPLY, UPDATE):
            raise ValueError(f'operation must be `Apply` or `Update`, got "{e.get("operation", "")}"')
        entry = Entry(manager=e.get("manager", ""), operation=e.get("operation", ""),
                      api_version=e.get("apiVersion", ""), time=e.get("time"),
                      subresource=e.get("subresource", ""),
                      fields=fields_of(e.get("fieldsV1") or {}))
        if entry.key in out:
            raise ValueError(f"duplicate entry for manager {entry.describe()}")
        out[entry.key] = entry
    return out


def is_reset(entries) -> bool:
    """isResetManagedFields: `[]` or `[{}]` sent by a client clears ownership."""
    return isinstance(entries, list) and (entries == [] or entries == [{}])


def encode(managers: Managers, tree_of=to_fields_v1) -> list[dict]:
    """The entries, sorted; tree_of renders a field set (fieldpath.to_fields_v1_shared for
    entries nobody changes)."""
    out = []
    for e in sorted(managers.values(), key=lambda e: (e.operation, e.time or "", e.manager,
                                                      e.api_version, e.subresource)):
        if not e.fields:
            continue
        d = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version}
        if e.time:
            d["time"] = e.time
        d["fieldsType"] = "FieldsV1"
        d["fieldsV1"] = tree_of(e.fields)
        if e.subresource:
            d["subresource"] = e.subresource
        out.append(d)
    return out


def cap_update_managers(managers: Managers, limit: int = MAX_UPDATE_MANAGERS) -> Managers:
    """capUpdateManagers: merge the oldest Update entries, per apiVersion,
    into an `ancient-changes` entry until at most `limit` remain."""
    updaters = sorted((e for e in managers.values() if e.operation == UPDATE),
                      key=lambda e: (e.time or "", e.key))
    length = len(updaters)
    first_of_version: dict[str, Entry] = {}
    for e in updaters:
        if length <= limit:
            break
        first = first_of_version.get(e.api_version)
        if first is None:
            first_of_version[e.api_version] = e
            continue
        bucket_key = (ANCIENT_CHANGES, UPDATE, e.api_version, "")
        if bucket_key not in managers:
            managers.pop(first.key, None)
            managers[bucket_key] = Entry(ANCIENT_CHANGES, UPDATE, e.api_version, set(first.fields),
                                         first.time)
        bucket = managers[bucket_key]
        bucket.fields |= e.fields
        bucket.time = e.time
        managers.pop(e.key, None)
        length -= 1
    return managers


# --------------------------------------------------------------- conflicts

def conflict_error(conflicts: dict) -> errors.Conflict:
    """NewConflictError: `conflicts` maps Entry -> the set of paths in conflict."""
    flat = [(e, p) for e in sorted(conflicts, key=lambda e: e.key) for p in iterate(conflicts[e])]
    causes = [api_pb2.StatusCause(reason="FieldManagerConflict",
                                  message=f"conflict with {e.describe()}",
                                  field=path_string(p)) for e, p in flat]
    if len(flat) == 1:
        e, p = flat[0]
        message = f"Apply failed with 1 conflict: conflict with {e.describe()}: {path_string(p)}"
    else:
        lines = []
        for e in sorted(conflicts, key=lambda e: e.describe()):
            lines.append(f"conflicts with {e.describe()}:")
            lines.extend(f"- {path_string(p)}" for p in iterate(conflicts[e]))
        message = f"Apply failed with {len(flat)} conflicts: " + "\n".join(lines)
    return errors.Conflict(message, causes=causes)
