"""ObjectMeta validation (ValidateObjectMeta / ValidateObjectMetaUpdate).

Each kind picks its name rule: DNS-1123 subdomain for most, DNS-1123 label
for Namespace, DNS-1035 label for Service. `generateName` is validated with
its trailing dash masked, as Kubernetes does (`web-` is a fine prefix).
"""
from __future__ import annotations

from typing import Callable

from machinery.errors import FieldError, forbidden, invalid, required
from machinery.validation.common import (each, immutable, is_dns1123_label, is_dns1123_subdomain,
                                         is_qualified_name, non_negative, validate_annotations,
                                         validate_labels)

NameFn = Callable[[str], list[str]]
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


def validate_object_meta(meta, namespaced: bool, name_fn: NameFn, path: str = "metadata",
                         ) -> list[FieldError]:
    errs: list[FieldError] = []
    if meta.generate_name:
        prefix = meta.generate_name[:-1] if meta.generate_name.endswith("-") else meta.generate_name
        errs += each(f"{path}.generateName", meta.generate_name, name_fn(prefix))
    if not meta.name:
        if not meta.generate_name:
            errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs += each(f"{path}.name", meta.name, name_fn(meta.name))
    if namespaced:
        if not meta.namespace:
            errs.append(required(f"{path}.namespace", ""))
        else:
            errs += each(f"{path}.namespace", meta.namespace, is_dns1123_label(meta.namespace))
    elif meta.namespace:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    errs += non_negative(f"{path}.generation", meta.generation)
    errs += validate_labels(meta.labels, f"{path}.labels")
    errs += validate_annotations(meta.annotations, f"{path}.annotations")
    errs += validate_owner_references(meta.owner_references, f"{path}.ownerReferences")
    errs += validate_finalizers(meta.finalizers, f"{path}.finalizers")
    return errs


def validate_template_meta(meta, path: str) -> list[FieldError]:
    """A pod template's metadata: only labels and annotations matter."""
    return (validate_labels(meta.labels, f"{path}.labels")
            + validate_annotations(meta.annotations, f"{path}.annotations"))


def validate_owner_references(refs, path: str) -> list[FieldError]:
    errs, controllers = [], []
    for i, ref in enumerate(refs):
        p = f"{path}[{i}]"
        version = ref.api_version.rpartition("/")[2]
        if not version:
            errs.append(invalid(f"{p}.apiVersion", ref.api_version, "version must not be empty"))
        if not ref.kind:
            errs.append(invalid(f"{p}.kind", ref.kind, "kind must not be empty"))
        if not ref.name:
            errs.append(invalid(f"{p}.name", ref.name, "name must not be empty"))
        if not ref.uid:
            errs.append(invalid(f"{p}.uid", ref.uid, "uid must not be empty"))
        if ref.HasField("controller") and ref.controller:
            controllers.append(f"{ref.kind}/{ref.name}")
    if len(controllers) > 1:
        errs.append(invalid(path, [c for c in controllers],
                            "Only one reference can have Controller set to true. Found \"true\" in "
                            "references for " + " and ".join(controllers)))
    return errs


def validate_finalizers(finalizers, path: str) -> list[FieldError]:
    errs = []
    for f in finalizers:
        msgs = is_qualified_name(f)
        errs += each(path, f, msgs)
        if not msgs and "/" not in f and f not in STANDARD_FINALIZERS:
            errs.append(invalid(path, f, "name is neither a standard finalizer name nor is it "
                                         "fully qualified"))
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errs.append(invalid(path, list(finalizers),
                            "finalizer orphan and foregroundDeletion cannot be both set"))
    return errs


def validate_object_meta_update(new, old, path: str = "metadata") -> list[FieldError]:
    """Identity fields never change on update (the apiserver sets uid/creationTimestamp)."""
    errs = immutable(f"{path}.name", new.name, old.name)
    errs += immutable(f"{path}.namespace", new.namespace, old.namespace)
    if old.uid:
        errs += immutable(f"{path}.uid", new.uid, old.uid)
    if old.HasField("creation_timestamp") and new.creation_timestamp != old.creation_timestamp:
        errs.append(invalid(f"{path}.creationTimestamp", new.creation_timestamp.ToJsonString(),
                            "field is immutable"))
    return errs


def subdomain(v: str) -> list[str]:
    return is_dns1123_subdomain(v)
