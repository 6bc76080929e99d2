"""Validation of API objects, the way Kubernetes' apiserver does it.

Entry points (used by the apiserver's per-kind strategies):

* `validate(obj, old=None)` – create (old is None) or spec/metadata update;
* `validate_status_update(obj, old)` – the status subresource.

Both return a list of `machinery.errors.FieldError` (empty when valid) with
Kubernetes' field paths and messages, e.g.
`spec.template.spec.containers[0].resources.requests[cpu]: Invalid value:
"1": must be less than or equal to cpu limit of 500m`.

Order in the apiserver: `defaults.apply_defaults(obj)` -> `validate(obj,
old)` -> `defaults.canonicalize(obj)`. Validation assumes a defaulted
object (e.g. a container's imagePullPolicy is required, as in Kubernetes,
because defaulting always fills it).

The rules live in submodules: `common` (names, labels, ports), `meta`
(ObjectMeta), `pod` (pod specs, shared with templates), `apps`
(ReplicaSet, Deployment, DaemonSet, ControllerRevision), `statefulset`,
`batch` (Job,
CronJob), `policy` (PodDisruptionBudget), `core` (Service, Node, Namespace,
Endpoints, Event, Lease), `config` (ConfigMap, Secret), `storage`
(PersistentVolume, PersistentVolumeClaim, StorageClass), `placement`
(pod affinity, spread constraints, priority fields, PriorityClass),
`discovery` (EndpointSlice), `serviceaccount` (ServiceAccount, TokenRequest,
projected token sources), `certificates` (CertificateSigningRequest) and
`rbac` (Roles, ClusterRoles and their bindings).
"""
from __future__ import annotations

from machinery import defaults, kinds
from machinery.errors import FieldError, forbidden, invalid, not_supported, required
from machinery.validation import (apps, autoscaling, batch, certificates, config, core, discovery, placement,
                                  policy, rbac, serviceaccount, statefulset, storage)
from machinery.validation.common import (duplicates, is_dns1035_label, is_dns1123_label,
                                         is_dns1123_subdomain, is_ip, non_negative)
from machinery.validation.meta import validate_object_meta, validate_object_meta_update
from machinery.validation.pod import validate_pod_spec

__all__ = ["validate", "validate_status_update", "FieldError"]

NAME_RULES = {"Namespace": is_dns1123_label, "Service": is_dns1035_label,
              "CertificateSigningRequest": certificates.name_rule,
              **{k: rbac.path_segment_name for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")}}

POD_UPDATE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                  "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                  "`spec.tolerations` (only additions to existing tolerations),"
                  "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                  "previously negative)")
POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def _validate_pod(pod) -> list[FieldError]:
    return validate_pod_spec(pod.spec, "spec")


_SPEC_RULES = {
    "Pod": _validate_pod,
    "ReplicaSet": apps.validate_replica_set,
    "Deployment": apps.validate_deployment,
    "Service": core.validate_service,
    "Node": core.validate_node,
    "Namespace": core.validate_namespace,
    "Endpoints": core.validate_endpoints,
    "Event": core.validate_event,
    "Lease": core.validate_lease,
    "ConfigMap": config.validate_config_map,
    "Secret": config.validate_secret,
    "PersistentVolume": storage.validate_persistent_volume,
    "PersistentVolumeClaim": storage.validate_persistent_volume_claim,
    "StorageClass": storage.validate_storage_class,
    "DaemonSet": apps.validate_daemon_set,
    "StatefulSet": statefulset.validate_stateful_set,
    "ControllerRevision": apps.validate_controller_revision,
    "Job": batch.validate_job,
    "CronJob": batch.validate_cron_job,
    "PodDisruptionBudget": policy.validate_pdb,
    "HorizontalPodAutoscaler": autoscaling.validate_hpa,
    "PriorityClass": placement.validate_priority_class,
    "EndpointSlice": discovery.validate_endpoint_slice,
    "ServiceAccount": serviceaccount.validate_service_account,
    "CertificateSigningRequest": certificates.validate_csr,
    "Role": rbac.validate_role,
    "ClusterRole": rbac.validate_cluster_role,
    "RoleBinding": rbac.validate_role_binding,
    "ClusterRoleBinding": rbac.validate_cluster_role_binding,
}

_CREATE_RULES = {
    "CronJob": batch.validate_cron_job_create,
}


def validate(obj, old=None) -> list[FieldError]:
    """All violated rules of `obj` (a create when `old` is None, else an update)."""
    info = kinds.of(obj)
    errs = validate_object_meta(obj.metadata, info.namespaced,
                                NAME_RULES.get(info.kind, is_dns1123_subdomain))
    errs += _SPEC_RULES[info.kind](obj)
    if old is None:
        errs += _CREATE_RULES.get(info.kind, lambda o: [])(obj)
    else:
        errs += validate_object_meta_update(obj.metadata, old.metadata)
        errs += _UPDATE_RULES.get(info.kind, lambda n, o: [])(obj, old)
    return errs


# ------------------------------------------------------------------ updates

def _tolerations_only_added(new, old) -> bool:
    """Every old toleration is still there (tolerationSeconds may change)."""
    def key(t):
        return (t.key, t.operator or "Equal", t.value, t.effect)
    have = [key(t) for t in new]
    return all(key(t) in have for t in old)


def _pod_update(new, old) -> list[FieldError]:
    errs: list[FieldError] = []
    munged = type(old.spec)()
    munged.CopyFrom(old.spec)
    # carry over what may change, then anything else that differs is forbidden
    if len(new.spec.containers) == len(munged.containers):
        for c, n in zip(munged.containers, new.spec.containers):
            c.image = n.image
    if new.spec.HasField("active_deadline_seconds"):
        munged.active_deadline_seconds = new.spec.active_deadline_seconds
    else:
        munged.ClearField("active_deadline_seconds")
    if old.spec.HasField("active_deadline_seconds"):
        p, was = "spec.activeDeadlineSeconds", old.spec.active_deadline_seconds
        if not new.spec.HasField("active_deadline_seconds"):
            errs.append(invalid(p, None, "must not update from a positive integer to nil value"))
        elif new.spec.active_deadline_seconds > was:
            errs.append(invalid(p, new.spec.active_deadline_seconds,
                                "must be less than or equal to previous value"))
    if not _tolerations_only_added(new.spec.tolerations, old.spec.tolerations):
        errs.append(forbidden("spec.tolerations",
                              "existing toleration can not be modified except its tolerationSeconds"))
    del munged.tolerations[:]
    munged.tolerations.extend(new.spec.tolerations)
    # compare quantities by value (`0.5` == `500m`), as Kubernetes compares parsed Quantities
    wanted = type(new.spec)()
    wanted.CopyFrom(new.spec)
    defaults.canonicalize_pod_spec(wanted)
    defaults.canonicalize_pod_spec(munged)
    if munged != wanted:
        changed = sorted({f.json_name for f in new.spec.DESCRIPTOR.fields
                          if _field(munged, f) != _field(wanted, f)})
        errs.append(forbidden("spec", POD_UPDATE_MSG + "\n  changed: " + ", ".join(changed)))
    return errs


def _field(msg, f):
    v = getattr(msg, f.name)
    if f.is_repeated:
        return list(v) if not hasattr(v, "items") else dict(v)
    if f.has_presence and not msg.HasField(f.name):
        return None
    return v


_UPDATE_RULES = {
    "Pod": _pod_update,
    "ReplicaSet": apps.validate_selector_update,
    "Deployment": apps.validate_selector_update,
    "DaemonSet": apps.validate_selector_update,
    "StatefulSet": lambda n, o: apps.validate_selector_update(n, o) + statefulset.validate_stateful_set_update(n, o),
    "ControllerRevision": apps.validate_controller_revision_update,
    "Job": batch.validate_job_update,
    "CronJob": batch.validate_cron_job_update,
    "Service": core.validate_service_update,
    "Node": core.validate_node_update,
    "ConfigMap": config.validate_config_map_update,
    "Secret": config.validate_secret_update,
    "PersistentVolume": storage.validate_persistent_volume_update,
    "PersistentVolumeClaim": storage.validate_persistent_volume_claim_update,
    "StorageClass": storage.validate_storage_class_update,
    "PriorityClass": placement.validate_priority_class_update,
    "EndpointSlice": discovery.validate_endpoint_slice_update,
    "CertificateSigningRequest": certificates.validate_csr_update,
    "RoleBinding": rbac.validate_binding_update,
    "ClusterRoleBinding": rbac.validate_binding_update,
}


# ------------------------------------------------------------------- status

def _pod_status(new, old) -> list[FieldError]:
    st, errs = new.status, []
    if st.phase and st.phase not in POD_PHASES:
        errs.append(not_supported("status.phase", st.phase, POD_PHASES))
    if old.status.phase in ("Succeeded", "Failed") and st.phase != old.status.phase:
        errs.append(forbidden("status.phase", "may not be changed from terminal phase "
                                              f"{old.status.phase} to {st.phase or 'empty'}"))
    for f, j in (("pod_ip", "podIP"), ("host_ip", "hostIP")):
        v = getattr(st, f)
        if v and not is_ip(v):
            errs.append(invalid(f"status.{j}", v, "must be a valid IP address"))
    for i, pip in enumerate(st.pod_ips):
        if not is_ip(pip.ip):
            errs.append(invalid(f"status.podIPs[{i}].ip", pip.ip, "must be a valid IP address"))
    errs += duplicates("status.podIPs[{}]", [p.ip for p in st.pod_ips])
    if st.pod_ips and st.pod_ip and st.pod_ips[0].ip != st.pod_ip:
        errs.append(invalid("status.podIPs[0].ip", st.pod_ips[0].ip, "must match status.podIP"))
    errs += duplicates("status.containerStatuses[{}].name", [c.name for c in st.container_statuses])
    for i, cs in enumerate(st.container_statuses):
        errs += non_negative(f"status.containerStatuses[{i}].restartCount", cs.restart_count)
    for i, c in enumerate(st.conditions):
        if not c.type:
            errs.append(required(f"status.conditions[{i}].type", ""))
        if c.status not in core.CONDITION_STATUSES:
            errs.append(not_supported(f"status.conditions[{i}].status", c.status, core.CONDITION_STATUSES))
    if new.spec.node_name != old.spec.node_name:
        errs.append(forbidden("spec.nodeName", "may not be changed by a status update"))
    return errs


_STATUS_RULES = {
    "Pod": _pod_status,

    "ReplicaSet": lambda n, o: apps.validate_replicas_status(n.status, deployment=False),
    "Deployment": lambda n, o: apps.validate_replicas_status(n.status, deployment=True),
    "Service": lambda n, o: core.validate_service_status(n),
    "Node": lambda n, o: core.validate_node_status(n),
    "Namespace": lambda n, o: core.validate_namespace_status(n),
    "PersistentVolume": lambda n, o: storage.validate_persistent_volume_status(n),
    "PersistentVolumeClaim": lambda n, o: storage.validate_persistent_volume_claim_status(n),
    "DaemonSet": lambda n, o: apps.validate_daemon_set_status(n.status),
    "StatefulSet": lambda n, o: statefulset.validate_stateful_set_status(n.status),
    "Job": lambda n, o: batch.validate_job_status(n.status),
    "PodDisruptionBudget": lambda n, o: policy.validate_pdb_status(n.status),
}


def validate_status_update(obj, old) -> list[FieldError]:
    """Rules for an UpdateStatus: identity unchanged, status well-formed."""
    info = kinds.of(obj)
    errs = validate_object_meta_update(obj.metadata, old.metadata)
    errs += _STATUS_RULES.get(info.kind, lambda n, o: [])(obj, old)
    return errs
