"""Kubernetes' patch metadata for kctl's types, as a plain data table.

Kubernetes declares how each list merges in two vocabularies on its Go
types (k8s.io/api core/v1, apps/v1; k8s.io/apimachinery meta/v1):

* strategic merge patch reads the struct tags `patchStrategy:"merge"` and
  `patchMergeKey:"name"` (PATCH_META below);
* server-side apply (structured-merge-diff) reads the OpenAPI list and map
  types generated from `+listType=map|set|atomic`, `+listMapKey=...`,
  `+structType=atomic` and `+mapType=atomic` (LIST_TYPES, ATOMIC_*).

The two disagree on purpose in one place, and we keep the disagreement:
container and service ports merge by `containerPort` / `port` alone in a
strategic merge patch (so a TCP and a UDP port with the same number collapse
into one item, kubernetes/kubernetes#39188), while apply keys them by
`(containerPort, protocol)` with protocol defaulting to "TCP" (KEY_DEFAULTS).

Tables are keyed by the proto message's full name and the field's JSON
name; every repeated field of kctl's messages that Kubernetes does not list
here is atomic (replaced whole) in both vocabularies, as in Kubernetes:
tolerations and taints, for instance, have no merge key upstream.
VALUE_STRUCTS records which struct fields Go holds by value (see
zero_object). The openapi generator reads `patch_meta` to emit
`x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`.
"""
from __future__ import annotations

from google.protobuf.descriptor import Descriptor

# (message full name, json field) -> (patchStrategy tag, patchMergeKey or None)
PATCH_META: dict[tuple[str, str], tuple[str, str | None]] = {
    ("kctl.v1.ObjectMeta", "ownerReferences"): ("merge", "uid"),
    ("kctl.v1.ObjectMeta", "finalizers"): ("merge", None),
    ("kctl.v1.NodeSpec", "podCIDRs"): ("merge", None),
    ("kctl.v1.NodeStatus", "conditions"): ("merge", "type"),
    ("kctl.v1.NodeStatus", "addresses"): ("merge", "type"),
    ("kctl.v1.Container", "ports"): ("merge", "containerPort"),
    ("kctl.v1.Container", "env"): ("merge", "name"),
    ("kctl.v1.Container", "volumeMounts"): ("merge", "mountPath"),
    ("kctl.v1.PodSpec", "volumes"): ("merge,retainKeys", "name"),
    ("kctl.v1.PodSpec", "containers"): ("merge", "name"),
    ("kctl.v1.PodSpec", "initContainers"): ("merge", "name"),
    ("kctl.v1.PodSpec", "imagePullSecrets"): ("merge", "name"),
    ("kctl.v1.PodSpec", "hostAliases"): ("merge", "ip"),
    ("kctl.v1.PodSpec", "topologySpreadConstraints"): ("merge", "topologyKey"),
    ("kctl.v1.PodStatus", "conditions"): ("merge", "type"),
    ("kctl.v1.PodStatus", "podIPs"): ("merge", "ip"),
    ("kctl.v1.ServiceSpec", "ports"): ("merge", "port"),
    ("kctl.v1.ReplicaSetStatus", "conditions"): ("merge", "type"),
    ("kctl.v1.DeploymentSpec", "strategy"): ("retainKeys", None),
    ("kctl.v1.DeploymentStatus", "conditions"): ("merge", "type"),
}

# (message full name, json field) -> ("map", keys) | ("set", ()); absent = atomic.
LIST_TYPES: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("kctl.v1.ObjectMeta", "ownerReferences"): ("map", ("uid",)),
    ("kctl.v1.ObjectMeta", "finalizers"): ("set", ()),
    ("kctl.v1.ObjectMeta", "managedFields"): ("atomic", ()),
    ("kctl.v1.NodeSpec", "podCIDRs"): ("set", ()),
    ("kctl.v1.NodeStatus", "conditions"): ("map", ("type",)),
    ("kctl.v1.NodeStatus", "addresses"): ("map", ("type",)),
    ("kctl.v1.Container", "ports"): ("map", ("containerPort", "protocol")),
    ("kctl.v1.Container", "env"): ("map", ("name",)),
    ("kctl.v1.Container", "volumeMounts"): ("map", ("mountPath",)),
    ("kctl.v1.PodSpec", "volumes"): ("map", ("name",)),
    ("kctl.v1.PodSpec", "containers"): ("map", ("name",)),
    ("kctl.v1.PodSpec", "initContainers"): ("map", ("name",)),
    ("kctl.v1.PodSpec", "imagePullSecrets"): ("map", ("name",)),
    ("kctl.v1.PodSpec", "hostAliases"): ("map", ("ip",)),
    ("kctl.v1.PodSpec", "topologySpreadConstraints"): ("map", ("topologyKey", "whenUnsatisfiable")),
    ("kctl.v1.PodStatus", "conditions"): ("map", ("type",)),
    ("kctl.v1.PodStatus", "podIPs"): ("map", ("ip",)),
    ("kctl.v1.ServiceSpec", "ports"): ("map", ("port", "protocol")),
    ("kctl.v1.ReplicaSetStatus", "conditions"): ("map", ("type",)),
    ("kctl.v1.DeploymentStatus", "conditions"): ("map", ("type",)),
}

# Defaults of list-map key fields (`+default="TCP"`): an item that omits the
# key field is keyed by the default, as structured-merge-diff does.
KEY_DEFAULTS: dict[tuple[str, str], object] = {
    ("kctl.v1.ContainerPort", "protocol"): "TCP",
    ("kctl.v1.ServicePort", "protocol"): "TCP",
    ("kctl.v1.EndpointPort", "protocol"): "TCP",
}

# `+structType=atomic`: apply owns and replaces these objects whole.
ATOMIC_STRUCTS: frozenset[str] = frozenset({
    "kctl.v1.OwnerReference", "kctl.v1.LabelSelector", "kctl.v1.ObjectReference",
    "kctl.v1.ObjectFieldSelector", "kctl.v1.ResourceFieldSelector",
    "kctl.v1.ConfigMapKeySelector", "kctl.v1.SecretKeySelector",
    "kctl.v1.NodeSelector", "kctl.v1.NodeSelectorTerm",
    "kctl.v1.EndpointAddress", "kctl.v1.EndpointPort",
})

# `+mapType=atomic` map fields.
ATOMIC_MAPS: frozenset[tuple[str, str]] = frozenset({
    ("kctl.v1.PodSpec", "nodeSelector"),
    ("kctl.v1.ServiceSpec", "selector"),
})


# Struct fields Kubernetes' Go types hold by value, not by pointer: a new,
# empty object already has them (as `{}`), so a create does not add them and
# the creator's managedFields carry no `.` for them (`f:spec` without `.`).
VALUE_STRUCTS: frozenset[tuple[str, str]] = frozenset(
    [(f"kctl.v1.{kind}", "metadata") for kind in (
        "Namespace", "Node", "Pod", "Service", "Endpoints", "Event", "ReplicaSet", "Deployment",
        "Lease", "PodTemplateSpec")]
    + [(f"kctl.v1.{kind}", part) for kind in ("Namespace", "Node", "Pod", "Service", "ReplicaSet",
                                               "Deployment") for part in ("spec", "status")]
    + [("kctl.v1.Lease", "spec"), ("kctl.v1.NodeStatus", "nodeInfo"),
       ("kctl.v1.Container", "resources"), ("kctl.v1.PreferredSchedulingTerm", "preference"),
       ("kctl.v1.PodTemplateSpec", "spec"), ("kctl.v1.ContainerStatus", "state"),
       ("kctl.v1.ContainerStatus", "lastState"), ("kctl.v1.ServiceStatus", "loadBalancer"),
       ("kctl.v1.Event", "involvedObject"), ("kctl.v1.Event", "source"),
       ("kctl.v1.ReplicaSetSpec", "template"), ("kctl.v1.DeploymentSpec", "template"),
       ("kctl.v1.DeploymentSpec", "strategy"), ("kctl.discovery.v1.EndpointSlice", "metadata")])


def _name(descriptor: Descriptor | str) -> str:
    return descriptor if isinstance(descriptor, str) else descriptor.full_name


def patch_meta(descriptor: Descriptor | str, json_field: str) -> tuple[str, str | None] | None:
    """(patchStrategy, patchMergeKey) of a field, or None when Kubernetes
    declares none (the field is replaced whole by a strategic merge patch)."""
    return PATCH_META.get((_name(descriptor), json_field))


def list_type(descriptor: Descriptor | str, json_field: str) -> tuple[str, tuple[str, ...]]:
    """Apply's view of a repeated field: ("map", keys), ("set", ()) or ("atomic", ())."""
    return LIST_TYPES.get((_name(descriptor), json_field), ("atomic", ()))


def key_default(descriptor: Descriptor | str, json_field: str):
    """The default of a list-map key field, or None."""
    return KEY_DEFAULTS.get((_name(descriptor), json_field))


def is_atomic_struct(descriptor: Descriptor | str) -> bool:
    return _name(descriptor) in ATOMIC_STRUCTS


def is_atomic_map(descriptor: Descriptor | str, json_field: str) -> bool:
    return (_name(descriptor), json_field) in ATOMIC_MAPS


# List fields without `omitempty` inside value structs: null in a new object.
NULL_LISTS: frozenset[tuple[str, str]] = frozenset({("kctl.v1.PodSpec", "containers")})


def zero_object(descriptor: Descriptor) -> dict:
    """A new, empty object as Kubernetes' converter renders it: the value
    structs, nested, as `{}`, and the lists it never omits as null."""
    out = {}
    for f in descriptor.fields:
        if (descriptor.full_name, f.json_name) in VALUE_STRUCTS:
            out[f.json_name] = zero_object(f.message_type)
        elif (descriptor.full_name, f.json_name) in NULL_LISTS:
            out[f.json_name] = None
    return out
