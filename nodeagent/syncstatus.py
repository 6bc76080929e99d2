"""What a pod's containers are doing, as PodSync's records and the pod
status: the ``PodObservation`` mixin of nodeagent/syncpod.py's PodSync.

Why apart: syncpod.py decides and acts (start, restart, kill); this module
only records what happened, so every path by which a record changes from
outside the sync step is in one place, and the status is computed from the
records alone.

How:

* ``refresh`` reads the runtime state of every current instance, skipping
  a running one whose exit waiter (nodeagent/watchers.py) has not fired;
  a vanished instance counts as exited with code -1;
* ``_on_exit``, on the first sight of an exit: not ready, its watchers
  stopped, the CrashLoopBackOff deadline computed (syncrules.py), and a
  ``wake`` so the next step decides about the restart;
* ``_probe_result`` (called by the probe watchers): readiness sets
  ``ready``, startup ``started``, a failed liveness or startup probe asks
  for a kill, which the next sync step carries out;
* ``write_status`` hands the records to the PodStatusWriter
  (nodeagent/statusmanager.py); a pod gone from the API sets ``gone``.

The mixin has no state of its own: it works on PodSync's ``agent``, ``pod``,
``records``, ``sandbox``, ``status``, ``watchers`` and failure fields.
"""
from __future__ import annotations

import time

from nodeagent import initcontainers, metrics, status as pstatus
from nodeagent.containers import ContainerState
from nodeagent.errors import ContainerRuntimeError
from nodeagent.probes import LIVENESS, READINESS, STARTUP
from nodeagent.status import ContainerRecord
from nodeagent.syncrules import crashloop_backoff


class PodObservation:
    """PodSync's records from what the runtime and the probes report, and the status written from them."""

    async def refresh(self) -> None:
        """Read the runtime state of every current instance (skipped while its exit waiter waits)."""
        for rec in self.records.values():
            if rec.cid is None:
                continue
            if rec.state is not None and rec.state.status == pstatus.RUNNING \
                    and self.watchers.awaiting_exit(rec.cid) and rec.kill_requested != rec.cid:
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
        self.watchers.stop(rec.cid)
        st = rec.state
        ran = (st.finished_at or time.time()) - (st.started_at or time.time())
        rec.backoff = crashloop_backoff(rec.backoff, ran, self.agent.crashloop_base)
        rec.backoff_until = (st.finished_at or time.time()) + rec.backoff
        self.wake()                                   # decide about the restart in the next round

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

    async def write_status(self) -> None:
        recs = [self.records[c.name] for c in self.pod.spec.containers if c.name in self.records]
        inits = [(self.records[c.name], initcontainers.is_sidecar(c)) for c in self.pod.spec.init_containers
                 if c.name in self.records]
        plan = initcontainers.plan(self.pod, self.records)
        if not await self.status.write(self.pod, recs, pod_ip=self.sandbox.ip if self.sandbox else None,
                                       message=self.config_error or self.deadline_message,
                                       reason=self.fail_reason,
                                       failed=bool(self.deadline_message or self.init_failed),
                                       init_records=inits, initialized=plan.done):
            self.gone = True
        self.watchers.reported()             # the probes of the instances just shown may start
