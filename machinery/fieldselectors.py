"""Field selectors, after k8s.io/apimachinery/pkg/fields.

`--field-selector spec.nodeName=n1,status.phase!=Running` supports `=`,
`==` and `!=` only, on the per-kind field paths Kubernetes offers
(`supported_fields(kind)`); `field_value(obj, path)` extracts them and
raises `ValueError('field label not supported: X')` for any other path.
Values may escape `\\,` `\\=` and `\\\\`.

Label selectors are machinery/selectors.py, which re-exports these names so
`selectors.parse_field_selector` and friends keep working.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from machinery import kinds

NOT_EQUALS = "!="          # the operator as machinery/selectors.py spells it


def _pod(o, p):
    s, st = o.spec, o.status
    return {"spec.nodeName": lambda: s.node_name,
            "spec.restartPolicy": lambda: s.restart_policy,
            "spec.schedulerName": lambda: s.scheduler_name,
            "spec.serviceAccountName": lambda: s.service_account_name,
            "spec.hostNetwork": lambda: _bool(s.host_network),
            "status.phase": lambda: st.phase,
            "status.podIP": lambda: st.pod_ip,
            "status.nominatedNodeName": lambda: st.nominated_node_name}.get(p)


def _bool(b: bool) -> str:
    return "true" if b else "false"


def _event(o, p):
    io = o.involved_object
    return {"involvedObject.kind": lambda: io.kind,
            "involvedObject.namespace": lambda: io.namespace,
            "involvedObject.name": lambda: io.name,
            "involvedObject.uid": lambda: io.uid,
            "involvedObject.apiVersion": lambda: io.api_version,
            "involvedObject.resourceVersion": lambda: io.resource_version,
            "involvedObject.fieldPath": lambda: io.field_path,
            "reason": lambda: o.reason,
            "reportingComponent": lambda: o.reporting_component,
            "source": lambda: o.source.component,
            "type": lambda: o.type}.get(p)


_PER_KIND: dict[str, Callable] = {
    "Pod": _pod,
    "Node": lambda o, p: {"spec.unschedulable": lambda: _bool(o.spec.unschedulable)}.get(p),
    "Event": _event,
    "Service": lambda o, p: {"spec.type": lambda: o.spec.type,
                             "spec.clusterIP": lambda: o.spec.cluster_ip}.get(p),
    "Namespace": lambda o, p: {"status.phase": lambda: o.status.phase}.get(p),
    "ReplicaSet": lambda o, p: {"status.replicas": lambda: str(o.status.replicas)}.get(p),
}

FIELDS_BY_KIND: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
            "status.nominatedNodeName"),
    "Node": ("spec.unschedulable",),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    "Service": ("spec.type", "spec.clusterIP"),
    "Namespace": ("status.phase",),
    "ReplicaSet": ("status.replicas",),
}


def supported_fields(kind: str) -> tuple[str, ...]:
    extra = FIELDS_BY_KIND.get(kind, ())
    ns = ("metadata.namespace",) if kinds.BY_KIND[kind].namespaced else ()
    return ("metadata.name",) + ns + extra


def _check_field(kind: str, path: str) -> None:
    if path not in supported_fields(kind):
        raise ValueError(f"field label not supported: {path}")


def field_value(obj, path: str) -> str:
    """The string value of a selectable field of `obj` (`spec.nodeName` of a Pod).

    Raises ValueError('field label not supported: X') for other paths."""
    info = kinds.of(obj)
    if path == "metadata.name":
        return obj.metadata.name
    if path == "metadata.namespace" and info.namespaced:
        return obj.metadata.namespace
    kind = info.kind
    getter = _PER_KIND.get(kind, lambda o, p: None)(obj, path)
    if getter is None:
        raise ValueError(f"field label not supported: {path}")
    return getter()


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str          # "=", "==" or "!="
    value: str

    def matches(self, obj) -> bool:
        have = field_value(obj, self.field)
        return (have == self.value) if self.operator != NOT_EQUALS else (have != self.value)

    def __str__(self) -> str:
        esc = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{self.operator}{esc}"


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def validate_for(self, kind: str) -> None:
        """Raise ValueError('field label not supported: X') for paths `kind` lacks."""
        for r in self.requirements:
            _check_field(kind, r.field)

    def exact(self, path: str) -> str | None:
        """The value required by `path=value`, if any (lets the apiserver index)."""
        for r in self.requirements:
            if r.field == path and r.operator != NOT_EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def parse_field_selector(s: str, kind: str | None = None) -> FieldSelector:
    """Parse `a=b,c==d,e!=f` (values may escape `\\,` `\\=` `\\\\`).

    With `kind`, also checks that every path is selectable for that kind."""
    reqs = []
    if s and s.strip():
        for part in _split_unescaped(s, ","):
            m = re.fullmatch(r"([^=!\s\\]+)\s*(!=|==|=)(.*)", part.strip())
            if m is None:
                raise ValueError(f"invalid selector: '{s}'; can't understand '{part}'")
            key, op, raw = m.groups()
            reqs.append(FieldRequirement(key, op, _unescape(raw)))
    sel = FieldSelector(tuple(reqs))
    if kind is not None:
        sel.validate_for(kind)
    return sel
