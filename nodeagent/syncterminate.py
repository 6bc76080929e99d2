"""A pod's last two sync steps, the kubelet's SyncTerminatingPod and
SyncTerminatedPod: the ``PodTermination`` mixin of nodeagent/syncpod.py's
PodSync.

Why apart: starting and keeping containers running (syncpod.py) and taking
them down for good are separate jobs with separate rules (grace periods,
preStop hooks, the proxy drain, the final delete), and the pod worker calls
them at separate times (nodeagent/podworker.py).

How:

* ``sync_terminating_pod``: stop the probes and exit waiters; once every
  node's proxy stopped sending the pod new connections (nodeagent/drain.py,
  bounded by the grace period), preStop hooks and SIGTERM for every running
  app container in parallel, then for the sidecars one by one, the last
  first, SIGKILL when the grace period is over (``_grace``: the pod's
  deletionGracePeriodSeconds, 2 s for a pod gone from the API, else
  terminationGracePeriodSeconds); the terminated statuses are written.
* ``sync_terminated_pod``: remove the containers (cgroups, mounts), the
  sandbox (netns, veth, IP) and the pod dir; finally delete the pod from
  the API with grace 0 and a uid precondition.

The mixin has no state of its own: it works on PodSync's ``agent``, ``pod``,
``records``, ``sandbox``, ``watchers``, ``volumes`` and ``gone`` and calls
its ``adopt``, ``refresh``, ``write_status`` and ``_event``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time

from machinery import errors
from machinery.pb import core_pb2
from nodeagent import initcontainers, podspec, status as pstatus
from nodeagent.errors import ContainerRuntimeError
from nodeagent.probes import run_handler
from nodeagent.status import ContainerRecord
from nodeagent.syncrules import termination_grace

log = logging.getLogger("kctl.nodeagent.podworker")


class PodTermination:
    """PodSync's termination steps: stop every container within the grace period, then clean up."""

    def _grace(self) -> float:
        md = self.pod.metadata
        if md.HasField("deletion_grace_period_seconds"):
            return float(md.deletion_grace_period_seconds)
        if self.gone:
            return 2.0
        return termination_grace(self.pod)

    async def sync_terminating_pod(self) -> None:
        """Stop every running container within the grace period (preStop first); show them terminated."""
        rt = self.agent.runtime
        self.watchers.stop_all()
        if not self._adopt_done:
            self.adopt()
        deadline = time.monotonic() + self._grace()
        specs = {c.name: c for c in list(self.pod.spec.init_containers) + list(self.pod.spec.containers)}

        async def stop_one(rec: ContainerRecord) -> None:
            st = await rt.state(rec.cid)
            if st.status != pstatus.RUNNING:
                return
            c = specs.get(rec.name)
            self._event("Normal", "Killing", f"Stopping container {rec.name}")
            if c is not None and c.lifecycle.HasField("pre_stop") and self.sandbox is not None:
                try:
                    await asyncio.wait_for(run_handler(c.lifecycle.pre_stop, c, rt, rec.cid, self.sandbox.ip,
                                                       max(0.1, deadline - time.monotonic())),
                                           max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
            await rt.stop(rec.cid, max(0.0, deadline - time.monotonic()))

        running = [r for r in self.records.values() if r.cid and rt.exists(r.cid)]
        drain = getattr(self.agent, "drain", None)
        if running and drain is not None and not self.gone:    # no new connections first (nodeagent/drain.py)
            left = deadline - time.monotonic()
            pid = next((st.pid for st in [await rt.state(r.cid) for r in running] if st.pid), 0)
            await drain.wait_pod_drained(self.pod, left - min(2.0, left / 2), netns_pid=pid)
        sidecars = [c.name for c in reversed(self.pod.spec.init_containers) if initcontainers.is_sidecar(c)]
        await asyncio.gather(*(stop_one(r) for r in running if r.name not in sidecars))
        for name in sidecars:              # after the app containers, the last sidecar first
            rec = self.records.get(name)
            if rec is not None and rec in running:
                await stop_one(rec)
        if running and not self.gone and self.pod.spec.containers:
            try:                                  # show the containers terminated, like the kubelet
                await self.refresh()
                await self.write_status()
            except (errors.ApiError, ContainerRuntimeError) as exc:
                log.debug("pod %s: final status not written: %s", self.key, exc)

    async def sync_terminated_pod(self) -> None:
        """Remove containers, sandbox and pod dir; delete the pod from the API (grace 0, uid precondition)."""
        rt = self.agent.runtime
        for rec in self.records.values():
            for cid in sorted(rec.all_cids | ({rec.cid} if rec.cid else set())):
                await rt.remove(cid)
            rec.all_cids.clear()
        for info in await rt.list():           # anything of ours no record knew about
            if info.labels.get(podspec.LABEL_POD_UID) == self.uid:
                await rt.remove(info.id)
        await self.agent.network.delete_sandbox(self.uid)
        self.sandbox = None
        self.volumes.close(self.pod_dir)
        if os.path.isdir(self.pod_dir):     # emptyDir volumes can be large: not on the agent's loop
            await asyncio.to_thread(shutil.rmtree, self.pod_dir)
        if not self.gone:
            try:
                await self.agent.client.delete(core_pb2.Pod, self.pod.metadata.name, self.pod.metadata.namespace,
                                               grace_period=0, uid=self.uid)
            except (errors.NotFound, errors.Conflict):
                pass
        log.info("pod %s (%s) terminated", self.key, self.uid)
