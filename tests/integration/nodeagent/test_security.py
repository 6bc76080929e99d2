"""securityContext through a real agent: runAsNonRoot refused at container start with
the kubelet's reason and message, fsGroup owning an emptyDir, the default seccomp."""
from __future__ import annotations

import pytest

from machinery.pb import core_pb2
from tests.integration.nodeagent.conftest import (cid_of, cstatus, make_pod, needs_root, node_ready, pod_gone,
                                                  pod_running, pod_where)

pytestmark = [pytest.mark.root, needs_root]


@pytest.fixture
async def node(api, make_node):
    n = make_node()
    await node_ready(api, n)
    return n


async def test_run_as_non_root_with_a_root_image_is_create_container_config_error(api, node):
    await api.create(make_pod("nonroot", node, {"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                                "securityContext": {"runAsNonRoot": True}}))

    def refused(p: core_pb2.Pod) -> bool:
        return bool(p.status.container_statuses) and \
            cstatus(p, "c").state.waiting.reason == "CreateContainerConfigError"
    pod = await pod_where(api, "nonroot", refused, "CreateContainerConfigError", node)
    assert cstatus(pod, "c").state.waiting.message == (
        f'container has runAsNonRoot and image will run as root (pod: "nonroot_default({pod.metadata.uid})", '
        "container: c)")
    await api.delete(core_pb2.Pod, "nonroot", "default", grace_period=0)
    await pod_gone(api, "nonroot", node)


async def test_fs_group_owns_the_empty_dir_and_user_runs_with_it(api, node):
    await api.create(make_pod(
        "fsg", node, {"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                      "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        volumes=[{"name": "data", "emptyDir": {}}],
        securityContext={"runAsUser": 1000, "runAsNonRoot": True, "fsGroup": 2000}))
    pod = await pod_running(api, "fsg", node)
    cid = cid_of(pod, "c")
    out = node.runc_exec(cid, "sh", "-c", "id -u; id -G; touch /data/f; stat -c '%g %A' /data /data/f; "
                                          "grep -E 'Seccomp:|NoNewPrivs:' /proc/self/status")
    lines = out.stdout.split("\n")
    assert lines[0] == "1000" and "2000" in lines[1].split(), out
    assert lines[2].startswith("2000 drwxrws") and lines[3].split()[0] == "2000", out  # setgid: new files inherit
    assert lines[4].split() == ["NoNewPrivs:", "0"] and lines[5].split() == ["Seccomp:", "2"], out
    await api.delete(core_pb2.Pod, "fsg", "default", grace_period=0)
    await pod_gone(api, "fsg", node)
