"""The Job controller (Kubernetes' pkg/controller/job).

sync(key) reads the Job from the cache, claims its pods (selector +
controllerRef) and, like Kubernetes with job tracking:

1. accounts finished pods: every pod carries the finalizer
   `batch.kubernetes.io/job-tracking`; a pod that succeeded or failed goes
   into status.uncountedTerminatedPods first (an Indexed job's success goes
   straight into completedIndexes, the index being its own record), that
   status is written, then the pod loses its finalizer, then its UID moves
   into the succeeded/failed counters (in this sync or, after a failed
   write, in a later one). A crash between the steps loses nothing and
   counts nothing twice; "finalizer expectations" stop a stale cache from
   counting a pod again after its finalizer went;
2. decides whether the job is done: a FailJob rule of the podFailurePolicy,
   failed > backoffLimit (or, with restartPolicy OnFailure, container
   restarts), activeDeadlineSeconds passed -> FailureTarget; enough
   successes -> SuccessCriteriaMet. The running pods are deleted, and once
   none is left the terminal Failed/Complete condition is written (the
   1.31+ order);
3. otherwise (expectations satisfied) creates or deletes pods to run
   min(parallelism, completions - succeeded) of them, one per missing index
   for `completionMode: Indexed` (annotation and label
   batch.kubernetes.io/job-completion-index, env JOB_COMPLETION_INDEX,
   hostname NAME-INDEX), after the failure back-off (10 s doubling per
   failure since the last success, capped; `backoff_base`/`backoff_cap`
   make it short for tests); a suspended job has its pods deleted (and
   their deletion is not counted as a failure).

Pods of a deleted job keep their finalizer until the orphan work item
("pod:NS/NAME") removes it. Pure decisions live in controllers/job_util.py.
"""
from __future__ import annotations

import asyncio
import time

from machinery import codec, errors, kinds, selectors, workloads
from machinery.informer import BY_CONTROLLER, key_of

from controllers import job_util as ju
from controllers import podcontrol, podutil
from controllers.base import Controller
from controllers.expectations import Expectations
from controllers.replicaset import ensure_indexes

ORPHAN = "pod:"


def pod_for(job, index: int | None = None):
    """A pod from the job's template: finalizer, owner, and for Indexed jobs the index."""
    pod = kinds.new("Pod")
    t, md = job.spec.template, job.metadata
    pod.metadata.namespace = md.namespace
    pod.metadata.generate_name = f"{md.name}-" if index is None else f"{md.name}-{index}-"
    pod.metadata.labels.update(t.metadata.labels)
    pod.metadata.annotations.update(t.metadata.annotations)
    pod.metadata.finalizers.extend([*t.metadata.finalizers, workloads.JOB_TRACKING_FINALIZER])
    pod.metadata.owner_references.append(podutil.owner_ref_for(job))
    pod.spec.CopyFrom(t.spec)
    if index is not None:
        pod.metadata.annotations[workloads.COMPLETION_INDEX] = str(index)
        pod.metadata.labels[workloads.COMPLETION_INDEX] = str(index)
        if not pod.spec.hostname:
            pod.spec.hostname = f"{md.name}-{index}"
        for c in pod.spec.containers:
            if not any(e.name == workloads.COMPLETION_INDEX_ENV for e in c.env):
                e = c.env.add(name=workloads.COMPLETION_INDEX_ENV)
                e.value_from.field_ref.api_version = "v1"
                e.value_from.field_ref.field_path = f"metadata.annotations['{workloads.COMPLETION_INDEX}']"
    return pod


class JobController(Controller):
    name = "job"

    def __init__(self, client, factory, recorder=None, workers: int = 5, *, clock=time.time,
                 backoff_base: float = ju.DEFAULT_BACKOFF, backoff_cap: float = ju.MAX_BACKOFF):
        super().__init__(client, factory, recorder, workers)
        self.clock, self.backoff_base, self.backoff_cap = clock, backoff_base, backoff_cap
        self.expectations = Expectations()
        self.finalizer_expectations: dict[str, set[str]] = {}
        self.backoff: dict[str, ju.BackoffRecord] = {}
        self.job_inf = factory.informer("Job")
        self.pod_inf = factory.informer("Pod")
        for inf in (self.job_inf, self.pod_inf):
            ensure_indexes(inf)
        self.job_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self._job_deleted)
        self.pod_inf.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new, old),
                                 lambda p: self._pod_changed(p, deleted=True))

    def informers(self):
        return [self.job_inf, self.pod_inf]

    # --------------------------------------------------------- handlers
    def _job_deleted(self, job) -> None:
        key = key_of(job)
        self.expectations.delete(key)
        self.finalizer_expectations.pop(key, None)
        self.backoff.pop(key, None)
        for pod in self.pod_inf.by_index(BY_CONTROLLER, job.metadata.uid):
            if ju.has_tracking_finalizer(pod):
                self.queue.add(ORPHAN + key_of(pod))

    def _owner(self, pod):
        ref = podutil.controller_ref(pod)
        if ref is None or ref.kind != "Job":
            return None
        job = self.job_inf.get(pod.metadata.namespace, ref.name)
        return job if job is not None and job.metadata.uid == ref.uid else None

    def _pod_changed(self, pod, old=None, deleted: bool = False) -> None:
        job = self._owner(pod)
        if job is None:
            if ju.has_tracking_finalizer(pod) and not deleted:
                self.queue.add(ORPHAN + key_of(pod))
            if deleted or podutil.controller_ref(pod) is not None:
                return
            for j in self.job_inf.list(pod.metadata.namespace):      # an orphan that may be adopted
                if j.spec.HasField("selector") and selectors.from_proto(j.spec.selector).matches(pod.metadata.labels):
                    self.enqueue(j)
            return
        key = key_of(job)
        gone = deleted or podutil.is_terminating(pod)
        if old is None and not deleted:
            self.expectations.creation_observed(key)
        if gone and (old is None or deleted or not podutil.is_terminating(old)):
            self.expectations.deletion_observed(key, pod.metadata.uid)
        if deleted or not ju.has_tracking_finalizer(pod):
            self.finalizer_expectations.get(key, set()).discard(pod.metadata.uid)
        self.enqueue(job)

    # ------------------------------------------------------------- sync
    async def sync(self, key: str) -> None:
        if key.startswith(ORPHAN):
            await self._release_orphan(key[len(ORPHAN):])
            return
        job = self.job_inf.get_by_key(key)
        if job is None:
            self.expectations.delete(key)
            return
        try:
            selector = selectors.from_field(job.spec)
        except ValueError as exc:
            self.log.error("%s: invalid selector: %s", key, exc)
            return
        pods = [p for p in self.pod_inf.list(job.metadata.namespace)]
        pods = await podutil.RefManager(self.client, job, selector).claim(pods)
        if ju.is_finished(job):
            await self._remove_finalizers(key, [p for p in pods if ju.has_tracking_finalizer(p)])
            return
        await _JobSync(self, key, job, pods).run()

    async def _release_orphan(self, pod_key: str) -> None:
        pod = self.pod_inf.get_by_key(pod_key)
        if pod is None or not ju.has_tracking_finalizer(pod) or self._owner(pod) is not None:
            return
        await self._remove_finalizers("", [pod])

    async def _remove_finalizers(self, key: str, pods) -> None:
        if not pods:
            return
        expected = self.finalizer_expectations.setdefault(key, set()) if key else set()

        async def one(p):
            expected.add(p.metadata.uid)
            try:
                await podutil.remove_finalizer(self.client, p, workloads.JOB_TRACKING_FINALIZER)
            except Exception:
                expected.discard(p.metadata.uid)
                raise
        results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        errs = [r for r in results if isinstance(r, BaseException)]
        if errs:
            raise errs[0]

    async def create_pods(self, key: str, job, indexes: list[int | None]) -> None:
        await podcontrol.create_pods(self, key, job, [pod_for(job, i) for i in indexes])

    async def delete_pods(self, key: str, job, victims) -> None:
        if not victims:
            return
        errs = await podutil.delete_pods(self.client, self.expectations, key, victims)
        for p in victims:
            self.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {p.metadata.name}")
        if errs:
            raise errs[0]


class _JobSync:
    """One sync of one Job (the state syncJob keeps in its jobCtx)."""

    def __init__(self, ctrl: JobController, key: str, job, pods):
        self.c, self.key, self.job, self.pods = ctrl, key, job, pods
        self.now = ctrl.clock()
        self.st = codec.copy(job.status)
        self.indexed = job.spec.completion_mode == "Indexed"
        self.active = [p for p in pods if podutil.is_pod_active(p)]
        self.terminating = [p for p in pods if podutil.is_terminating(p)
                            and p.status.phase not in ("Succeeded", "Failed")]
        self.fail_message: str | None = None
        self.suspended = job.spec.HasField("suspend") and job.spec.suspend
        self.created = 0                 # counted as active at once, as manageJob does

    def ts(self):
        return podutil.now_ts(lambda: self.now)

    async def run(self) -> None:
        c, job, st = self.c, self.job, self.st
        suspended = self.suspended
        if not suspended and not st.HasField("start_time"):
            st.start_time.CopyFrom(self.ts())
        await self.account()
        target = ju.finish_target(job) or self.decide_finish()
        manage_error = None
        if target is not None:
            await self.finish(*target)
        elif suspended:
            if ju.set_condition(st, "Suspended", "True", "JobSuspended", "Job suspended", self.ts()):
                c.event(job, "Normal", "Suspended", "Job suspended")
            st.ClearField("start_time")
            await c.delete_pods(self.key, job, self.active)
            self.active = []
        else:
            if any(x.type == "Suspended" and x.status == "True" for x in st.conditions):
                ju.set_condition(st, "Suspended", "False", "JobResumed", "Job resumed", self.ts())
                st.start_time.CopyFrom(self.ts())
                c.event(job, "Normal", "Resumed", "Job resumed")
            if c.expectations.satisfied(self.key):
                try:
                    await self.manage()
                except Exception as exc:    # the status is written; the error retries the key
                    manage_error = exc
            self.requeue_for_deadline()
        await self.write_status()
        if manage_error is not None:
            raise manage_error

    # -------------------------------------------------------- accounting
    async def account(self) -> None:
        job, st = self.job, self.st
        expected = self.c.finalizer_expectations.get(self.key, set())
        unc = st.uncounted_terminated_pods
        uncounted = set(unc.succeeded) | set(unc.failed)
        done_idx = ju.parse_indexes(st.completed_indexes, job.spec.completions) if self.indexed else set()
        release, succeeded_at, failed_at = [], [], []
        for p in self.pods:
            uid = p.metadata.uid
            if not ju.has_tracking_finalizer(p) or uid in expected:
                continue
            if p.status.phase == "Succeeded":
                idx = ju.completion_index(p)
                if self.indexed:        # the index itself is the record: no UID to track
                    if idx is not None and idx < job.spec.completions and idx not in done_idx:
                        done_idx.add(idx)
                        succeeded_at.append(ju.finish_time(p, self.now))
                elif uid not in uncounted:
                    unc.succeeded.append(uid)
                    succeeded_at.append(ju.finish_time(p, self.now))
                release.append(p)
            elif ju.is_pod_failed(p, job):
                if uid not in uncounted and not (self.suspended and p.status.phase != "Failed"):
                    decision = (ju.match_pod_failure_policy(job, p) if job.spec.HasField("pod_failure_policy")
                                else ju.PolicyDecision())
                    if decision.fail_job_message and self.fail_message is None:
                        self.fail_message = decision.fail_job_message
                    if decision.count_failed:
                        unc.failed.append(uid)
                        failed_at.append(ju.finish_time(p, self.now))
                release.append(p)
        if self.indexed:
            st.completed_indexes = ju.format_indexes(done_idx)
            st.succeeded = len(done_idx)
        self.c.backoff.setdefault(self.key, ju.BackoffRecord()).observe(succeeded_at, failed_at)
        if release:
            if st != job.status:
                await self.write_status()           # record before the finalizers go
            await self.c._remove_finalizers(self.key, release)
        self.flush({p.metadata.uid for p in release})

    def flush(self, released: set) -> None:
        """Move pods out of uncountedTerminatedPods into the counters once their finalizer is
        gone: released now, released earlier (expected), or no longer holding one / absent."""
        st, unc = self.st, self.st.uncounted_terminated_pods
        expected = self.c.finalizer_expectations.get(self.key, set())
        holding = {p.metadata.uid for p in self.pods if ju.has_tracking_finalizer(p)}

        def gone(uid):
            return uid in released or uid in expected or uid not in holding
        keep_s = [u for u in unc.succeeded if not gone(u)]
        keep_f = [u for u in unc.failed if not gone(u)]
        st.succeeded += len(unc.succeeded) - len(keep_s)
        st.failed += len(unc.failed) - len(keep_f)
        del unc.succeeded[:], unc.failed[:]
        unc.succeeded.extend(keep_s)
        unc.failed.extend(keep_f)

    def succeeded(self) -> int:
        """Counted plus still uncounted successes (jobCtx.succeeded)."""
        return self.st.succeeded + len(self.st.uncounted_terminated_pods.succeeded)

    def failed(self) -> int:
        return self.st.failed + len(self.st.uncounted_terminated_pods.failed)

    # ---------------------------------------------------------- finishing
    def decide_finish(self):
        job, st = self.job, self.st
        if self.fail_message is not None:
            return "Failed", ju.POD_FAILURE_POLICY, self.fail_message
        if self.failed() > job.spec.backoff_limit or ju.past_backoff_on_failure(job, self.active):
            return ("Failed", *ju.BACKOFF_LIMIT_EXCEEDED)
        if job.spec.HasField("active_deadline_seconds") and st.HasField("start_time") and \
                self.now - st.start_time.seconds >= job.spec.active_deadline_seconds:
            return ("Failed", *ju.DEADLINE_EXCEEDED)
        if job.spec.HasField("completions"):
            done = self.succeeded() >= job.spec.completions
        else:
            done = self.succeeded() > 0 and not self.active
        return ("Complete", *ju.COMPLETIONS_REACHED) if done else None

    async def finish(self, final: str, reason: str, message: str) -> None:
        c, job, st = self.c, self.job, self.st
        interim = "FailureTarget" if final == "Failed" else "SuccessCriteriaMet"
        if ju.set_condition(st, interim, "True", reason, message, self.ts()) and final == "Failed":
            c.event(job, "Warning", reason, message)
        await c.delete_pods(self.key, job, self.active)
        self.active = []
        if self.terminating or any(ju.has_tracking_finalizer(p) and p.metadata.uid
                                   not in c.finalizer_expectations.get(self.key, set())
                                   and podutil.is_pod_active(p) for p in self.pods):
            return                                  # terminal condition once every pod is gone
        ju.set_condition(st, final, "True", reason, message, self.ts())
        if final == "Complete":
            st.completion_time.CopyFrom(self.ts())
            c.event(job, "Normal", "Completed", "Job completed")

    def requeue_for_deadline(self) -> None:
        ads = self.job.spec.active_deadline_seconds if self.job.spec.HasField("active_deadline_seconds") else None
        if ads is not None and self.st.HasField("start_time"):
            left = self.st.start_time.seconds + ads - self.now
            self.c.queue.add_after(self.key, max(0.05, left + 0.05))

    # ------------------------------------------------------------- manage
    async def manage(self) -> None:
        c, job = self.c, self.job
        slots = self.active + (self.terminating if ju.only_replace_failed(job) else [])
        if self.indexed:
            create, victims = self._indexed_plan()
        else:
            diff = len(slots) - ju.want_active(job, self.succeeded())
            now = c.clock()
            ranked = sorted(self.active, key=lambda p: podutil.deletion_rank(p, now))
            create, victims = [None] * max(0, -diff), ranked[:max(0, diff)]
        if victims:                 # a sync either deletes or creates, as manageJob does
            await c.delete_pods(self.key, job, victims)
            self.active = [p for p in self.active if p not in victims]
            return
        if not create:
            return
        wait = c.backoff.get(self.key, ju.BackoffRecord()).remaining(self.now, c.backoff_base, c.backoff_cap)
        if wait > 0:
            c.queue.add_after(self.key, wait + 0.05)
            return
        await c.create_pods(self.key, job, create)
        self.created = len(create)

    def _indexed_plan(self):
        job = self.job
        n = job.spec.completions
        done = ju.parse_indexes(self.st.completed_indexes, n)
        seen: set[int] = set()
        victims = []
        for p in sorted(self.active, key=lambda p: p.metadata.creation_timestamp.seconds):
            idx = ju.completion_index(p)
            if idx is None or idx >= n or idx in done or idx in seen:
                victims.append(p)
            else:
                seen.add(idx)
        if ju.only_replace_failed(job):
            seen.update(i for p in self.terminating if (i := ju.completion_index(p)) is not None)
        running = len(seen)
        missing = [i for i in range(n) if i not in done and i not in seen]
        return missing[:max(0, job.spec.parallelism - running)], victims

    # ------------------------------------------------------------- status
    async def write_status(self) -> None:
        st, job = self.st, self.job
        st.active = len(self.active) + self.created
        st.ready = sum(1 for p in self.active if podutil.is_pod_ready(p))
        st.terminating = len(self.terminating)
        if st == job.status:
            return
        new = codec.copy(job)
        new.status.CopyFrom(st)
        try:
            written = await self.c.client.update_status(new)
        except errors.NotFound:
            return
        self.job = written
