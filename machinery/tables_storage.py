"""Table columns of the config and storage kinds (ConfigMap, Secret,
ServiceAccount, PersistentVolume, PersistentVolumeClaim, StorageClass,
PriorityClass), ports of kubectl's printers.go; machinery.tables adds them
to its PRINTERS and re-exports access_modes (kctl describe uses it).

Kept apart from machinery/tables.py so that module holds the shared column
machinery and the core kinds only; each kind's cell function is
(obj, wide, at) -> row like every other printer.
"""
from __future__ import annotations

from machinery.tables import Printer, _all, _cols, age

_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP"))


def access_modes(modes) -> str:
    """helper.GetAccessModesAsString: RWO,ROX,RWX,RWOP in that order."""
    return ",".join(short for mode, short in _MODES if mode in modes)


def _volume_status(obj) -> str:
    return "Terminating" if obj.metadata.HasField("deletion_timestamp") else obj.status.phase


def _config_map(c, wide, at):
    return [c.metadata.name, str(len(c.data) + len(c.binary_data)), age(c.metadata.creation_timestamp, at)]


def _secret(s, wide, at):
    return [s.metadata.name, s.type, str(len(s.data)), age(s.metadata.creation_timestamp, at)]


def _service_account(s, wide, at):
    return [s.metadata.name, str(len(s.secrets)), age(s.metadata.creation_timestamp, at)]


def _persistent_volume(v, wide, at):
    ref = v.spec.claim_ref
    claim = f"{ref.namespace}/{ref.name}" if v.spec.HasField("claim_ref") else ""
    row = [v.metadata.name, v.spec.capacity.get("storage", ""), access_modes(v.spec.access_modes),
           v.spec.persistent_volume_reclaim_policy, _volume_status(v), claim, v.spec.storage_class_name,
           "<unset>", v.status.reason, age(v.metadata.creation_timestamp, at)]
    if wide:
        row.append(v.spec.volume_mode or "<unset>")
    return row


def _persistent_volume_claim(c, wide, at):
    bound = bool(c.spec.volume_name)
    row = [c.metadata.name, _volume_status(c), c.spec.volume_name,
           c.status.capacity.get("storage", "") if bound else "",
           access_modes(c.status.access_modes) if bound else "", c.spec.storage_class_name, "<unset>",
           age(c.metadata.creation_timestamp, at)]
    if wide:
        row.append(c.spec.volume_mode or "<unset>")
    return row


def _storage_class(s, wide, at):
    default = s.metadata.annotations.get("storageclass.kubernetes.io/is-default-class") == "true"
    return [s.metadata.name + (" (default)" if default else ""), s.provisioner, s.reclaim_policy or "Delete",
            s.volume_binding_mode or "Immediate", "true" if s.allow_volume_expansion else "false",
            age(s.metadata.creation_timestamp, at)]


def _priority_class(c, wide, at):
    return [c.metadata.name, str(c.value), "true" if c.global_default else "false",
            age(c.metadata.creation_timestamp, at), c.preemption_policy]


STORAGE_PRINTERS = {
    "ConfigMap": Printer(_cols("NAME|DATA|AGE"), _all(_config_map)),
    "Secret": Printer(_cols("NAME|TYPE|DATA|AGE"), _all(_secret)),
    "ServiceAccount": Printer(_cols("NAME|SECRETS|AGE"), _all(_service_account)),
    "PersistentVolume": Printer(_cols("NAME|CAPACITY|ACCESS MODES|RECLAIM POLICY|STATUS|CLAIM|STORAGECLASS|"
                                      "VOLUMEATTRIBUTESCLASS|REASON|AGE", "VOLUMEMODE"), _all(_persistent_volume)),
    "PersistentVolumeClaim": Printer(_cols("NAME|STATUS|VOLUME|CAPACITY|ACCESS MODES|STORAGECLASS|"
                                           "VOLUMEATTRIBUTESCLASS|AGE", "VOLUMEMODE"),
                                     _all(_persistent_volume_claim)),
    "StorageClass": Printer(_cols("NAME|PROVISIONER|RECLAIMPOLICY|VOLUMEBINDINGMODE|ALLOWVOLUMEEXPANSION|AGE"),
                            _all(_storage_class)),
    "PriorityClass": Printer(_cols("NAME|VALUE|GLOBAL-DEFAULT|AGE|PREEMPTIONPOLICY"), _all(_priority_class)),
}
