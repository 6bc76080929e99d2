"""The rules a pod's sync step (nodeagent/syncpod.py) decides by, as pure functions.

Container instance ids (stable per pod uid, container name and restart
count, so a half-done start is found again), restart by policy,
CrashLoopBackOff delays (base doubling to 5 min, reset after 10 min
running), grace periods, the activeDeadlineSeconds clock, and rebuilding
container records from the runtime's labels after an agent restart.
"""
from __future__ import annotations

import hashlib
import logging
import time

from machinery.pb import core_pb2
from nodeagent import podspec, status as pstatus
from nodeagent.imagepull import MAX_BACKOFF
from nodeagent.status import ContainerRecord

log = logging.getLogger("kctl.nodeagent.podworker")

BACKOFF_RESET = 600.0


def container_id(pod_uid: str, name: str, restart: int) -> str:
    return hashlib.sha256(f"{pod_uid}/{name}/{restart}".encode()).hexdigest()[:32]


def should_restart(pod: core_pb2.Pod, rec: ContainerRecord, policy: str = "") -> bool:
    """restartPolicy Always restarts every exit, OnFailure only a non-zero one, Never none
    (policy: the container's own, nodeagent/initcontainers.py; else the pod's)."""
    policy = policy or pod.spec.restart_policy or "Always"
    if policy == "Always":
        return True
    return policy == "OnFailure" and rec.state is not None and rec.state.exit_code != 0


def crashloop_backoff(previous: float, ran: float, base: float) -> float:
    """The next CrashLoopBackOff delay: base at first and after 10 min running, else doubled (5 min max)."""
    return base if (previous == 0 or ran >= BACKOFF_RESET) else min(previous * 2, MAX_BACKOFF)


def termination_grace(pod: core_pb2.Pod) -> float:
    spec = pod.spec
    return float(spec.termination_grace_period_seconds if spec.HasField("termination_grace_period_seconds")
                 else 30)


def probe_grace(pod: core_pb2.Pod, c: core_pb2.Container) -> float:
    """A liveness/startup probe's own terminationGracePeriodSeconds, else the pod's."""
    for p in (c.liveness_probe, c.startup_probe):
        if p.HasField("termination_grace_period_seconds"):
            return float(p.termination_grace_period_seconds)
    return termination_grace(pod)


def deadline_left(pod: core_pb2.Pod, first_seen: float, api_status: core_pb2.PodStatus | None) -> float | None:
    """Seconds until activeDeadlineSeconds is over (counted from the API's startTime, else from
    first sight); None without a deadline."""
    spec = pod.spec
    if not spec.HasField("active_deadline_seconds"):
        return None
    start = first_seen
    if api_status is not None and api_status.HasField("start_time"):
        start = api_status.start_time.ToNanoseconds() / 1e9
    return start + spec.active_deadline_seconds - time.time()


def adopt_records(records: dict[str, ContainerRecord], adopted: list, key: str = "") -> None:
    """Fill records from runtime containers of one pod (ContainerInfo, labels naming container
    and restart count): the newest instance is current, the one before it previous."""
    by_name: dict[str, list] = {}
    for info in adopted:
        by_name.setdefault(info.labels.get(podspec.LABEL_CONTAINER, ""), []).append(info)
    for name, infos in by_name.items():
        infos.sort(key=lambda i: int(i.labels.get(podspec.LABEL_RESTART, "0")))
        rec = records.setdefault(name, ContainerRecord(name))
        rec.all_cids.update(i.id for i in infos)
        cur = infos[-1]
        rec.cid, rec.state = cur.id, cur.state
        rec.restart_count = int(cur.labels.get(podspec.LABEL_RESTART, "0"))
        rec.exit_handled = cur.id if cur.state.status == pstatus.EXITED else None
        rec.adopted = True
        if len(infos) > 1:
            rec.prev_cid, rec.prev_state = infos[-2].id, infos[-2].state
        log.info("pod %s: adopted container %s (%s, restarts %d)", key, name, cur.state.status,
                 rec.restart_count)
