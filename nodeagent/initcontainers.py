"""Which init containers a pod's sync step runs, and when the app containers may start.

The kubelet's computeInitContainerActions (pkg/kubelet/kuberuntime/
kuberuntime_container.go), as pure decisions over the container records of
nodeagent/syncpod.py:

* init containers are walked in spec order.  A regular one that exited 0 is
  done; one that has not run, runs, or failed and will be restarted is the
  one to sync now, and nothing after it starts.  One that failed under the
  pod's restartPolicy Never fails the pod (the step stops everything).
* an init container with ``restartPolicy: Always`` is a native sidecar
  (Kubernetes 1.29+): it is started in its turn and kept running (restarted
  whenever it exits, with CrashLoopBackOff); the next init container waits
  until it is running and its startupProbe (if any) passed.
* when every init container is done (or an app container already ran: init
  containers never run again, e.g. after an agent restart), the app
  containers are synced; the sidecars keep being synced beside them.
* once the app containers finished for good (restartPolicy Never/OnFailure),
  the sidecars are no longer restarted and the step stops them.

Restart policies per container (``restart_policy``): a sidecar Always; a
regular init container OnFailure unless the pod's is Never; an app
container the pod's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from machinery.initstatus import is_sidecar
from machinery.pb import core_pb2
from nodeagent.status import EXITED, RUNNING, ContainerRecord


def restart_policy(pod: core_pb2.Pod, c: core_pb2.Container, init: bool) -> str:
    policy = pod.spec.restart_policy or "Always"
    if not init:
        return policy
    if is_sidecar(c):
        return "Always"
    return "Never" if policy == "Never" else "OnFailure"


def _running(rec: ContainerRecord | None) -> bool:
    return rec is not None and rec.cid is not None and rec.state is not None and rec.state.status == RUNNING


def _exited(rec: ContainerRecord | None) -> bool:
    return rec is not None and rec.cid is not None and rec.state is not None and rec.state.status == EXITED


@dataclass
class InitPlan:
    sync: list = field(default_factory=list)    # init containers to start/keep/restart now, in order
    done: bool = False                          # the pod is initialized: app containers may run
    failed: str = ""                            # a regular init container that failed for good
    stop: list = field(default_factory=list)    # sidecars to stop (the app containers finished)


def app_started(pod: core_pb2.Pod, records: dict[str, ContainerRecord]) -> bool:
    """An app container has (or had) an instance: the pod was initialized before."""
    return any((r := records.get(c.name)) is not None and (r.cid or r.prev_cid) for c in pod.spec.containers)


def plan(pod: core_pb2.Pod, records: dict[str, ContainerRecord], apps_finished: bool = False) -> InitPlan:
    """What to do with the init containers in this step (see the module docstring).
    apps_finished: every app container exited and will not be restarted."""
    out = InitPlan()
    initialized = app_started(pod, records)
    never = (pod.spec.restart_policy or "Always") == "Never"
    for c in pod.spec.init_containers:
        rec = records.get(c.name)
        if is_sidecar(c):
            if apps_finished:
                if _running(rec):
                    out.stop.append(c)
                continue
            out.sync.append(c)
            if initialized or (_running(rec) and rec.started):
                continue
            return out
        if initialized:
            continue
        if _exited(rec) and rec.state.exit_code == 0:
            continue
        if _exited(rec) and never:
            out.failed = c.name
            return out
        out.sync.append(c)
        return out
    out.done = True
    out.stop.reverse()                          # sidecars stop in reverse order
    return out
