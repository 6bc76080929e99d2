"""Pure parts of the node agent: container config from pod spec + image, and pod status."""
from __future__ import annotations

import pytest

from machinery import codec
from nodeagent import podspec, volumes
from nodeagent.envvars import Sources
from nodeagent.images import Image, ImageConfig
from nodeagent.network import Sandbox
from nodeagent.containers import ContainerState
from nodeagent.errors import ContainerConfigError
from nodeagent.status import ContainerRecord, build_status, pod_phase, status_changed

IMAGE = Image("docker.io/library/x:1", "sha256:" + "a" * 64, None, ("/l0",),
              ImageConfig(entrypoint=("/entry",), cmd=("default",), env=("PATH=/bin", "A=image")))
SANDBOX = Sandbox("uid-1", "ns", "/var/run/netns/ns", "10.1.0.5", 24, "10.1.0.1", "veth")


def pod(containers, **spec):
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "web", "namespace": "prod", "uid": "uid-1",
                                         "labels": {"app": "w"}},
                            "spec": {"nodeName": "n1", "containers": containers, **spec}})


def test_args_follow_kubernetes_rules():
    assert podspec.build_args(pod([{"name": "c", "image": "x"}]).spec.containers[0], IMAGE, []) == [
        "/entry", "default"]
    c = pod([{"name": "c", "image": "x", "args": ["$(A)", "$$(A)"]}]).spec.containers[0]
    assert podspec.build_args(c, IMAGE, ["A=1"]) == ["/entry", "1", "$(A)"]
    c = pod([{"name": "c", "image": "x", "command": ["sh"], "args": ["-c", "x"]}]).spec.containers[0]
    assert podspec.build_args(c, IMAGE, []) == ["sh", "-c", "x"]


def test_env_fieldrefs_and_overrides():
    p = pod([{"name": "c", "image": "x", "env": [
        {"name": "A", "value": "pod"}, {"name": "B", "value": "$(A)-b"},
        {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}],
        "resources": {"limits": {"cpu": "250m"}}}])
    env = dict(kv.split("=", 1) for kv in podspec.build_env(p, p.spec.containers[0], IMAGE, "192.0.2.9", "10.1.0.5"))
    assert env == {"PATH": "/bin", "A": "pod", "B": "pod-b", "N": "web", "IP": "10.1.0.5", "L": "w", "CPU": "250"}


def test_a_missing_secret_is_a_config_error():
    p = pod([{"name": "c", "image": "x", "env": [
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]}])
    with pytest.raises(ContainerConfigError, match='secret "db" not found'):
        podspec.build_env(p, p.spec.containers[0], IMAGE, "", "")


def test_resources_and_config(tmp_path):
    p = pod([{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1500m", "memory": "128Mi"},
                                                        "requests": {"cpu": "500m"}},
              "volumeMounts": [{"name": "scratch", "mountPath": "/s"}]}], volumes=[{"name": "scratch", "emptyDir": {}}])
    volumes.setup_volumes(p, str(tmp_path), Sources(), "", "")
    cfg = podspec.container_config(p, p.spec.containers[0], IMAGE, SANDBOX, str(tmp_path), {"/etc/hosts": "/h"},
                                   "192.0.2.9", "cid", 2, ["/l0"])
    assert (cfg.cpu_quota, cfg.cpu_period, cfg.cpu_shares, cfg.memory_limit) == (150000, 100000, 512, 128 << 20)
    assert cfg.hostname == "web" and cfg.netns_path == SANDBOX.netns_path
    assert cfg.labels[podspec.LABEL_RESTART] == "2" and cfg.labels[podspec.LABEL_POD_UID] == "uid-1"
    assert [(m.source, m.destination) for m in cfg.mounts] == [("/h", "/etc/hosts"),
                                                               (str(tmp_path / "volumes" / "scratch"), "/s")]


def test_named_ports():
    c = pod([{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]).spec.containers[0]
    port = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "livenessProbe": {"httpGet": {"port": "http"}}}]}}).spec.containers[0].liveness_probe.http_get.port
    assert podspec.resolve_port(c, port) == 8080


def rec(name, status, code=None, restarts=0, prev=False, waiting=""):
    r = ContainerRecord(name, cid=f"{name}-{restarts}", state=ContainerState(status, exit_code=code,
                                                                                started_at=1.0, finished_at=2.0),
                        restart_count=restarts, waiting_reason=waiting, ready=True, started=True)
    if prev:
        r.prev_cid, r.prev_state = f"{name}-p", ContainerState("exited", exit_code=1, started_at=0.5, finished_at=0.9)
    return r


def test_phases():
    assert pod_phase("Always", [ContainerRecord("a")]) == "Pending"
    assert pod_phase("Always", [rec("a", "running"), rec("b", "exited", 0)]) == "Running"
    assert pod_phase("Never", [rec("a", "exited", 0), rec("b", "exited", 0)]) == "Succeeded"
    assert pod_phase("Never", [rec("a", "exited", 0), rec("b", "exited", 2)]) == "Failed"
    assert pod_phase("OnFailure", [rec("a", "exited", 2)]) == "Running"
    assert pod_phase("Always", [rec("a", "exited", 0)]) == "Running"


def test_status_crashloop_and_oom():
    p = pod([{"name": "a", "image": "x"}])
    r = rec("a", "exited", 137, restarts=3, waiting="CrashLoopBackOff")
    r.state.oom_killed = True
    st = build_status(p, [r], host_ip="192.0.2.9", pod_ip="10.1.0.5", start_time=1.0)
    cs = st.container_statuses[0]
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert cs.last_state.terminated.reason == "OOMKilled" and cs.last_state.terminated.exit_code == 137
    assert cs.restart_count == 3 and not cs.ready and cs.container_id == "runc://a-3"
    assert {c.type: c.status for c in st.conditions}["Ready"] == "False"
    again = build_status(p, [r], host_ip="192.0.2.9", pod_ip="10.1.0.5", start_time=5.0, old=st)
    assert not status_changed(st, again)                 # transition times and startTime kept


def test_status_running_ready():
    p = pod([{"name": "a", "image": "x"}])
    st = build_status(p, [rec("a", "running", prev=True, restarts=1)], host_ip="h", pod_ip="10.1.0.5", start_time=1.0)
    cs = st.container_statuses[0]
    assert st.phase == "Running" and cs.ready and cs.started and cs.state.running.HasField("started_at")
    assert cs.last_state.terminated.exit_code == 1
    assert [c.status for c in st.conditions] == ["True"] * 4 and st.pod_ips[0].ip == "10.1.0.5"
