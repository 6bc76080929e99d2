"""Pod status as the node agent reports it: pure functions over a pod's container records.

A pod's sync (nodeagent/syncpod.py, run by its pod worker) keeps one
``ContainerRecord`` per container of the pod spec: the current runtime
instance (its id and last observed ``ContainerState``), the previous instance
(for ``lastState`` and ``kctl logs --previous``), the reason it is waiting
(``ContainerCreating``, ``ErrImagePull``, ``CrashLoopBackOff`` ...), its
restart count and its probe results.  ``build_status`` turns those into a
``PodStatus`` exactly the way the kubelet words it; ``status_changed``
compares two statuses so the status writer (nodeagent/statusmanager.py)
writes only when something really changed, and ``same_status`` compares the
computed status with the one the API holds *ignoring what legitimately
differs* (condition probe/transition times, the apiserver's qosClass), so a
status someone else rewrote (the node lifecycle controller's Ready=False for
pods of a silent node) is put right again.

Everything here is synchronous and touches only the objects it is given: no
locking is needed (the worker calls it from its own task).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from machinery.pb import core_pb2
from nodeagent.containers import ContainerState

RUNNING, EXITED = "running", "exited"


@dataclass
class ContainerRecord:
    """What one worker knows about one container of its pod."""
    name: str
    cid: str | None = None                  # current runtime instance
    state: ContainerState | None = None     # last observed state of cid
    prev_cid: str | None = None             # previous instance (lastState, logs --previous)
    prev_state: ContainerState | None = None
    restart_count: int = 0
    waiting_reason: str = ""                # set while no instance should be shown running
    waiting_message: str = ""
    image: str = ""
    image_id: str = ""
    backoff: float = 0.0                    # current CrashLoopBackOff delay
    backoff_until: float = 0.0              # wall clock time the next start may happen
    pull_backoff: float = 0.0
    pull_backoff_until: float = 0.0
    pull_failures: int = 0
    ready: bool = False                     # readiness probe result (True if none)
    started: bool = False                   # startup probe passed (True if none)
    kill_requested: str | None = None       # cid a liveness/startup failure wants killed
    kill_reason: str = ""
    adopted: bool = False                   # re-adopted after an agent restart (probe state unknown)
    exit_handled: str | None = None         # cid whose exit was already accounted for
    all_cids: set[str] = field(default_factory=set)


def ts(t: float | None) -> Timestamp:
    out = Timestamp()
    if t:
        out.FromNanoseconds(int(t * 1e9))
    return out


def terminated_reason(st: ContainerState) -> str:
    if st.oom_killed:
        return "OOMKilled"
    return "Completed" if st.exit_code == 0 else "Error"


def _terminated(cid: str, st: ContainerState) -> core_pb2.ContainerState:
    code = st.exit_code if st.exit_code is not None else 255
    return core_pb2.ContainerState(terminated=core_pb2.ContainerStateTerminated(
        exit_code=code, signal=code - 128 if code > 128 else 0, reason=terminated_reason(st),
        started_at=ts(st.started_at), finished_at=ts(st.finished_at), container_id=f"runc://{cid}"))


def container_status(rec: ContainerRecord) -> core_pb2.ContainerStatus:
    cs = core_pb2.ContainerStatus(name=rec.name, image=rec.image, image_id=rec.image_id,
                                  restart_count=rec.restart_count)
    running = rec.cid is not None and rec.state is not None and rec.state.status == RUNNING
    if rec.cid:
        cs.container_id = f"runc://{rec.cid}"
    if rec.waiting_reason and not running:
        cs.state.waiting.reason = rec.waiting_reason
        if rec.waiting_message:
            cs.state.waiting.message = rec.waiting_message
        if rec.cid and rec.state is not None and rec.state.status == EXITED:
            cs.last_state.CopyFrom(_terminated(rec.cid, rec.state))
        elif rec.prev_cid and rec.prev_state is not None:
            cs.last_state.CopyFrom(_terminated(rec.prev_cid, rec.prev_state))
    elif running:
        cs.state.running.started_at.CopyFrom(ts(rec.state.started_at))
        if rec.prev_cid and rec.prev_state is not None:
            cs.last_state.CopyFrom(_terminated(rec.prev_cid, rec.prev_state))
    elif rec.cid and rec.state is not None and rec.state.status == EXITED:
        cs.state.CopyFrom(_terminated(rec.cid, rec.state))
        if rec.prev_cid and rec.prev_state is not None:
            cs.last_state.CopyFrom(_terminated(rec.prev_cid, rec.prev_state))
    else:
        cs.state.waiting.reason = rec.waiting_reason or "ContainerCreating"
    cs.ready = running and rec.ready and rec.started
    cs.started = running and rec.started
    return cs


def pod_phase(restart_policy: str, records: list[ContainerRecord]) -> str:
    """Kubernetes' getPhase over the app containers (build_status handles the init phase)."""
    running = waiting = succeeded = failed = 0
    for rec in records:
        st = rec.state
        if rec.cid and st is not None and st.status == RUNNING:
            running += 1
        elif rec.cid and st is not None and st.status == EXITED:
            if st.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        elif rec.prev_cid is not None:   # restarting after an earlier run
            failed += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"                 # exited containers will be restarted
    if restart_policy == "OnFailure":
        return "Succeeded" if failed == 0 else "Running"
    return "Failed" if failed else "Succeeded"


def _condition(old: core_pb2.PodStatus | None, ctype: str, ok: bool, reason: str = "",
               message: str = "", now: float | None = None) -> core_pb2.PodCondition:
    status = "True" if ok else "False"
    c = core_pb2.PodCondition(type=ctype, status=status, reason="" if ok else reason,
                              message="" if ok else message)
    prev = next((p for p in (old.conditions if old is not None else []) if p.type == ctype), None)
    if prev is not None and prev.status == status:
        c.last_transition_time.CopyFrom(prev.last_transition_time)
    else:
        c.last_transition_time.CopyFrom(ts(now or time.time()))
    return c


def init_container_status(rec: ContainerRecord, sidecar: bool) -> core_pb2.ContainerStatus:
    """An init container's status: one that completed is ready (the kubelet's rule); one not
    reached yet waits with PodInitializing; a sidecar is ready as an app container is."""
    cs = container_status(rec)
    if not rec.cid and not rec.waiting_reason:
        cs.state.waiting.reason = "PodInitializing"
    if not sidecar:
        cs.ready = cs.state.HasField("terminated") and cs.state.terminated.exit_code == 0
    return cs


def build_status(pod: core_pb2.Pod, records: list[ContainerRecord], *, host_ip: str, pod_ip: str,
                 start_time: float | None, old: core_pb2.PodStatus | None = None,
                 message: str = "", reason: str = "", failed: bool = False,
                 init_records: list[tuple[ContainerRecord, bool]] = (),
                 initialized: bool = True) -> core_pb2.PodStatus:
    """failed=True forces phase Failed (activeDeadlineSeconds exceeded, an init container failed
    under restartPolicy Never), with reason/message.  init_records: (record, is sidecar) per init
    container in spec order; initialized: every init container completed or (a sidecar) started,
    or an app container already ran — until then the pod is Pending."""
    phase = "Failed" if failed else ("Pending" if not initialized
                                     else pod_phase(pod.spec.restart_policy or "Always", records))
    if old is not None and old.phase in ("Succeeded", "Failed"):
        phase = old.phase                 # terminal phases never go back
        reason, message = reason or old.reason, message or old.message
    st = core_pb2.PodStatus(phase=phase, host_ip=host_ip, qos_class=old.qos_class if old else "")
    if message:
        st.message = message
    if reason:
        st.reason = reason
    if pod_ip:
        st.pod_ip = pod_ip
        st.pod_ips.add(ip=pod_ip)
    if start_time:
        st.start_time.CopyFrom(old.start_time if old is not None and old.HasField("start_time")
                               else ts(start_time))
    statuses = [container_status(r) for r in records]
    st.container_statuses.extend(statuses)
    inits = [(init_container_status(r, side), side) for r, side in init_records]
    st.init_container_statuses.extend(cs for cs, _ in inits)
    not_ready = [s.name for s, side in inits if side and not s.ready] + [s.name for s in statuses if not s.ready]
    all_ready = not not_ready and phase not in ("Succeeded", "Failed")
    msg = f"containers with unready status: [{' '.join(not_ready)}]"
    reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    incomplete = [s.name for s, side in inits if not (s.ready if not side else s.started)]
    init_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotInitialized"
    st.conditions.extend([
        _condition(old, "PodScheduled", True),
        _condition(old, "Initialized", initialized, init_reason,
                   f"containers with incomplete status: [{' '.join(incomplete)}]"),
        _condition(old, "ContainersReady", all_ready, reason, msg),
        _condition(old, "Ready", all_ready, reason, msg),
    ])
    return st


def _comparable(st: core_pb2.PodStatus) -> bytes:
    c = core_pb2.PodStatus()
    c.CopyFrom(st)
    c.qos_class = ""                      # the apiserver fills it in
    for cond in c.conditions:
        cond.ClearField("last_probe_time")
        cond.ClearField("last_transition_time")
    return c.SerializeToString(deterministic=True)


def same_status(a: core_pb2.PodStatus | None, b: core_pb2.PodStatus | None) -> bool:
    """Equal but for condition times and qosClass (see the module docstring)."""
    if a is None or b is None:
        return a is b
    return _comparable(a) == _comparable(b)


def status_changed(old: core_pb2.PodStatus | None, new: core_pb2.PodStatus) -> bool:
    return old is None or old.SerializeToString(deterministic=True) != new.SerializeToString(deterministic=True)
