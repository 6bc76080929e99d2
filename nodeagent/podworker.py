"""One worker per pod UID: sync -> terminating -> terminated (design §6.4).

Concurrency model
-----------------
The agent calls ``PodWorker.update(pod)`` (or ``update(None)`` when the pod is
gone from the API) from its informer handlers; that only stores the newest
desired state and sets an ``asyncio.Event``.  The worker's single task
(``run()``) loops: take the newest pod, do one idempotent step, sleep until
woken or until the next deadline (a back-off ending, a resync).  Any step that
raises is logged and retried with a growing delay (0.5 s doubling to 10 s), so
each step is retried until it succeeds.  Helper tasks per running container
(an exit waiter and the probes) never touch the worker's state directly: they
record a result and wake the worker.  So all pod state is mutated by one task.

* sync: adopt containers left by an earlier agent (labels carry pod uid,
  container name and restart count) — a running container is never restarted
  because the agent restarted —; create the sandbox (netns + IP + pod files)
  and volumes; pull images (ErrImagePull, then ImagePullBackOff with back-off);
  start missing containers; restart exited ones by restartPolicy with
  CrashLoopBackOff (base doubling to 5 min, reset after 10 min running); kill
  containers whose liveness/startup probe failed; write status if it changed
  from our last write, or if someone else rewrote it since (the node lifecycle
  controller marks pods of a silent node Ready=False; when the agent is heard
  again, the pod informer delivers that foreign status, the worker wakes,
  and the computed status — compared with the cached one ignoring condition
  times — is written back).
* terminating (deletionTimestamp set, or the pod vanished): preStop hooks and
  SIGTERM for every running container in parallel, SIGKILL when the grace
  period (the pod's deletionGracePeriodSeconds) is over, then remove
  containers (cgroups, mounts), the sandbox (netns, veth, IP) and the pod dir;
  finally delete the pod from the API with grace 0 and a uid precondition.
* terminated: the task returns; the agent forgets the UID.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time

from machinery import errors
from machinery.pb import core_pb2
from nodeagent import metrics, podspec, status as pstatus
from nodeagent.images import default_pull_policy, lowerdirs
from nodeagent.network import Sandbox, write_pod_files
from nodeagent.probes import LIVENESS, READINESS, STARTUP, ContainerProbes, run_handler
from nodeagent.containers import CREATED, ContainerState
from nodeagent.errors import ContainerConfigError, ContainerRuntimeError, ImagePullError
from nodeagent.status import ContainerRecord

log = logging.getLogger("kctl.nodeagent.podworker")

MAX_BACKOFF = 300.0
BACKOFF_RESET = 600.0
RESYNC = 5.0


def container_id(pod_uid: str, name: str, restart: int) -> str:
    return hashlib.sha256(f"{pod_uid}/{name}/{restart}".encode()).hexdigest()[:32]


class PodWorker:
    def __init__(self, agent, pod: core_pb2.Pod, adopted: list | None = None):
        self.agent = agent
        self.uid = pod.metadata.uid
        self.pod = pod
        self.key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.gone = False
        self.phase = "sync"
        self.records: dict[str, ContainerRecord] = {}
        self._adopted = adopted or []
        self._adopt_done = False
        self.sandbox = None
        self.pod_files: dict[str, str] = {}
        self.first_seen = time.time()
        self.start_latency_observed = False
        self.last_written: core_pb2.PodStatus | None = None
        self.written_rv = ""                       # resourceVersion our last status write produced
        self.api_status: core_pb2.PodStatus | None = pod.status if pod.HasField("status") else None
        self.config_error = ""
        self._pulling = False
        self.deadline_message = ""
        self._helpers: dict[str, list[asyncio.Task]] = {}   # cid -> exit waiter + probes
        self._wake = asyncio.Event()
        self.done = asyncio.Event()

    # ------------------------------------------------------------ inputs
    def update(self, pod: core_pb2.Pod | None) -> None:
        """Store the newest desired state; wake the worker only if it matters to it
        (not for the echo of our own status writes)."""
        if pod is None:
            self.gone = True
            self._wake.set()
            return
        old, self.pod = self.pod, pod
        if (old is pod or old.spec != pod.spec
                or old.metadata.deletion_timestamp != pod.metadata.deletion_timestamp
                or old.metadata.deletion_grace_period_seconds != pod.metadata.deletion_grace_period_seconds
                or self._foreign_status() is not None):
            self._wake.set()

    def _foreign_status(self) -> core_pb2.PodStatus | None:
        """The cached pod's status if someone else wrote it after our last write and it differs
        from what we wrote (ignoring condition times); else None."""
        if self.last_written is None or not self.written_rv:
            return None
        rv = self.pod.metadata.resource_version
        if rv == self.written_rv or (rv.isdigit() and self.written_rv.isdigit()
                                     and int(rv) < int(self.written_rv)):
            return None          # our own write's echo, or an event from before it
        if pstatus.same_status(self.pod.status, self.last_written):
            return None
        return self.pod.status

    def wake(self) -> None:
        self._wake.set()

    @property
    def pod_dir(self) -> str:
        return os.path.join(self.agent.root_dir, "pods", self.uid)

    # ------------------------------------------------------------ main loop
    async def run(self) -> None:
        failures = 0
        try:
            while True:
                self._wake.clear()
                delay = RESYNC
                try:
                    if self.phase == "sync" and (self.gone or self.pod.metadata.HasField("deletion_timestamp")):
                        self.phase = "terminating"
                    if self.phase == "sync":
                        delay = await self._sync_or_abandon_pull()
                    else:
                        await self.terminate()
                        return
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every step is retried
                    failures += 1
                    delay = min(10.0, 0.5 * 2 ** (failures - 1))
                    metrics.WORKER_ERRORS.labels(self.phase).inc()
                    log.warning("pod %s (%s) %s failed (retry in %.1fs): %s", self.key, self.uid,
                                self.phase, delay, exc, exc_info=failures == 1)
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.01, delay))
                except asyncio.TimeoutError:
                    pass
        finally:
            for tasks in self._helpers.values():
                for t in tasks:
                    t.cancel()
            self.done.set()

    def _deleting(self) -> bool:
        return self.gone or self.pod.metadata.HasField("deletion_timestamp")

    async def _sync_or_abandon_pull(self) -> float:
        """sync(), but a deletion arriving while an image pull is in flight abandons the
        pull (the pull itself goes on in the image store; nothing else is cancelled)."""
        task = asyncio.create_task(self.sync())
        woken = False
        try:
            while True:
                wake = asyncio.create_task(self._wake.wait())
                done, _ = await asyncio.wait({task, wake}, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    wake.cancel()
                    return task.result()
                self._wake.clear()
                woken = True
                if self._deleting() and self._pulling:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    return 0.0
                if self._deleting():          # not pulling: let the step finish, then terminate
                    return await task
        finally:
            if not task.done():
                task.cancel()
            if woken:
                self._wake.set()              # a wake during the step asks for another round

    # ------------------------------------------------------------ sync
    def _adopt(self) -> None:
        """Rebuild records from runtime containers of this pod (agent restart)."""
        by_name: dict[str, list] = {}
        for info in self._adopted:
            by_name.setdefault(info.labels.get(podspec.LABEL_CONTAINER, ""), []).append(info)
        for name, infos in by_name.items():
            infos.sort(key=lambda i: int(i.labels.get(podspec.LABEL_RESTART, "0")))
            rec = self.records.setdefault(name, ContainerRecord(name))
            rec.all_cids.update(i.id for i in infos)
            cur = infos[-1]
            rec.cid, rec.state = cur.id, cur.state
            rec.restart_count = int(cur.labels.get(podspec.LABEL_RESTART, "0"))
            rec.exit_handled = cur.id if cur.state.status == pstatus.EXITED else None
            rec.adopted = True
            if len(infos) > 1:
                rec.prev_cid, rec.prev_state = infos[-2].id, infos[-2].state
            log.info("pod %s: adopted container %s (%s, restarts %d)", self.key, name, cur.state.status,
                     rec.restart_count)
        sb = self.agent.network.get_sandbox(self.uid)
        if sb is not None:
            self.sandbox = sb
        self._adopt_done = True

    async def sync(self) -> float:
        pod = self.pod
        if not self._adopt_done:
            self._adopt()
        for c in pod.spec.containers:
            rec = self.records.setdefault(c.name, ContainerRecord(c.name))
            rec.image = c.image
            if rec.adopted:        # probes start over; without probes a running container is ready
                rec.adopted = False
                rec.ready = self._ready_without_probe(c)
                rec.started = not c.HasField("startup_probe")
        next_in = RESYNC
        self.config_error = podspec.unsupported_volumes(pod)
        if self.config_error:
            for rec in self.records.values():
                if rec.cid is None:
                    rec.waiting_reason, rec.waiting_message = "CreateContainerConfigError", self.config_error
            await self._write_status()
            return 30.0
        known = self.last_written or self.api_status      # after an agent restart: what the API says
        if known is not None and known.phase in ("Succeeded", "Failed"):
            await self._refresh()          # finished for good: never start anything again
            if all(r.cid for r in self.records.values()):   # else keep the API's final statuses
                await self._write_status()
            return 30.0
        left = self._deadline_left()
        if left is not None and left <= 0:
            await self._deadline_exceeded()
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
            self.pod_files = write_pod_files(self.pod_dir, podspec.pod_hostname(pod), self.sandbox.ip)
            podspec.prepare_volumes(pod, self.pod_dir)
        await self._refresh()
        for c in pod.spec.containers:
            wait = await self._sync_container(c, self.records[c.name])
            if wait is not None:
                next_in = min(next_in, wait)
        await self._refresh()
        await self._write_status()
        return max(0.05, next_in)

    def _deadline_left(self) -> float | None:
        spec = self.pod.spec
        if not spec.HasField("active_deadline_seconds"):
            return None
        start = self.first_seen
        if self.api_status is not None and self.api_status.HasField("start_time"):
            start = self.api_status.start_time.ToNanoseconds() / 1e9
        return start + spec.active_deadline_seconds - time.time()

    async def _deadline_exceeded(self) -> None:
        """activeDeadlineSeconds passed: stop every container, phase Failed (DeadlineExceeded)."""
        if not self.deadline_message:
            self.deadline_message = "Pod was active on the node longer than the specified deadline"
            self.agent.recorder.event(self.pod, "Normal", "DeadlineExceeded", self.deadline_message)
        rt = self.agent.runtime
        for cid in list(self._helpers):
            self._stop_helpers(cid)
        grace = float(self.pod.spec.termination_grace_period_seconds
                      if self.pod.spec.HasField("termination_grace_period_seconds") else 30)
        running = [r for r in self.records.values() if r.cid and r.state is not None
                   and r.state.status == pstatus.RUNNING]
        for r in running:
            self.agent.recorder.event(self.pod, "Normal", "Killing", f"Stopping container {r.name}")
        await asyncio.gather(*(rt.stop(r.cid, grace) for r in running))
        await self._refresh()
        await self._write_status()

    async def _refresh(self) -> None:
        for rec in self.records.values():
            if rec.cid is None:
                continue
            waiter = self._helpers.get(rec.cid, [None])[0]
            if rec.state is not None and rec.state.status == pstatus.RUNNING and waiter is not None \
                    and not waiter.done() and rec.kill_requested != rec.cid:
                continue            # its exit waiter has not fired: still running, no runc call needed
            try:
                rec.state = await self.agent.runtime.state(rec.cid)
            except ContainerRuntimeError:
                rec.state = None
            if rec.state is None or rec.state.status == "unknown":     # vanished under us
                rec.state = ContainerState(pstatus.EXITED, exit_code=-1, finished_at=time.time())
            if rec.state is not None and rec.state.status == pstatus.EXITED and rec.exit_handled != rec.cid:
                self._on_exit(rec)

    def _on_exit(self, rec: ContainerRecord) -> None:
        """First sight of an instance's exit: compute its CrashLoopBackOff deadline."""
        rec.exit_handled = rec.cid
        rec.ready = rec.started = False
        self._stop_helpers(rec.cid)
        st = rec.state
        ran = (st.finished_at or time.time()) - (st.started_at or time.time())
        base = self.agent.crashloop_base
        rec.backoff = base if (rec.backoff == 0 or ran >= BACKOFF_RESET) else min(rec.backoff * 2, MAX_BACKOFF)
        rec.backoff_until = (st.finished_at or time.time()) + rec.backoff
        self.wake()                                   # decide about the restart in the next round

    def _should_restart(self, rec: ContainerRecord) -> bool:
        policy = self.pod.spec.restart_policy or "Always"
        if policy == "Always":
            return True
        return policy == "OnFailure" and rec.state is not None and rec.state.exit_code != 0

    async def _sync_container(self, c: core_pb2.Container, rec: ContainerRecord) -> float | None:
        rt = self.agent.runtime
        if rec.cid and rec.kill_requested == rec.cid and rec.state and rec.state.status == pstatus.RUNNING:
            self.agent.recorder.event(self.pod, "Normal", "Killing",
                                      f"Container {c.name} {rec.kill_reason}, will be restarted")
            rec.kill_requested = None
            await rt.stop(rec.cid, self._probe_grace(c))
            await self._refresh()
        if rec.cid and rec.state is not None and rec.state.status in (pstatus.RUNNING, CREATED):
            rec.waiting_reason = rec.waiting_message = ""
            self._ensure_helpers(c, rec)
            return None
        restart = 0
        if rec.cid and rec.state is not None:          # an instance exists and has exited
            if not self._should_restart(rec):
                rec.waiting_reason = ""
                return None
            now = time.time()
            if now < rec.backoff_until:
                if rec.waiting_reason != "CrashLoopBackOff":
                    self.agent.recorder.event(self.pod, "Warning", "BackOff",
                                              f"Back-off restarting failed container {c.name} in pod "
                                              f"{self.pod.metadata.name}_{self.pod.metadata.namespace}")
                rec.waiting_reason = "CrashLoopBackOff"
                rec.waiting_message = (f"back-off {rec.backoff:g}s restarting failed container={c.name} "
                                       f"pod={self.pod.metadata.name}_{self.pod.metadata.namespace}")
                return rec.backoff_until - now
            restart = rec.restart_count + 1
        if time.time() < rec.pull_backoff_until:
            rec.waiting_reason = "ImagePullBackOff"
            rec.waiting_message = f'Back-off pulling image "{c.image}"'
            return rec.pull_backoff_until - time.time()
        image = await self._pull(c, rec)
        if image is None:    # show ErrImagePull a moment, then ImagePullBackOff until the retry
            return min(1.0, rec.pull_backoff / 2)
        cid = container_id(self.uid, c.name, restart)
        try:
            cfg = podspec.container_config(self.pod, c, image, self.sandbox, self.pod_dir, self.pod_files,
                                           self.agent.node_ip, cid, restart, lowerdirs(image))
        except ContainerConfigError as exc:
            if rec.waiting_reason != "CreateContainerConfigError":
                self.agent.recorder.event(self.pod, "Warning", "Failed", f"Error: {exc}")
            rec.waiting_reason, rec.waiting_message = "CreateContainerConfigError", str(exc)
            return 10.0
        if rt.exists(cid):                              # a half-done earlier attempt
            await rt.remove(cid)
        try:
            t0 = time.perf_counter()
            info = await rt.create_and_start(cfg)
            log.debug("pod %s: container %s started in %.1f ms", self.key, c.name, (time.perf_counter() - t0) * 1e3)
        except ContainerRuntimeError as exc:
            self.agent.recorder.event(self.pod, "Warning", "Failed", f"Error: {exc}")
            rec.waiting_reason, rec.waiting_message = "RunContainerError", str(exc)
            await rt.remove(cid)
            raise
        self.agent.recorder.event(self.pod, "Normal", "Created", f"Created container {c.name}")
        self.agent.recorder.event(self.pod, "Normal", "Started", f"Started container {c.name}")
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
        self._ensure_helpers(c, rec)
        return None

    async def _pull(self, c: core_pb2.Container, rec: ContainerRecord):
        images = self.agent.images
        try:
            policy = c.image_pull_policy or default_pull_policy(c.image)
            present = policy != "Always" and images.get(c.image) is not None
            if not present:
                self.agent.recorder.event(self.pod, "Normal", "Pulling", f'Pulling image "{c.image}"')
            t0 = time.monotonic()
            self._pulling = True
            try:
                image = await images.pull(c.image, policy)
            finally:
                self._pulling = False
        except ImagePullError as exc:
            rec.pull_failures += 1
            rec.pull_backoff = (self.agent.crashloop_base if rec.pull_backoff == 0
                                else min(rec.pull_backoff * 2, MAX_BACKOFF))
            rec.pull_backoff_until = time.time() + rec.pull_backoff
            rec.waiting_reason = "ErrImagePull" if exc.reason in ("ErrImagePull", "") else exc.reason
            rec.waiting_message = exc.message
            self.agent.recorder.event(self.pod, "Warning", "Failed",
                                      f'Failed to pull image "{c.image}": {exc.message}')
            self.agent.recorder.event(self.pod, "Warning", "Failed", f"Error: {rec.waiting_reason}")
            return None
        except ValueError as exc:
            rec.waiting_reason, rec.waiting_message = "InvalidImageName", str(exc)
            rec.pull_backoff_until = time.time() + 30
            return None
        rec.pull_backoff = 0
        rec.pull_failures = 0
        if present:
            self.agent.recorder.event(self.pod, "Normal", "Pulled",
                                      f'Container image "{c.image}" already present on machine')
        else:
            self.agent.recorder.event(self.pod, "Normal", "Pulled", f'Successfully pulled image "{c.image}" '
                                      f"in {time.monotonic() - t0:.3f}s")
        return image

    def _ready_without_probe(self, c: core_pb2.Container) -> bool:
        """Ready until a readiness probe says otherwise: only without one (and, on a hollow node,
        not for never-ready images, see fake_runtime.py)."""
        never = getattr(self.agent.runtime, "never_ready", None)
        return not c.HasField("readiness_probe") and not (never is not None and never(c))

    def _probe_grace(self, c: core_pb2.Container) -> float:
        for p in (c.liveness_probe, c.startup_probe):
            if p.HasField("termination_grace_period_seconds"):
                return float(p.termination_grace_period_seconds)
        spec = self.pod.spec
        return float(spec.termination_grace_period_seconds if spec.HasField("termination_grace_period_seconds")
                     else 30)

    # ------------------------------------------------------------ helpers per instance
    def _ensure_helpers(self, c: core_pb2.Container, rec: ContainerRecord) -> None:
        cid = rec.cid
        if cid in self._helpers:
            return
        tasks = [asyncio.create_task(self._wait_exit(cid), name=f"wait-{cid[:8]}")]
        if any(ContainerProbes.has(c, k) for k in (STARTUP, LIVENESS, READINESS)):
            probes = ContainerProbes(c, self.agent.runtime, cid, self.sandbox.ip,
                                     lambda kind, ok, msg: self._probe_result(c.name, cid, kind, ok, msg),
                                     lambda kind, msg: self._probe_failed(c.name, kind, msg))
            tasks.append(asyncio.create_task(probes.run(), name=f"probes-{cid[:8]}"))
        self._helpers[cid] = tasks

    def _stop_helpers(self, cid: str | None) -> None:
        for t in self._helpers.pop(cid, []):
            t.cancel()

    async def _wait_exit(self, cid: str) -> None:
        try:
            await self.agent.runtime.wait(cid)
        except ContainerRuntimeError:
            pass
        self.wake()

    def _probe_result(self, name: str, cid: str, kind: str, ok: bool, msg: str) -> None:
        rec = self.records.get(name)
        metrics.PROBES.labels(kind.lower(), "success" if ok else "failure").inc()
        if rec is None or rec.cid != cid:
            return
        if kind == READINESS:
            rec.ready = ok
        elif kind == STARTUP:
            rec.started = ok
            if not ok:
                rec.kill_requested, rec.kill_reason = cid, "failed startup probe"
        elif kind == LIVENESS and not ok:
            rec.kill_requested, rec.kill_reason = cid, "failed liveness probe"
        self.wake()

    def _probe_failed(self, name: str, kind: str, msg: str) -> None:
        self.agent.recorder.event(self.pod, "Warning", "Unhealthy", f"{kind} probe failed: {msg}")

    # ------------------------------------------------------------ status
    async def _write_status(self) -> None:
        pod = self.pod
        foreign = self._foreign_status()
        recs = [self.records[c.name] for c in pod.spec.containers if c.name in self.records]
        new = pstatus.build_status(pod, recs, host_ip=self.agent.node_ip,
                                   pod_ip=self.sandbox.ip if self.sandbox else
                                   (self.api_status.pod_ip if self.api_status else ""),
                                   start_time=self.first_seen,
                                   old=foreign or self.last_written or self.api_status,
                                   message=self.config_error or self.deadline_message,
                                   reason="DeadlineExceeded" if self.deadline_message else "",
                                   failed=bool(self.deadline_message))
        if new.phase == "Running" and not self.start_latency_observed and all(
                r.state is not None and r.state.status == pstatus.RUNNING for r in recs):
            self.start_latency_observed = True
            metrics.POD_START_LATENCY.observe(time.time() - self.first_seen)
        if not pstatus.status_changed(self.last_written, new) and (
                foreign is None or pstatus.same_status(foreign, new)):
            return
        if foreign is not None:
            log.info("pod %s: status was changed by someone else (Ready %s); writing ours again", self.key,
                     next((c.status for c in foreign.conditions if c.type == "Ready"), "?"))
        obj = core_pb2.Pod()
        obj.metadata.CopyFrom(pod.metadata)
        obj.metadata.resource_version = ""          # status is ours alone: no optimistic lock
        obj.status.CopyFrom(new)
        try:
            t0 = time.perf_counter()
            written = await self.agent.client.update_status(obj)
            log.debug("pod %s: status %s written in %.1f ms (%.1f ms after first sight)", self.key, new.phase,
                      (time.perf_counter() - t0) * 1e3, (time.time() - self.first_seen) * 1e3)
        except errors.NotFound:
            metrics.STATUS_WRITES.labels("notfound").inc()
            self.gone = True
            return
        except errors.ApiError:
            metrics.STATUS_WRITES.labels("error").inc()
            raise
        metrics.STATUS_WRITES.labels("ok").inc()
        self.last_written = new
        self.written_rv = getattr(getattr(written, "metadata", None), "resource_version", "") or ""

    # ------------------------------------------------------------ terminating
    def _grace(self) -> float:
        md, spec = self.pod.metadata, self.pod.spec
        if md.HasField("deletion_grace_period_seconds"):
            return float(md.deletion_grace_period_seconds)
        if self.gone:
            return 2.0
        return float(spec.termination_grace_period_seconds if spec.HasField("termination_grace_period_seconds")
                     else 30)

    async def terminate(self) -> None:
        rt = self.agent.runtime
        for cid in list(self._helpers):
            self._stop_helpers(cid)
        if not self._adopt_done:
            self._adopt()
        grace = self._grace()
        deadline = time.monotonic() + grace
        specs = {c.name: c for c in self.pod.spec.containers}

        async def stop_one(rec: ContainerRecord) -> None:
            st = await rt.state(rec.cid)
            if st.status != pstatus.RUNNING:
                return
            c = specs.get(rec.name)
            self.agent.recorder.event(self.pod, "Normal", "Killing", f"Stopping container {rec.name}")
            if c is not None and c.lifecycle.HasField("pre_stop") and self.sandbox is not None:
                try:
                    await asyncio.wait_for(run_handler(c.lifecycle.pre_stop, c, rt, rec.cid, self.sandbox.ip,
                                                       max(0.1, deadline - time.monotonic())),
                                           max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
            await rt.stop(rec.cid, max(0.0, deadline - time.monotonic()))

        running = [r for r in self.records.values() if r.cid and rt.exists(r.cid)]
        await asyncio.gather(*(stop_one(r) for r in running))
        if running and not self.gone and self.pod.spec.containers:
            try:                                  # show the containers terminated, like the kubelet
                await self._refresh()
                await self._write_status()
            except (errors.ApiError, ContainerRuntimeError) as exc:
                log.debug("pod %s: final status not written: %s", self.key, exc)
        for rec in self.records.values():
            for cid in sorted(rec.all_cids | ({rec.cid} if rec.cid else set())):
                await rt.remove(cid)
            rec.all_cids.clear()
        for info in await rt.list():           # anything of ours no record knew about
            if info.labels.get(podspec.LABEL_POD_UID) == self.uid:
                await rt.remove(info.id)
        await self.agent.network.delete_sandbox(self.uid)
        self.sandbox = None
        if os.path.isdir(self.pod_dir):
            shutil.rmtree(self.pod_dir)
        if not self.gone:
            try:
                await self.agent.client.delete(core_pb2.Pod, self.pod.metadata.name, self.pod.metadata.namespace,
                                               grace_period=0, uid=self.uid)
            except (errors.NotFound, errors.Conflict):
                pass
        log.info("pod %s (%s) terminated", self.key, self.uid)


