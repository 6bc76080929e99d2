"""What a pod worker does for its pod: the kubelet's SyncPod, SyncTerminatingPod, SyncTerminatedPod.

``PodSync`` holds everything the agent knows about one pod's containers and
performs the steps; *when* a step runs — on an update, a wake-up, a
deadline, again after a failure — is the pod worker's business
(nodeagent/podworker.py).  Each step is idempotent: it looks at the records
and the runtime and does what is missing, so a step that raised is simply
run again.  A step can be driven without any worker loop (the unit tests
call ``sync_pod()`` on the hollow runtime and look at the records).

* ``sync_pod``: adopt containers left by an earlier agent (labels carry pod
  uid, container name and restart count) — a running container is never
  restarted because the agent restarted —; create the sandbox (netns + IP +
  pod files); set up the volumes and read the ConfigMaps/Secrets/claims the
  pod refers to, on every step, so mounted files follow changes
  (nodeagent/podvolumes.py; until they can be set up, new containers wait
  in ContainerCreating); pull images (with the pod's imagePullSecrets,
  nodeagent/pullsecrets.py) (ErrImagePull, then ImagePullBackOff
  with back-off, nodeagent/imagepull.py); run the init containers one after
  another and keep the sidecars running (which ones when:
  nodeagent/initcontainers.py), then start missing app containers (each
  new instance's postStart hook first, nodeagent/poststart.py); restart
  exited ones by restartPolicy with CrashLoopBackOff (nodeagent/syncrules.py); kill containers whose liveness/startup
  probe failed; fail the pod when activeDeadlineSeconds passed (DeadlineExceeded)
  or a disk emptyDir outgrew its sizeLimit (Evicted); write the
  status (nodeagent/statusmanager.py).  Returns when it wants to run again.
* ``sync_terminating_pod``: once every node's proxy stopped sending the pod
  new connections (nodeagent/drain.py, bounded by the grace period), preStop
  hooks and SIGTERM for every running app container in parallel, then for the sidecars one by
  one, the last first, SIGKILL when the grace period (the pod's
  deletionGracePeriodSeconds) is over; the terminated statuses are written.
* ``sync_terminated_pod``: remove the containers (cgroups, mounts), the
  sandbox (netns, veth, IP) and the pod dir; finally delete the pod from the
  API with grace 0 and a uid precondition.
  These two steps are the ``PodTermination`` mixin, nodeagent/syncterminate.py.

Inputs: ``pod`` (the newest desired state) and ``gone`` (the pod vanished
from the API) are set by the worker; ``gone`` is also set here when a
status write finds the pod gone.  Helper tasks per running instance (exit
waiter, probes; nodeagent/watchers.py) record a result and call ``wake``;
all records are changed by the worker's one task only.

``agent`` is the node agent (nodeagent/agent.py) or anything with its
``runtime``, ``images``, ``network``, ``recorder``, ``client``, ``node_ip``,
``root_dir``, ``fake`` and ``crashloop_base``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable

from machinery.pb import core_pb2
from nodeagent import initcontainers, podfiles, podspec, status as pstatus
from nodeagent.containers import CREATED
from nodeagent.errors import ContainerConfigError, ContainerRuntimeError
from nodeagent.imagepull import ImagePuller
from nodeagent.images import lowerdirs
from nodeagent.network import Sandbox
from nodeagent.podvolumes import PodVolumes
from nodeagent.pullsecrets import pull_auth
from nodeagent.envvars import Sources
from nodeagent.poststart import run_post_start
from nodeagent.status import ContainerRecord
from nodeagent.statusmanager import PodStatusWriter
from nodeagent.syncrules import (adopt_records, container_id, crashloop_backoff, deadline_left,  # noqa: F401
                                 probe_grace, should_restart, termination_grace)
from nodeagent.syncstatus import PodObservation
from nodeagent.syncterminate import PodTermination
from nodeagent.watchers import InstanceWatchers

log = logging.getLogger("kctl.nodeagent.podworker")

RESYNC = 5.0


class PodSync(PodObservation, PodTermination):
    """One pod's containers and the sync steps on them; reading their state
    into the records and writing the pod status (refresh, probe results,
    write_status) is PodObservation's part (nodeagent/syncstatus.py),
    stopping and cleaning up (sync_terminating_pod, sync_terminated_pod)
    PodTermination's (nodeagent/syncterminate.py)."""

    def __init__(self, agent, pod: core_pb2.Pod, adopted: list | None = None,
                 wake: Callable[[], None] = lambda: None):
        self.agent = agent
        self.uid = pod.metadata.uid
        self.key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.pod = pod
        self.gone = False
        self.wake = wake
        self.records: dict[str, ContainerRecord] = {}
        self._adopted = adopted or []
        self._adopt_done = False
        self.sandbox: Sandbox | None = None
        self.pod_files: dict[str, str] = {}
        self.status = PodStatusWriter(agent.client, agent.node_ip, pod)
        self.config_error = ""
        self.deadline_message = ""          # why the pod failed on the node (deadline, eviction)
        self.fail_reason = ""
        self.init_failed = ""               # a regular init container failed under restartPolicy Never
        self._init_waits: list[float] = []
        self.puller = ImagePuller(agent.images, agent.recorder, agent.crashloop_base)
        self.watchers = InstanceWatchers(agent.runtime, wake)
        self.volumes = PodVolumes(agent, self.uid, wake)
        self.sources: Sources | None = None

    @property
    def pod_dir(self) -> str:
        return os.path.join(self.agent.root_dir, "pods", self.uid)

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.agent.recorder.event(self.pod, type_, reason, message)

    # ------------------------------------------------------------ sync
    def adopt(self) -> None:
        """Rebuild records from runtime containers of this pod (agent restart)."""
        adopt_records(self.records, self._adopted, self.key)
        sb = self.agent.network.get_sandbox(self.uid)
        if sb is not None:
            self.sandbox = sb
        self._adopt_done = True

    async def sync_pod(self) -> float:
        """One idempotent sync step; returns the seconds until it wants to run again."""
        pod = self.pod
        if not self._adopt_done:
            self.adopt()
        for c in list(pod.spec.init_containers) + list(pod.spec.containers):
            rec = self.records.setdefault(c.name, ContainerRecord(c.name))
            rec.image = c.image
            if rec.adopted:        # probes start over; without probes a running container is ready
                rec.adopted = False
                rec.ready = self._ready_without_probe(c)
                rec.started = not c.HasField("startup_probe")
        next_in = RESYNC
        known = self.status.known()       # after an agent restart: what the API says
        if known is not None and known.phase in ("Succeeded", "Failed"):
            await self.refresh()          # finished for good: never start anything again
            if all(r.cid for r in self.records.values()):   # else keep the API's final statuses
                await self.write_status()
            return 30.0
        left = deadline_left(self.pod, self.status.first_seen, self.status.api_status)
        if left is not None and left <= 0:
            await self._fail("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
            return 30.0
        if left is not None:
            next_in = min(next_in, left)
        t0 = time.perf_counter()
        if self.sandbox is None and pod.spec.host_network:
            # the node's own network namespace (the agent's, after --netns); the pod IP is the node IP
            self.sandbox = Sandbox(self.uid, "", f"/proc/{os.getpid()}/ns/net" if not self.agent.fake else "",
                                   self.agent.node_ip, 32, "", "")
        if self.sandbox is None:
            self.sandbox = await self.agent.network.create_sandbox(self.uid, pod.metadata.name)
            log.debug("pod %s: sandbox %s in %.1f ms", self.key, self.sandbox.ip, (time.perf_counter() - t0) * 1e3)
        if not self.pod_files and not self.agent.fake:
            self.pod_files, warnings = podfiles.write_pod_files(self.pod_dir, pod, [self.sandbox.ip], self.agent.dns)
            for reason, message in warnings:
                self._event("Warning", reason, message)
        self.sources = await self.volumes.sync(pod, self.pod_dir, self.sandbox.ip)
        if self.volumes.evicted:                     # an emptyDir over its sizeLimit (podvolumes.py)
            await self._fail("Evicted", self.volumes.evicted, "Warning")
            return 30.0
        await self.refresh()
        plan = await self._sync_init()
        if plan.failed:
            self.init_failed = plan.failed
            await self._stop_running()
        elif plan.done:
            for c in pod.spec.containers:
                wait = await self._sync_container(c, self.records[c.name])
                if wait is not None:
                    next_in = min(next_in, wait)
            await self._stop_sidecars()
        next_in = min([next_in, *self._init_waits])
        await self.refresh()
        await self.write_status()
        return max(0.05, next_in)

    def _apps_finished(self) -> bool:
        """Every app container exited and will not be restarted (restartPolicy Never/OnFailure)."""
        recs = [self.records[c.name] for c in self.pod.spec.containers]
        return all(r.cid and r.state is not None and r.state.status == pstatus.EXITED
                   and not should_restart(self.pod, r) for r in recs)

    async def _sync_init(self) -> initcontainers.InitPlan:
        """Sync the init containers the plan names (nodeagent/initcontainers.py) until it stops
        changing: a sidecar that is up at once lets the next init container start in this step."""
        self._init_waits: list[float] = []
        synced: list[str] = []
        while True:
            plan = initcontainers.plan(self.pod, self.records, self._apps_finished())
            todo = [c for c in plan.sync if c.name not in synced]
            if not todo or plan.failed:
                return plan
            for c in todo:
                synced.append(c.name)
                wait = await self._sync_container(c, self.records[c.name],
                                                  initcontainers.restart_policy(self.pod, c, True))
                if wait is not None:
                    self._init_waits.append(wait)
            if not plan.done:
                for c in self.pod.spec.containers:
                    rec = self.records[c.name]
                    if not rec.cid:
                        rec.waiting_reason, rec.waiting_message = "PodInitializing", ""
            await self.refresh()

    async def _stop_sidecars(self) -> None:
        """The app containers finished for good: stop the sidecars, last one first."""
        plan = initcontainers.plan(self.pod, self.records, self._apps_finished())
        for c in plan.stop:
            rec = self.records[c.name]
            self._event("Normal", "Killing", f"Stopping container {c.name}")
            await self.agent.runtime.stop(rec.cid, termination_grace(self.pod))
            await self.refresh()

    async def _fail(self, reason: str, message: str, type_: str = "Normal") -> None:
        """activeDeadlineSeconds passed (DeadlineExceeded) or the pod is evicted (Evicted): stop
        every container, phase Failed with that reason."""
        if not self.deadline_message:
            self.deadline_message, self.fail_reason = message, reason
            self._event(type_, reason, message)
        await self._stop_running()
        await self.write_status()

    async def _stop_running(self) -> None:
        self.watchers.stop_all()
        grace = termination_grace(self.pod)
        running = [r for r in self.records.values() if r.cid and r.state is not None
                   and r.state.status == pstatus.RUNNING]
        for r in running:
            self._event("Normal", "Killing", f"Stopping container {r.name}")
        await asyncio.gather(*(self.agent.runtime.stop(r.cid, grace) for r in running))
        await self.refresh()

    async def _sync_container(self, c: core_pb2.Container, rec: ContainerRecord,
                              policy: str = "") -> float | None:
        rt = self.agent.runtime
        if rec.cid and rec.kill_requested == rec.cid and rec.state and rec.state.status == pstatus.RUNNING:
            self._event("Normal", "Killing", f"Container {c.name} {rec.kill_reason}, will be restarted")
            rec.kill_requested = None
            await rt.stop(rec.cid, probe_grace(self.pod, c))
            await self.refresh()
        if rec.cid and rec.state is not None and rec.state.status in (pstatus.RUNNING, CREATED):
            rec.waiting_reason = rec.waiting_message = ""
            self._watch(c, rec)
            return None
        restart = 0
        if rec.cid and rec.state is not None:          # an instance exists and has exited
            if not should_restart(self.pod, rec, policy):
                rec.waiting_reason = ""
                return None
            now = time.time()
            if now < rec.backoff_until:
                where = f"{self.pod.metadata.name}_{self.pod.metadata.namespace}"
                if rec.waiting_reason != "CrashLoopBackOff":
                    self._event("Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {where}")
                rec.waiting_reason = "CrashLoopBackOff"
                rec.waiting_message = f"back-off {rec.backoff:g}s restarting failed container={c.name} pod={where}"
                return rec.backoff_until - now
            restart = rec.restart_count + 1
        if self.sources is None:                       # a volume cannot be set up (FailedMount)
            rec.waiting_reason, rec.waiting_message = "ContainerCreating", ""
            return None
        if time.time() < rec.pull_backoff_until:
            rec.waiting_reason = "ImagePullBackOff"
            rec.waiting_message = f'Back-off pulling image "{c.image}"'
            return rec.pull_backoff_until - time.time()
        image = await self.puller.ensure(self.pod, c, rec, pull_auth(self.pod, self.sources, self._event))
        if image is None:    # show ErrImagePull a moment, then ImagePullBackOff until the retry
            return min(1.0, rec.pull_backoff / 2)
        cid = container_id(self.uid, c.name, restart)
        try:
            cfg = podspec.container_config(self.pod, c, image, self.sandbox, self.pod_dir, self.pod_files,
                                           self.agent.node_ip, cid, restart, lowerdirs(image), self.sources,
                                           getattr(self.agent, "security", None))
            for event in self.sources.events:
                self._event(*event)
            self.sources.events.clear()
        except ContainerConfigError as exc:
            if rec.waiting_reason != "CreateContainerConfigError":
                self._event("Warning", "Failed", f"Error: {exc}")
            rec.waiting_reason, rec.waiting_message = "CreateContainerConfigError", str(exc)
            return 10.0
        if rt.exists(cid):                              # a half-done earlier attempt
            await rt.remove(cid)
        try:
            t0 = time.perf_counter()
            info = await rt.create_and_start(cfg)
            log.debug("pod %s: container %s started in %.1f ms", self.key, c.name, (time.perf_counter() - t0) * 1e3)
        except ContainerRuntimeError as exc:
            self._event("Warning", "Failed", f"Error: {exc}")
            rec.waiting_reason, rec.waiting_message = "RunContainerError", str(exc)
            await rt.remove(cid)
            raise
        self._event("Normal", "Created", f"Created container {c.name}")
        self._event("Normal", "Started", f"Started container {c.name}")
        if rec.cid and restart:
            old_prev = rec.prev_cid
            rec.prev_cid, rec.prev_state = rec.cid, rec.state
            if old_prev and old_prev != rec.prev_cid:   # keep one previous instance (logs --previous)
                await rt.remove(old_prev)
                rec.all_cids.discard(old_prev)
        rec.cid, rec.state, rec.restart_count = cid, info.state, restart
        rec.all_cids.add(cid)
        rec.waiting_reason = rec.waiting_message = ""
        rec.image_id = image.repo_digest or image.image_id
        rec.ready = self._ready_without_probe(c)
        rec.started = not c.HasField("startup_probe")
        if not await run_post_start(self.pod, c, rt, cid, self.sandbox.ip, termination_grace(self.pod), self._event):
            await self.refresh()                        # killed: its exit is handled as any other
            return None
        self._watch(c, rec)
        return None

    def _ready_without_probe(self, c: core_pb2.Container) -> bool:
        """Ready until a readiness probe says otherwise: only without one (and, on a hollow node,
        not for never-ready images, see fake_runtime.py)."""
        never = getattr(self.agent.runtime, "never_ready", None)
        return not c.HasField("readiness_probe") and not (never is not None and never(c))

    # ------------------------------------------------------------ probes
    def _watch(self, c: core_pb2.Container, rec: ContainerRecord) -> None:
        cid = rec.cid
        self.watchers.ensure(c, cid, self.sandbox.ip,
                             lambda kind, ok, msg: self._probe_result(c.name, cid, kind, ok, msg),
                             lambda kind, msg: self._event("Warning", "Unhealthy", f"{kind} probe failed: {msg}"))
