"""The node's side of the local-path provisioner: where volumes live, and
removing their data when the volume is deleted.

The agent announces its storage directory (``<root dir>/storage``) in the
node annotation ``storage.kctl.io/local-path-dir``; the provisioner
(controllers/pvbinder.py, pvmatch.local_path_volume) makes each volume a
DirectoryOrCreate hostPath ``<dir>/pvc-<uid>_<namespace>_<claim>`` pinned to
the node, which the agent creates when a pod mounts it
(nodeagent/volumes.py).

Reclaim: with ``reclaimPolicy: Delete`` the binder deletes the PV object
once its claim is gone; ``Reclaimer`` watches PersistentVolumes and, when one
is deleted that the local-path provisioner made (annotation
``pv.kubernetes.io/provisioned-by: kctl.io/local-path``), whose policy is
Delete, that is pinned to this node and whose path lies directly inside the
storage directory, removes the directory.  Retain volumes, hand-made
hostPath volumes and paths anywhere else are never touched.  A deletion
that happens while the agent is down is not seen (the directory stays: an
orphan under the storage dir cannot be told from a Retain volume deleted by
hand).
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil

from machinery.informer import Informer

log = logging.getLogger("kctl.nodeagent.localpath")

LOCAL_PATH_DIR_ANNOTATION = "storage.kctl.io/local-path-dir"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
LOCAL_PATH_PROVISIONER = "kctl.io/local-path"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def storage_dir(root_dir: str) -> str:
    return os.path.join(os.path.abspath(root_dir), "storage")


def pinned_to(pv, node_name: str) -> bool:
    for term in pv.spec.node_affinity.required.node_selector_terms:
        for r in term.match_expressions:
            if r.key == HOSTNAME_LABEL and r.operator == "In" and list(r.values) == [node_name]:
                return True
    return False


def data_to_remove(pv, node_name: str, storage: str) -> str | None:
    """The directory to delete for a deleted PV, or None (see module docstring)."""
    if pv.metadata.annotations.get(PROVISIONED_BY) != LOCAL_PATH_PROVISIONER:
        return None
    if (pv.spec.persistent_volume_reclaim_policy or "Delete") != "Delete" or not pv.spec.HasField("host_path"):
        return None
    if not pinned_to(pv, node_name):
        return None
    path = os.path.normpath(pv.spec.host_path.path)
    if os.path.dirname(path) != os.path.normpath(storage) or not os.path.basename(path).startswith("pvc-"):
        return None
    return path


class Reclaimer:
    def __init__(self, client, node_name: str, root_dir: str):
        self.node_name = node_name
        self.storage = storage_dir(root_dir)
        self.informer = Informer(client, "PersistentVolume")
        self.informer.add_handler(on_delete=self._deleted)
        self.removed: list[str] = []

    def _deleted(self, pv) -> None:
        path = data_to_remove(pv, self.node_name, self.storage)
        if path is None:
            return
        asyncio.get_running_loop().run_in_executor(None, self._remove, path, pv.metadata.name)

    def _remove(self, path: str, name: str) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed the data of deleted volume %s: %s", name, path)
        self.removed.append(path)

    async def run(self) -> None:
        os.makedirs(self.storage, exist_ok=True)
        await self.informer.run()
