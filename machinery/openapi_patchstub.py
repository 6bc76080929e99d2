"""Stand-in for machinery/patch/mergekeys.py until branch h-patch is merged
(delete this file then): the same functions, answering for a few fields."""
from __future__ import annotations

_PATCH_META = {
    ("kctl.v1.PodSpec", "containers"): ("merge", "name"),
    ("kctl.v1.Container", "env"): ("merge", "name"),
    ("kctl.v1.DeploymentSpec", "strategy"): ("retainKeys", None),
}
_LIST_TYPES = {
    ("kctl.v1.PodSpec", "containers"): ("map", ("name",)),
    ("kctl.v1.Container", "env"): ("map", ("name",)),
}


def _name(descriptor) -> str:
    return descriptor if isinstance(descriptor, str) else descriptor.full_name


def patch_meta(descriptor, json_field):
    return _PATCH_META.get((_name(descriptor), json_field))


def list_type(descriptor, json_field):
    return _LIST_TYPES.get((_name(descriptor), json_field), ("atomic", ()))


def is_atomic_struct(descriptor) -> bool:
    return _name(descriptor) == "kctl.v1.LabelSelector"


def is_atomic_map(descriptor, json_field) -> bool:
    return (_name(descriptor), json_field) == ("kctl.v1.PodSpec", "nodeSelector")
