"""`kctl logs` and `kctl exec` end to end: kctl -> apiserver (NodeProxy) -> node agent -> runc.

A real etcd and apiserver, a real node agent in its own network namespace
running busybox containers under runc, and the real kctl CLI as a
subprocess: a module-scoped harness.nodes.NodeCluster (its own segment and
run id, so it lives next to the node agent tests' one in a pytest session).
Everything is removed at the end: agent and containers by PID, mounts,
cgroups, netns, links.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.nodes import NodeCluster
from harness.pki import session
from harness.pods import cstatus, make_pod, node_ready, pod_running, pod_where
from harness.process import REPO, free_port
from machinery import codec
from machinery.client import Client
from tests.integration.nodeagent.conftest import needs_root

pytestmark = [pytest.mark.root, needs_root]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with NodeCluster(tmp_path_factory.mktemp("logs-exec"), images={"busybox:latest": "library/busybox:latest"}) as e:
        yield e


@pytest.fixture(scope="module")
def cluster(env):
    return env.apiserver


def call(target: str, fn):
    """Run `await fn(client)` with a fresh Client on a fresh loop (module fixtures are sync)."""
    async def main():
        async with Client(target, timeout=30) as c:
            return await fn(c)
    return asyncio.run(main())


def busybox(name: str, script: str) -> dict:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script]}


PODS = {
    # two containers; `a` prints a1..a10 then sleeps
    "multi": (busybox("a", "for i in 1 2 3 4 5 6 7 8 9 10; do echo a$i; done; echo a-err >&2; exec sleep 3600"),
              busybox("b", "echo from-b; exec sleep 3600")),
    # prints, exits 1, restarted (crash-loop base 1 s): --previous shows the exited instance
    "crasher": (busybox("c", "echo instance-$(date +%s%N); echo bye >&2; sleep 1; exit 1"),),
    # one line per 0.2 s, forever (follow + Ctrl-C)
    "ticker": (busybox("t", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"),),
}


@pytest.fixture(scope="module")
def node(env, cluster):
    n = env.add_node("le")

    async def setup(api):
        await node_ready(api, n)
        for name, containers in PODS.items():
            await api.create(make_pod(name, n, *containers))
        for name in PODS:
            await pod_running(api, name, n)
    call(cluster.target, setup)
    return n


# ------------------------------------------------------------------- kctl

def _kctl_argv() -> list[str]:
    """The real console script once main.py routes logs/exec to kubectlish.logs/.exec;
    until then the same click group (global options and all) with these commands."""
    from kubectlish import main
    spec = {**main.EXTENSIONS, **main.COMMANDS}
    if spec.get("logs") == "kubectlish.logs:logs_cmd" and spec.get("exec") == "kubectlish.exec:exec_cmd":
        return [os.path.join(os.path.dirname(sys.executable), "kctl")]
    return [sys.executable, "-c",
            "from kubectlish.main import KctlGroup, cli\n"
            "from kubectlish.logs import logs_cmd\nfrom kubectlish.exec import exec_cmd\n"
            "KctlGroup(name='kctl', params=cli.params, callback=cli.callback,"
            " commands={'logs': logs_cmd, 'exec': exec_cmd})(prog_name='kctl')"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["KUBECONFIG"] = str(session().admin)      # the harness's admin, whatever the user's is
    return env


def kctl(cluster, *args: str, input: bytes | None = None, timeout: float = 60) -> tuple[int, str, str]:
    p = subprocess.run([*_kctl_argv(), "--server", cluster.target, *args], capture_output=True, input=input,
                       timeout=timeout, cwd=REPO, env=_env())
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def kctl_popen(cluster, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*_kctl_argv(), "--server", cluster.target, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, env={**_env(), "PYTHONFAULTHANDLER": "1"},
                            start_new_session=True)


def interrupted(proc: subprocess.Popen, timeout: float = 10) -> int:
    """Ctrl-C (SIGINT) to kctl; its exit code. If it has not ended within `timeout`, SIGABRT makes
    Python's faulthandler (PYTHONFAULTHANDLER, kctl_popen) print every thread's stack, and the
    test fails with it."""
    os.kill(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGABRT)
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"kctl still running {timeout:g}s after SIGINT; its stacks:\n{err.decode(errors='replace')}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


# ------------------------------------------------------------------ tests

def test_logs_tail_and_containers(cluster, node):
    code, out, err = kctl(cluster, "logs", "multi", "-c", "a")
    assert (code, err) == (0, "")
    assert out.split() == [f"a{i}" for i in range(1, 11)] + ["a-err"]
    assert kctl(cluster, "logs", "multi", "-c", "a", "--tail", "3")[1].split() == ["a9", "a10", "a-err"]
    assert kctl(cluster, "logs", "pod/multi", "-c", "b") == (0, "from-b\n", "")
    code, out, err = kctl(cluster, "logs", "multi", "--tail=2")          # no -c: first container, with a note
    assert (code, out.split(), err) == (0, ["a10", "a-err"], 'Defaulted container "a" out of: a, b\n')
    code, out, _ = kctl(cluster, "logs", "multi", "-c", "a", "--tail", "1", "--timestamps")
    stamp, _, text = out.strip().partition(" ")
    assert code == 0 and text == "a-err" and stamp.startswith("20") and "T" in stamp


def test_logs_previous_after_a_restart(cluster, node):
    pod = call(cluster.target, lambda api: pod_where(api, "crasher", lambda p: bool(p.status.container_statuses)
                                                     and cstatus(p, "c").restart_count >= 1,
                                                     "restarted", node, timeout=60))
    assert cstatus(pod, "c").restart_count >= 1
    code, out, err = kctl(cluster, "logs", "crasher", "--previous")
    assert code == 0, err
    lines = out.split()
    assert len(lines) == 2 and lines[0].startswith("instance-") and lines[1] == "bye"
    code, out2, _ = kctl(cluster, "logs", "crasher", "-p", "--tail", "1")
    assert (code, out2) == (0, "bye\n")


def test_logs_follow_gets_new_lines_and_stops_on_ctrl_c(cluster, node):
    before = kctl(cluster, "logs", "ticker")[1].split()
    last = int(before[-1].removeprefix("tick"))
    proc = kctl_popen(cluster, "logs", "-f", "ticker", "--tail", "1")
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (seen and seen[-1] > last + 3):
            line = proc.stdout.readline().decode().strip()
            assert line, f"follow ended early: {proc.stderr.read().decode() if proc.poll() is not None else ''}"
            seen.append(int(line.removeprefix("tick")))
        assert seen[-1] > last + 3, seen                       # lines written after the call started
        assert seen == list(range(seen[0], seen[0] + len(seen)))   # in order, none lost
        assert seen[0] >= last                                 # --tail 1: no old history
        assert interrupted(proc) == 130
    finally:
        stop(proc)


def test_logs_follow_ends_when_the_container_exits(cluster, node):
    call(cluster.target, lambda api: api.create(make_pod(
        "finite", node, busybox("f", "echo early; sleep 3; echo late; exit 0"), restartPolicy="Never")))
    call(cluster.target, lambda api: pod_running(api, "finite", node))
    t0 = time.monotonic()
    code, out, err = kctl(cluster, "logs", "-f", "finite", timeout=60)
    assert (code, out, err) == (0, "early\nlate\n", "")
    assert time.monotonic() - t0 < 30


def test_exec_streams_and_exit_code(cluster, node):
    code, out, err = kctl(cluster, "exec", "multi", "-c", "a", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (code, out, err) == (3, "out\n", "err\ncommand terminated with exit code 3\n")
    assert kctl(cluster, "exec", "multi", "-c", "b", "--", "hostname") == (0, "multi\n", "")
    code, out, err = kctl(cluster, "exec", "multi", "--", "cat", "/proc/1/cmdline")  # defaults to a
    assert code == 0 and out == "sleep\x003600\x00" and err == 'Defaulted container "a" out of: a, b\n'


def test_exec_stdin(cluster, node):
    data = b"hello\n" + bytes(range(256)) * 400 + b"\nbye\n"    # > 64 KiB, binary
    p = subprocess.run([*_kctl_argv(), "--server", cluster.target, "exec", "-i", "multi", "-c", "b", "--", "cat"],
                       input=data, capture_output=True, timeout=60, cwd=REPO, env=_env())
    assert (p.returncode, p.stdout, p.stderr) == (0, data, b"")
    code, out, err = kctl(cluster, "exec", "-i", "multi", "-c", "b", "--", "wc", "-l", input=b"1\n2\n3\n")
    assert (code, out.strip(), err) == (0, "3", "")
    # without -i the command's stdin is empty
    assert kctl(cluster, "exec", "multi", "-c", "b", "--", "wc", "-c", input=b"ignored")[1].strip() == "0"


def _runc_execs(marker: str) -> list[int]:
    """PIDs of host `runc ... exec ...` processes whose command line holds marker."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                argv = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"runc") and b"exec" in argv and marker.encode() in b" ".join(argv):
                found.append(int(d))
    return found


def test_exec_cancel_reaches_the_agent(cluster, node):
    """Ctrl-C on kctl cancels the call through the apiserver: the agent ends its `runc exec`.

    (What becomes of the process inside the container is the agent's business:
    killing `runc exec` leaves it running today — see the report.)"""
    proc = kctl_popen(cluster, "exec", "multi", "-c", "b", "--", "sh", "-c", "echo started; exec sleep 777")
    try:
        assert proc.stdout.readline() == b"started\n"
        assert _runc_execs("sleep 777")
        assert interrupted(proc) == 130
    finally:
        stop(proc)
    deadline = time.monotonic() + 10
    while _runc_execs("sleep 777") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _runc_execs("sleep 777")


def test_errors(cluster, node):
    assert kctl(cluster, "logs", "nope") == (1, "", 'Error from server (NotFound): pods "nope" not found\n')
    assert kctl(cluster, "exec", "nope", "--", "true") == (
        1, "", 'Error from server (NotFound): pods "nope" not found\n')
    assert kctl(cluster, "logs", "multi", "-c", "zz") == (
        1, "", "Error from server (BadRequest): container zz is not valid for pod multi\n")
    assert kctl(cluster, "exec", "multi", "-c", "zz", "--", "true") == (
        1, "", "Error from server (BadRequest): container zz is not valid for pod multi\n")
    code, _, err = kctl(cluster, "exec", "multi", "-c", "a", "--", "/no/such/binary")
    assert code != 0 and err

    unscheduled = codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": "unscheduled", "namespace": "default"},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    call(cluster.target, lambda api: api.create(unscheduled))
    msg = "Error from server (BadRequest): pod unscheduled does not have a host assigned\n"
    assert kctl(cluster, "logs", "unscheduled") == (1, "", msg)
    assert kctl(cluster, "exec", "unscheduled", "--", "true") == (1, "", msg)

    # a node whose agent does not answer (a free port on the segment address)
    ghost = codec.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": f"{node.name}-ghost", "annotations": {"kctl.io/agent-endpoint": f"{node.segment.ip}:{free_port()}"}}})
    stranded = make_pod("stranded", node, {"name": "c", "image": "busybox"})
    stranded.spec.node_name = ghost.metadata.name

    async def create(api):
        await api.create(ghost)
        await api.create(stranded)
    call(cluster.target, create)
    for args in (("logs", "stranded"), ("exec", "stranded", "--", "true")):
        code, out, err = kctl(cluster, *args)
        assert code == 1 and out == "" and err.count("\n") == 1, err
        assert err.startswith("Error from server (ServiceUnavailable): ") and f'node "{ghost.metadata.name}"' in err
