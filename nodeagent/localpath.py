"""The node's side of the local-path provisioner: where volumes live.

The agent announces its storage directory (``<root dir>/storage``) in the
node annotation ``storage.kctl.io/local-path-dir``; the provisioner
(controllers/pvbinder.py, pvmatch.local_path_volume) makes each volume a
DirectoryOrCreate hostPath ``<dir>/pvc-<uid>_<namespace>_<claim>`` pinned to
the node, which the agent creates when a pod mounts it
(nodeagent/volumes.py).

Reclaim is not the agent's: under the Node authorizer a node may only get
the volumes its own pods use, never list or watch PersistentVolumes, so it
cannot see one being deleted.  With ``reclaimPolicy: Delete`` the binder
removes the directory with a helper pod on this node before it deletes the
PV object (controllers/localpathcleanup.py), as Rancher's
local-path-provisioner does.
"""
from __future__ import annotations

import os

LOCAL_PATH_DIR_ANNOTATION = "storage.kctl.io/local-path-dir"


def storage_dir(root_dir: str) -> str:
    return os.path.join(os.path.abspath(root_dir), "storage")
