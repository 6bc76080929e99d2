"""Init containers and native sidecars as kubectl reads a pod (printPod, the Init: statuses).

Shared by the printers (machinery/tables.py) and anything else that must know
whether an init container is a sidecar (``restartPolicy: Always``, Kubernetes
1.29+).  Pure functions over the pod object.
"""
from __future__ import annotations


def ts_seconds(ts) -> float | None:
    """A protobuf Timestamp as seconds, None when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.seconds + ts.nanos / 1e9


def is_sidecar(c) -> bool:
    """An init container with restartPolicy Always: a native sidecar."""
    return c is not None and c.HasField("restart_policy") and c.restart_policy == "Always"


def last_finish(cs, last: float | None) -> float | None:
    if cs.last_state.HasField("terminated"):
        fin = ts_seconds(cs.last_state.terminated.finished_at)
        if fin is not None and (last is None or fin > last):
            return fin
    return last


def init_status(pod, reason: str) -> tuple[str, bool, int, int, float | None, int, float | None]:
    """printPod's loop over the init container statuses: (reason, initializing, ready sidecars,
    restarts, last restart, sidecar restarts, last sidecar restart)."""
    specs = {c.name: c for c in pod.spec.init_containers}
    ready = restarts = side_restarts = 0
    last = side_last = None
    initializing = False
    for i, cs in enumerate(pod.status.init_container_statuses):
        restarts += cs.restart_count
        last = last_finish(cs, last)
        sidecar = is_sidecar(specs.get(cs.name))
        if sidecar:
            side_restarts += cs.restart_count
            side_last = last_finish(cs, side_last)
        state = cs.state
        if state.HasField("terminated") and state.terminated.exit_code == 0:
            continue
        if sidecar and cs.started:
            ready += 1 if cs.ready else 0
            continue
        initializing = True
        if state.HasField("terminated"):
            t = state.terminated
            reason = "Init:" + t.reason if t.reason else (
                f"Init:Signal:{t.signal}" if t.signal else f"Init:ExitCode:{t.exit_code}")
        elif state.HasField("waiting") and state.waiting.reason and state.waiting.reason != "PodInitializing":
            reason = "Init:" + state.waiting.reason
        else:
            reason = f"Init:{i}/{len(pod.spec.init_containers)}"
        break
    return reason, initializing, ready, restarts, last, side_restarts, side_last
