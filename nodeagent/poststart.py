"""postStart lifecycle hooks, as the kubelet runs them (kuberuntime_container.go startContainer).

Right after a container instance started, its ``lifecycle.postStart`` handler
(exec in the container, httpGet or tcpSocket against the pod IP, sleep;
nodeagent/probes.py ``run_handler``) runs before the step goes on, so the
container is not reported ready and the next init container does not start
before it finished.  A failing hook is a Warning event ``FailedPostStartHook``
worded like the kubelet's, and the instance is killed (``Killing`` event
with the same reason); its exit is then handled like any other exit
(restart by policy with CrashLoopBackOff).  The kubelet does not bound an
exec hook; we bound every hook by the pod's termination grace period so a
hanging hook cannot stall the pod worker forever.
"""
from __future__ import annotations

from typing import Callable

from machinery.pb import core_pb2
from nodeagent.probes import run_handler


def hook_failure(pod: core_pb2.Pod, c: core_pb2.Container, message: str) -> str:
    """The kubelet's wording of a failed postStart hook."""
    h = c.lifecycle.post_start
    what = (f"Exec lifecycle hook ({list(h.exec.command)})" if h.HasField("exec")
            else f"HTTP lifecycle hook ({h.http_get.path})" if h.HasField("http_get") else "Lifecycle hook")
    md = pod.metadata
    return f'{what} for Container "{c.name}" in Pod "{md.name}_{md.namespace}({md.uid})" failed - error: {message}'


async def run_post_start(pod: core_pb2.Pod, c: core_pb2.Container, runtime, cid: str, pod_ip: str,
                         grace: float, event: Callable[[str, str, str], None]) -> bool:
    """Run c's postStart hook in instance cid; on failure record the events and kill the
    instance.  True if there is no hook or it succeeded."""
    if not c.lifecycle.HasField("post_start"):
        return True
    ok, message = await run_handler(c.lifecycle.post_start, c, runtime, cid, pod_ip, max(1.0, grace))
    if ok:
        return True
    event("Warning", "FailedPostStartHook", hook_failure(pod, c, message))
    event("Normal", "Killing", "FailedPostStartHook")
    await runtime.stop(cid, grace)
    return False
