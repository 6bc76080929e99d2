"""The cluster harness itself (harness.control_plane): a ControlPlane with the
scheduler and the controller manager runs a Deployment down to bound pods,
and stop() leaves none of its processes behind."""
from __future__ import annotations

import asyncio
import os

from harness.control_plane import ControlPlane
from harness.objects import new_object
from harness.pods import wait_for
from machinery.client import Client
from scheduler import hollow


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


async def test_control_plane_with_scheduler_and_controller_manager(tmp_path):
    cp = ControlPlane(tmp_path, scheduler=True, controller_manager=True)
    await asyncio.to_thread(cp.start)
    try:
        pids = [p.pid for p in cp.processes]
        assert len(pids) == 4 and all(alive(pid) for pid in pids)
        assert "kctl_scheduler" in cp.scheduler.metrics_text()
        async with Client(cp.target, timeout=30) as c:
            await c.create(hollow.node("n1"))
            await c.create(new_object("Deployment", "web"))

            async def bound():
                pods, _ = await c.list("Pod", "default")
                return [p for p in pods if p.spec.node_name == "n1"]
            pods = await wait_for(bound, 60, "the Deployment's pod bound to n1")
            assert pods[0].metadata.owner_references[0].kind == "ReplicaSet"
    finally:
        await asyncio.to_thread(cp.stop)
    assert not [pid for pid in pids if alive(pid)]
    assert [p.pid for p in cp.processes] == [None] * 4
    assert os.path.isdir(tmp_path)          # a given workdir is kept; only its own temp dir is removed


def test_control_plane_in_its_own_temporary_directory():
    with ControlPlane() as cp:
        workdir, pid = cp.workdir, cp.etcd.pid
        assert (workdir / "etcd-data").is_dir() and cp.scheduler is None and cp.controller_manager is None
    assert not workdir.exists() and not alive(pid)
