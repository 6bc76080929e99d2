"""The kctl/echo image really serves its pod name.

No container runtime here (another module owns runc): we pull the image from
the registry, mount its layers with overlayfs exactly as a container would see
them, and run its Cmd with chroot as PID 1 of fresh PID, network and UTS
namespaces (`unshare --fork`), so the server only listens on that namespace's
loopback and meets SIGTERM the way a container's PID 1 does. The client runs
in the same netns via nsenter.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time

import pytest

from nodeagent.images import ImageStore, lowerdirs

pytestmark = pytest.mark.root

CLIENT = r"""
import concurrent.futures, json, sys, time, urllib.request
port = int(sys.argv[1])
def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return [r.status, r.read().decode()]
deadline = time.monotonic() + 10
while True:
    try:
        get("/ready")
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
seq = [get(f"/seq/{i}/any/path?q={i}") for i in range(50)]
with concurrent.futures.ThreadPoolExecutor(10) as ex:
    conc = list(ex.map(lambda i: get(f"/concurrent/{i}"), range(10)))
print(json.dumps({"seq": seq, "conc": conc}))
"""


@pytest.fixture
def run_echo(registry, store_root, overlay):
    procs = []

    async def run(env_extra: dict, uts_name: str) -> tuple[subprocess.Popen, int]:
        store = ImageStore(store_root, insecure_registries=[registry.address])
        image = await store.pull(f"{registry.address}/kctl/echo:latest")
        merged = overlay(lowerdirs(image), writable=True)
        os.makedirs(os.path.join(merged, "dev"), exist_ok=True)  # what a runtime provides
        os.mknod(os.path.join(merged, "dev/null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
        port = 8080 if "PORT" not in env_extra else int(env_extra["PORT"])
        env = dict(e.split("=", 1) for e in image.config.env)
        env.update(env_extra)
        script = ('/usr/sbin/ip link set lo up && /bin/busybox hostname "$1" && exec /usr/sbin/chroot "$2" '
                  + shlex.join(image.config.entrypoint + image.config.cmd))
        proc = subprocess.Popen(["unshare", "--net", "--uts", "--pid", "--fork", "--kill-child", "--",
                                 "/bin/sh", "-c", script, "sh", uts_name, merged],
                                env=env, start_new_session=True)
        procs.append(proc)
        # the client must join the server's netns, not ours: wait for unshare
        deadline = time.monotonic() + 10
        while proc.poll() is None and os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare did not enter its namespaces"
            await asyncio.sleep(0.01)
        assert proc.poll() is None, f"echo server exited with {proc.returncode}"
        return proc, port

    yield run
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the server and any handler it forked
        except ProcessLookupError:
            pass
        proc.wait()


def client(pid: int, port: int) -> dict:
    res = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", CLIENT, str(port)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


async def test_echo_answers_every_path_with_hostname_env(run_echo):
    proc, port = await run_echo({"HOSTNAME": "echo-7d9f-abcde"}, uts_name="uts-name-not-used")
    out = client(proc.pid, port)
    assert out["seq"] == [[200, "echo-7d9f-abcde\n"]] * 50
    assert out["conc"] == [[200, "echo-7d9f-abcde\n"]] * 10
    assert proc.poll() is None  # still serving


async def test_echo_falls_back_to_hostname_and_honours_port(run_echo):
    proc, port = await run_echo({"PORT": "9099"}, uts_name="echo-fallback")
    out = client(proc.pid, port)
    assert port == 9099
    assert out["seq"] == [[200, "echo-fallback\n"]] * 50
    assert out["conc"] == [[200, "echo-fallback\n"]] * 10


def pid1_of(unshare_pid: int) -> int:
    with open(f"/proc/{unshare_pid}/task/{unshare_pid}/children") as f:
        return int(f.read().split()[0])


async def test_echo_pid1_exits_promptly_on_sigterm(run_echo):
    proc, port = await run_echo({"HOSTNAME": "echo-term"}, uts_name="echo-term")
    assert client(proc.pid, port)["conc"] == [[200, "echo-term\n"]] * 10
    server = pid1_of(proc.pid)
    with open(f"/proc/{server}/status") as f:
        nspid = [line.split()[-1] for line in f if line.startswith("NSpid:")]
    assert nspid == ["1"]  # really PID 1 of its namespace
    started = time.monotonic()
    os.kill(server, signal.SIGTERM)
    assert proc.wait(timeout=5) == 0  # unshare reports its child's exit status
    assert time.monotonic() - started < 2
