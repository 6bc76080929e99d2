"""Minimal valid objects of every kind kctl serves, for checks (tests and benchmarks)."""
from __future__ import annotations


def new_object(kind: str, name: str, namespace: str = "", *, labels: dict | None = None, **_):
    """A minimal valid object of `kind` (every kind kctl serves), for tests."""
    from machinery import kinds
    obj = kinds.new(kind)
    obj.metadata.name = name
    info = kinds.BY_KIND[kind]
    if info.namespaced:
        obj.metadata.namespace = namespace or "default"
    for k, v in (labels or {}).items():
        obj.metadata.labels[k] = v
    if kind == "Pod":
        obj.spec.containers.add(name="main", image="busybox:1.36", command=["sleep", "3600"])
    elif kind in ("ReplicaSet", "Deployment", "DaemonSet", "StatefulSet"):
        if kind != "DaemonSet":
            obj.spec.replicas = 1
        if kind == "StatefulSet":
            obj.spec.service_name = name
        obj.spec.selector.match_labels["app"] = name
        obj.spec.template.metadata.labels["app"] = name
        obj.spec.template.spec.containers.add(name="main", image="busybox:1.36")
    elif kind == "Job":
        obj.spec.template.spec.restart_policy = "Never"
        obj.spec.template.spec.containers.add(name="main", image="busybox:1.36", command=["true"])
    elif kind == "CronJob":
        obj.spec.schedule = "*/5 * * * *"
        tmpl = obj.spec.job_template.spec.template.spec
        tmpl.restart_policy = "OnFailure"
        tmpl.containers.add(name="main", image="busybox:1.36", command=["true"])
    elif kind == "PodDisruptionBudget":
        obj.spec.min_available.int_val = 1
        obj.spec.selector.match_labels["app"] = name
    elif kind == "CertificateSigningRequest":
        from machinery import csr
        obj.spec.request = csr.make_request(csr.new_key(), name)
        obj.spec.signer_name = csr.KUBE_APISERVER_CLIENT
        obj.spec.usages.append("client auth")
    elif kind == "HorizontalPodAutoscaler":
        obj.spec.scale_target_ref.api_version, obj.spec.scale_target_ref.kind = "apps/v1", "Deployment"
        obj.spec.scale_target_ref.name = name
        obj.spec.max_replicas = 3
    elif kind == "ControllerRevision":
        obj.revision = 1
        obj.data.update({"spec": {"template": {"metadata": {"labels": {"app": name}}}}})
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        obj.role_ref.api_group, obj.role_ref.kind, obj.role_ref.name = "rbac.authorization.k8s.io", "ClusterRole", "view"
    elif kind == "ConfigMap":
        obj.data["key"] = "value"
    elif kind == "Secret":
        obj.type = "Opaque"
        obj.data["key"] = b"value"
    elif kind == "PersistentVolume":
        obj.spec.capacity["storage"] = "1Gi"
        obj.spec.access_modes.append("ReadWriteOnce")
        obj.spec.host_path.path = f"/tmp/{name}"
    elif kind == "PersistentVolumeClaim":
        obj.spec.access_modes.append("ReadWriteOnce")
        obj.spec.resources.requests["storage"] = "1Gi"
    elif kind == "EndpointSlice":
        obj.address_type = "IPv4"
        obj.endpoints.add(addresses=["10.244.0.5"])
    elif kind == "StorageClass":
        obj.provisioner = "kctl.io/local-path"
    elif kind == "Service":
        obj.spec.selector["app"] = name
        obj.spec.ports.add(name="http", port=80)
    elif kind == "Endpoints":
        subset = obj.subsets.add()
        subset.addresses.add(ip="10.244.0.5")
        subset.ports.add(name="http", port=8080, protocol="TCP")
    elif kind == "Event":
        obj.involved_object.kind = "Pod"
        obj.involved_object.name = "x"
        obj.involved_object.namespace = obj.metadata.namespace
        obj.reason, obj.message, obj.type = "Tested", "a test event", "Normal"
        obj.source.component = "tests"
    elif kind == "Lease":
        obj.spec.holder_identity = "tests"
        obj.spec.lease_duration_seconds = 15
    elif kind == "Node":
        obj.spec.pod_cidr = "10.244.1.0/24"
    return obj

