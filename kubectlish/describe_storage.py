"""`kctl describe` for ConfigMaps, Secrets, PersistentVolumes, claims and
StorageClasses, after kubectl's describers (describeConfigMap,
describeSecret, describePersistentVolume, describePersistentVolumeClaim,
describeStorageClass). A Secret's values are never shown, only their sizes,
as kubectl does; a claim lists the pods that use it ("Used By").
"""
from __future__ import annotations

from kubectlish.describe_blocks import _map_lines, _meta, events_lines
from kubectlish.printers import NONE
from machinery import tables

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def describe_config_map(cm, events) -> list[str]:
    lines = _meta(cm) + ["", "Data", "===="]
    for k in sorted(cm.data):
        lines += [f"{k}:", "----", cm.data[k], ""]
    lines += ["", "BinaryData", "===="]
    lines += [f"{k}: {len(cm.binary_data[k])} bytes" for k in sorted(cm.binary_data)]
    return lines + [""] + events_lines(events)


def describe_secret(s, events) -> list[str]:
    lines = _meta(s) + ["", f"Type:\t{s.type}", "", "Data", "===="]
    lines += [f"{k}:\t{len(s.data[k])} bytes" for k in sorted(s.data)]
    return lines


def _finalizers(obj) -> list[str]:
    return [f"Finalizers:\t[{' '.join(obj.metadata.finalizers)}]"]


def _source(spec) -> list[str]:
    if spec.HasField("host_path"):
        return ["Source:", "    Type:\tHostPath (bare host directory volume)",
                f"    Path:\t{spec.host_path.path}", f"    HostPathType:\t{spec.host_path.type}"]
    if spec.HasField("local"):
        return ["Source:", "    Type:\tLocalVolume (a persistent volume backed by local storage on a node)",
                f"    Path:\t{spec.local.path}"]
    return ["Source:"]


def _node_affinity(spec) -> list[str]:
    if not spec.HasField("node_affinity"):
        return [f"Node Affinity:\t{NONE}"]
    lines = ["Node Affinity:", "  Required Terms:"]
    for term in spec.node_affinity.required.node_selector_terms:
        exprs = [f"{r.key} {r.operator.lower()} [{', '.join(r.values)}]" for r in term.match_expressions]
        lines.append(f"    Term 0:\t{exprs[0] if exprs else NONE}")
        lines += [f"    \t{e}" for e in exprs[1:]]
    return lines


def describe_persistent_volume(pv, events) -> list[str]:
    spec, ref = pv.spec, pv.spec.claim_ref
    status = "Terminating" if pv.metadata.HasField("deletion_timestamp") else pv.status.phase
    lines = _meta(pv, with_ns=False) + _finalizers(pv)
    lines += [f"StorageClass:\t{spec.storage_class_name}", f"Status:\t{status}",
              f"Claim:\t{f'{ref.namespace}/{ref.name}' if spec.HasField('claim_ref') else ''}",
              f"Reclaim Policy:\t{spec.persistent_volume_reclaim_policy}",
              f"Access Modes:\t{tables.access_modes(spec.access_modes)}",
              f"VolumeMode:\t{spec.volume_mode}", f"Capacity:\t{spec.capacity.get('storage', '')}"]
    lines += _node_affinity(spec) + [f"Message:\t{pv.status.message}"] + _source(spec)
    return lines + events_lines(events)


def describe_persistent_volume_claim(pvc, events, pods=()) -> list[str]:
    bound = bool(pvc.spec.volume_name)
    status = "Terminating" if pvc.metadata.HasField("deletion_timestamp") else pvc.status.phase
    lines = _meta(pvc) + _finalizers(pvc)
    lines += [f"StorageClass:\t{pvc.spec.storage_class_name}", f"Status:\t{status}",
              f"Volume:\t{pvc.spec.volume_name}",
              f"Capacity:\t{pvc.status.capacity.get('storage', '') if bound else ''}",
              f"Access Modes:\t{tables.access_modes(pvc.status.access_modes) if bound else ''}",
              f"VolumeMode:\t{pvc.spec.volume_mode}"]
    names = [p.metadata.name for p in pods]
    lines.append(f"Used By:\t{names[0] if names else NONE}")
    lines += [f"\t{n}" for n in names[1:]]
    return lines + events_lines(events)


def describe_storage_class(sc, events) -> list[str]:
    default = sc.metadata.annotations.get(DEFAULT_CLASS) == "true"
    lines = [f"Name:\t{sc.metadata.name}", f"IsDefaultClass:\t{'Yes' if default else 'No'}"]
    lines += _map_lines("Annotations", {k: v for k, v in sc.metadata.annotations.items()
                                        if k != "kubectl.kubernetes.io/last-applied-configuration"})
    params = ",".join(f"{k}={v}" for k, v in sorted(sc.parameters.items())) or NONE
    expand = ("True" if sc.allow_volume_expansion else "False") if sc.HasField("allow_volume_expansion") else "<unset>"
    lines += [f"Provisioner:\t{sc.provisioner}", f"Parameters:\t{params}", f"AllowVolumeExpansion:\t{expand}",
              f"MountOptions:\t{', '.join(sc.mount_options) or NONE}", f"ReclaimPolicy:\t{sc.reclaim_policy}",
              f"VolumeBindingMode:\t{sc.volume_binding_mode}"]
    return lines + events_lines(events)


async def describe_storage(client, obj, events) -> list[str] | None:
    """The lines for one of these kinds, or None for any other kind."""
    kind = type(obj).__name__
    if kind == "PersistentVolumeClaim":
        pods, _ = await client.list("pods", obj.metadata.namespace)
        users = [p for p in pods if any(v.HasField("persistent_volume_claim")
                                        and v.persistent_volume_claim.claim_name == obj.metadata.name
                                        for v in p.spec.volumes)]
        return describe_persistent_volume_claim(obj, events, users)
    fn = {"ConfigMap": describe_config_map, "Secret": describe_secret,
          "PersistentVolume": describe_persistent_volume, "StorageClass": describe_storage_class}.get(kind)
    return fn(obj, events) if fn else None
