"""The PV controller's decisions, as pure functions on objects (Kubernetes'
pkg/controller/volume/persistentvolume: index.go's findBestMatchForClaim,
util.go's CheckVolumeSatisfyClaim, provision_controller's volume shape, and
k3s's local-path provisioner for the volume it makes).

Nothing here talks to the API; controllers/pvbinder.py calls these with
objects from its informer caches, and the unit tests call them with tables.
"""
from __future__ import annotations

from google.protobuf.message import Message

from machinery import kinds, quantity, selectors
from machinery.pb import meta_pb2

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
HOSTNAME_LABEL = "kubernetes.io/hostname"
LOCAL_PATH = "kctl.io/local-path"                     # our provisioner's name
LOCAL_PATH_CLASS = "local-path"
LOCAL_PATH_DIR_ANNOTATION = "storage.kctl.io/local-path-dir"   # a node's storage dir, set by its agent
DEFAULT_NODE_PATH = "/var/lib/kctl/storage"
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def is_default_class(sc) -> bool:
    return sc.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"


def default_class(classes) -> Message | None:
    """The default StorageClass; with several, the newest (then by name), as
    Kubernetes' GetDefaultClass picks it."""
    defaults = [sc for sc in classes if is_default_class(sc)]
    if not defaults:
        return None
    return max(defaults, key=lambda sc: (sc.metadata.creation_timestamp.seconds, sc.metadata.name))


def default_local_path_class():
    """The StorageClass the controller manager creates when none is default."""
    sc = kinds.new("StorageClass")
    sc.metadata.name = LOCAL_PATH_CLASS
    sc.metadata.annotations[DEFAULT_CLASS_ANNOTATION] = "true"
    sc.provisioner = LOCAL_PATH
    sc.reclaim_policy = "Delete"
    sc.volume_binding_mode = "WaitForFirstConsumer"
    return sc


def claim_class(pvc) -> str:
    return pvc.spec.storage_class_name if pvc.spec.HasField("storage_class_name") else ""


def requested(pvc) -> int:
    return quantity.parse(pvc.spec.resources.requests.get("storage", "0"))


def capacity(pv) -> int:
    try:
        return quantity.parse(pv.spec.capacity.get("storage", "0"))
    except quantity.QuantityError:
        return 0


def claim_ref_matches(pv, pvc) -> bool:
    """The volume's claimRef names this claim (and its uid, when it has one)."""
    ref = pv.spec.claim_ref
    if not pv.spec.HasField("claim_ref"):
        return False
    return (ref.name == pvc.metadata.name and (ref.namespace or "default") == pvc.metadata.namespace
            and (not ref.uid or ref.uid == pvc.metadata.uid))


def node_matches(pv, node) -> bool:
    """The volume's node affinity admits the node (no affinity: any node)."""
    if not pv.spec.HasField("node_affinity"):
        return True
    if node is None:
        return False
    labels = dict(node.metadata.labels)
    labels.setdefault(HOSTNAME_LABEL, node.metadata.name)
    for term in pv.spec.node_affinity.required.node_selector_terms:
        if all(_requirement(r, labels) for r in term.match_expressions) and \
                all(_field(r, node.metadata.name) for r in term.match_fields):
            return True
    return False


def _requirement(r, labels: dict) -> bool:
    have = r.key in labels
    if r.operator == "In":
        return have and labels[r.key] in r.values
    if r.operator == "NotIn":
        return not have or labels[r.key] not in r.values
    if r.operator == "Exists":
        return have
    if r.operator == "DoesNotExist":
        return not have
    if r.operator in ("Gt", "Lt") and have and r.values:
        try:
            a, b = int(labels[r.key]), int(r.values[0])
        except ValueError:
            return False
        return a > b if r.operator == "Gt" else a < b
    return False


def _field(r, node_name: str) -> bool:
    return r.key == "metadata.name" and ((r.operator == "In") == (node_name in r.values))


def unsatisfied(pv, pvc) -> str:
    """Why the volume cannot serve the claim ("" when it can): CheckVolumeSatisfyClaim."""
    if claim_class(pvc) != pv.spec.storage_class_name:
        return "storageClassName does not match"
    if not set(pvc.spec.access_modes) <= set(pv.spec.access_modes):
        return "incompatible accessMode"
    if capacity(pv) < requested(pvc):
        return "requested PV is too small"
    if (pvc.spec.volume_mode or "Filesystem") != (pv.spec.volume_mode or "Filesystem"):
        return "incompatible volumeMode"
    return ""


def best_match(pvc, volumes, node=None) -> Message | None:
    """findBestMatchForClaim: a volume pre-bound to this claim if it fits;
    else the smallest available volume that fits (class, access modes,
    capacity, volume mode, label selector; and, for a claim waiting for its
    first consumer, the selected node)."""
    sel = selectors.from_proto(pvc.spec.selector) if pvc.spec.HasField("selector") else None
    best = None
    for pv in sorted(volumes, key=lambda v: (capacity(v), v.metadata.name)):
        if pv.metadata.HasField("deletion_timestamp"):
            continue
        if pv.spec.HasField("claim_ref"):
            if not claim_ref_matches(pv, pvc):
                continue                                  # someone else's
            if not unsatisfied(pv, pvc) and (node is None or node_matches(pv, node)):
                return pv
            continue
        if pv.status.phase not in ("Available", "Pending", ""):
            continue
        if unsatisfied(pv, pvc) or (sel is not None and not sel.matches(pv.metadata.labels)):
            continue
        if node is not None and not node_matches(pv, node):
            continue
        if best is None:
            best = pv
    return best


def claim_reference(pvc) -> meta_pb2.ObjectReference:
    return meta_pb2.ObjectReference(kind="PersistentVolumeClaim", api_version="v1",
                                    namespace=pvc.metadata.namespace, name=pvc.metadata.name,
                                    uid=pvc.metadata.uid, resource_version=pvc.metadata.resource_version)


def local_path_dir(sc, node) -> str:
    """Where the volume's directory lives on the node: the node's own storage
    dir (the annotation its agent sets), else the class's `nodePath`
    parameter, else DEFAULT_NODE_PATH (k3s's nodePathMap, simplified)."""
    if node is not None and node.metadata.annotations.get(LOCAL_PATH_DIR_ANNOTATION):
        return node.metadata.annotations[LOCAL_PATH_DIR_ANNOTATION].rstrip("/")
    return (sc.parameters.get("nodePath") or DEFAULT_NODE_PATH).rstrip("/")


def provisioned_volume_name(pvc) -> str:
    return f"pvc-{pvc.metadata.uid}"


def local_path_volume(pvc, sc, node):
    """The PV the local-path provisioner makes for a claim on `node`: a
    hostPath directory `<dir>/pvc-<uid>_<namespace>_<name>` (DirectoryOrCreate:
    the node agent creates it) pinned to the node, pre-bound to the claim."""
    pv = kinds.new("PersistentVolume")
    name = provisioned_volume_name(pvc)
    pv.metadata.name = name
    pv.metadata.annotations[PROVISIONED_BY] = sc.provisioner
    pv.spec.capacity["storage"] = pvc.spec.resources.requests["storage"]
    pv.spec.access_modes.extend(pvc.spec.access_modes)
    pv.spec.persistent_volume_reclaim_policy = sc.reclaim_policy or "Delete"
    pv.spec.storage_class_name = sc.metadata.name
    pv.spec.mount_options.extend(sc.mount_options)
    pv.spec.volume_mode = pvc.spec.volume_mode or "Filesystem"
    pv.spec.claim_ref.CopyFrom(claim_reference(pvc))
    pv.spec.host_path.path = f"{local_path_dir(sc, node)}/{name}_{pvc.metadata.namespace}_{pvc.metadata.name}"
    pv.spec.host_path.type = "DirectoryOrCreate"
    term = pv.spec.node_affinity.required.node_selector_terms.add()
    term.match_expressions.add(key=HOSTNAME_LABEL, operator="In", values=[node.metadata.name])
    return pv


def claims_of_pod(pod) -> list[str]:
    """`namespace/name` keys of the claims a pod's volumes use."""
    ns = pod.metadata.namespace
    return [f"{ns}/{v.persistent_volume_claim.claim_name}" for v in pod.spec.volumes
            if v.HasField("persistent_volume_claim")]


def pod_uses_claim(pod, pvc) -> bool:
    """pvc-protection's podUsesPVC: a pod that is not finished and names the claim."""
    if pod.status.phase in ("Succeeded", "Failed"):
        return False
    return f"{pvc.metadata.namespace}/{pvc.metadata.name}" in claims_of_pod(pod)
