"""kubectl's printPod for pods with init containers and sidecars (the Init: statuses):
cases after TestPrintPod / TestPrintPodWithRestartableInitContainer in
pkg/printers/internalversion/printers_test.go."""
from __future__ import annotations

import pytest

from kubectlish import printers
from tests.unit.test_kctl_printers import NOW, cs, pod, ts

SPEC = {"initContainers": [{"name": "i1", "image": "busybox"}, {"name": "i2", "image": "busybox"}],
        "containers": [{"name": "a", "image": "busybox"}]}
SIDECAR_SPEC = {"initContainers": [{"name": "side", "image": "busybox", "restartPolicy": "Always"},
                                   {"name": "i1", "image": "busybox"}],
                "containers": [{"name": "a", "image": "busybox"}]}
DONE = {"terminated": {"reason": "Completed", "exitCode": 0}}
WAIT_INIT = {"waiting": {"reason": "PodInitializing"}}


def init_pod(inits, apps=None, spec=SPEC, conditions=()):
    return pod({"spec": spec, "status": {"phase": "Pending", "initContainerStatuses": inits,
                                         "containerStatuses": apps or [cs(state=WAIT_INIT)],
                                         "conditions": list(conditions)}})


@pytest.mark.parametrize("inits, want", [
    ([cs("i1", state={"running": {}}), cs("i2", state=WAIT_INIT)], "Init:0/2"),
    ([cs("i1", state=DONE), cs("i2", state={"running": {}})], "Init:1/2"),
    ([cs("i1", state={"terminated": {"reason": "Error", "exitCode": 1}}), cs("i2", state=WAIT_INIT)], "Init:Error"),
    ([cs("i1", state={"terminated": {"exitCode": 2}}), cs("i2", state=WAIT_INIT)], "Init:ExitCode:2"),
    ([cs("i1", state={"terminated": {"exitCode": 137, "signal": 9}}), cs("i2", state=WAIT_INIT)], "Init:Signal:9"),
    ([cs("i1", state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=3), cs("i2", state=WAIT_INIT)],
     "Init:CrashLoopBackOff"),
    ([cs("i1", state=DONE), cs("i2", state={"waiting": {"reason": "ImagePullBackOff"}})], "Init:ImagePullBackOff"),
])
def test_init_statuses(inits, want):
    assert printers.pod_status(init_pod(inits), NOW)[1] == want


def test_init_restarts_count_while_initializing():
    inits = [cs("i1", state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=3,
                lastState={"terminated": {"exitCode": 1, "finishedAt": ts(30).ToJsonString()}}), cs("i2", state=WAIT_INIT)]
    assert printers.pod_status(init_pod(inits), NOW) == ("0/1", "Init:CrashLoopBackOff", "3 (30s ago)")


def test_pod_initializing_after_the_init_containers():
    p = init_pod([cs("i1", state=DONE), cs("i2", state=DONE)], [cs(state=WAIT_INIT)],
                 conditions=[{"type": "Initialized", "status": "True"}])
    assert printers.pod_status(p, NOW) == ("0/1", "PodInitializing", "0")


def test_sidecar_counts_in_ready_and_its_restarts_only_after_init():
    side = cs("side", state={"running": {}}, started=True, ready=True, restartCount=2)
    p = init_pod([side, cs("i1", state=DONE)], [cs(ready=True, state={"running": {}})], spec=SIDECAR_SPEC,
                 conditions=[{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}])
    p.status.phase = "Running"
    assert printers.pod_status(p, NOW) == ("2/2", "Running", "2")


def test_sidecar_not_started_blocks_like_an_init_container():
    side = cs("side", state={"running": {}}, started=False)
    p = init_pod([side, cs("i1", state=WAIT_INIT)], spec=SIDECAR_SPEC)
    assert printers.pod_status(p, NOW) == ("0/2", "Init:0/2", "0")
