"""Removing the data of a reclaimed local-path volume on its node with a
helper pod, as Rancher's local-path-provisioner does.

Under the Node authorizer a node agent may only *get* the volumes its own
pods use; it can neither list nor watch PersistentVolumes, so it never
sees a volume being released or deleted (Kubernetes' local static
provisioner and Rancher's local-path-provisioner clean up with their own
identities for the same reason). So when the binder (controllers/pvbinder.py)
reclaims a Released volume with policy Delete that the `kctl.io/local-path`
provisioner made, it first runs a helper pod in kube-system: pinned to the
volume's node (`nodeName`, tolerating every taint), mounting the node's
storage directory (the hostPath's parent) and removing the volume's
directory. Only once that pod has Succeeded is the PV object deleted, and
the pod with it. A failed helper pod is deleted and made again on the
next sync; while the node is down the pod waits and the volume stays
Released.

Only the directory the provisioner made for the volume qualifies
(`data_dir`): a hostPath `<dir>/<pv name>_<namespace>_<claim>` of a volume
provisioned by `kctl.io/local-path`, pinned to exactly one node; Retain
volumes and hand-made hostPath volumes are never touched.
"""
from __future__ import annotations

import posixpath

from machinery import codec

from controllers import pvmatch as m

NAMESPACE = "kube-system"
VOLUME_LABEL = "kctl.io/local-path-cleanup"           # the helper pod's label: the volume it cleans
IMAGE = "busybox"
MOUNT = "/storage"


def data_dir(pv) -> tuple[str, str] | None:
    """(node, directory) of a local-path volume whose data the reclaim removes, or None."""
    if pv.metadata.annotations.get(m.PROVISIONED_BY) != m.LOCAL_PATH or not pv.spec.HasField("host_path"):
        return None
    if (pv.spec.persistent_volume_reclaim_policy or "Delete") != "Delete":
        return None
    nodes = [list(r.values) for t in pv.spec.node_affinity.required.node_selector_terms
             for r in t.match_expressions if r.key == m.HOSTNAME_LABEL and r.operator == "In"]
    if len(nodes) != 1 or len(nodes[0]) != 1:
        return None
    path = posixpath.normpath(pv.spec.host_path.path)
    if not path.startswith("/") or posixpath.dirname(path) == "/" \
            or not posixpath.basename(path).startswith(f"{pv.metadata.name}_"):
        return None                                  # not the pvc-<uid>_<ns>_<claim> directory made for it
    return nodes[0][0], path


def helper_name(pv) -> str:
    return f"cleanup-{pv.metadata.name}"[:63].rstrip("-.")


def helper_pod(pv, node: str, path: str):
    """The pod that removes `path` on `node` (see the module docstring)."""
    return codec.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": helper_name(pv), "namespace": NAMESPACE, "labels": {VOLUME_LABEL: pv.metadata.name}},
        "spec": {
            "nodeName": node, "restartPolicy": "Never", "automountServiceAccountToken": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "cleanup", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                            "command": ["rm", "-rf", posixpath.join(MOUNT, posixpath.basename(path))],
                            "volumeMounts": [{"name": "storage", "mountPath": MOUNT}]}],
            "volumes": [{"name": "storage",
                         "hostPath": {"path": posixpath.dirname(path), "type": "DirectoryOrCreate"}}]}})
