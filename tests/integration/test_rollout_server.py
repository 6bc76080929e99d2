"""The web server bench/rollout_traffic.py (and the zero-loss rollout e2e) deploys: busybox httpd as a pod
runs it (the busybox image's applets, its own network and UTS namespaces, ``sh -c SERVER``).

It must be a server a user would deploy: a listen backlog that holds more than a couple of
connections (kctl/echo's ``nc -ll`` listens with 2, so a server short of CPU drops SYNs and
readiness probes), an ``HTTP/1.x 200`` answer with the pod's name, and PID 1 exiting 0 at once on
SIGTERM (the agent's drain, not the server, keeps requests from being cut).
"""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from bench.rollout_traffic import SERVER

BUSYBOX = "/bin/busybox"
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, chroot)"),
              pytest.mark.skipif(not os.path.exists(BUSYBOX) or not shutil.which("unshare"),
                                 reason="needs /bin/busybox and unshare")]

CLIENT = r'''
import socket, sys, time
deadline = time.monotonic() + 60          # busybox's start on a loaded machine (CI runs VMs alongside)
while True:
    try:
        s = socket.create_connection(("127.0.0.1", 8080), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
s.sendall(b"GET / HTTP/1.0\r\nHost: roll\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print(repr(data))
'''


def own_netns(pid: int, timeout: float = 30.0) -> None:
    """Wait until PID is in a network namespace of its own: ``unshare`` creates it after exec, and an
    ``nsenter`` before that would enter this machine's namespace instead."""
    mine = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + timeout
    while os.stat(f"/proc/{pid}/ns/net").st_ino == mine:
        assert time.monotonic() < deadline, "unshare --net did not create a namespace"
        time.sleep(0.01)


def listen_backlog(netns_pid: int, port: int) -> int:
    """The backlog of the socket listening on PORT, as ``ss -ltn`` shows it (Send-Q)."""
    out = subprocess.run(["nsenter", f"--net=/proc/{netns_pid}/ns/net", "ss", "-Hltn", f"sport = :{port}"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[2]) if out else 0


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "mkdir", "echo", "hostname", "httpd", "kill"):
        os.symlink("busybox", root / "bin" / applet)
    return root


def test_the_served_app_listens_with_a_real_backlog_answers_200_and_stops_on_sigterm(rootfs):
    script = f"ip link set lo up && hostname roll-abc && exec chroot {rootfs} /bin/sh -c \"$SERVER\""
    server = subprocess.Popen(["unshare", "--net", "--uts", "--fork", "--kill-child", "sh", "-c", script],
                              env={"PATH": "/bin:/usr/bin:/sbin:/usr/sbin", "SERVER": SERVER})
    try:
        own_netns(server.pid)
        run = subprocess.run(["nsenter", f"--net=/proc/{server.pid}/ns/net", sys.executable, "-c", CLIENT],
                             capture_output=True, text=True, timeout=90)
        assert run.returncode == 0, run.stderr
        reply = run.stdout.strip()
        assert reply.startswith("b'HTTP/1.1 200 OK"), reply
        assert reply.endswith("roll-abc\\n'"), reply
        assert listen_backlog(server.pid, 8080) >= 9                   # nc -ll: 2
        child = int(open(f"/proc/{server.pid}/task/{server.pid}/children").read().split()[0])   # sh (PID 1)
        os.kill(child, signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
