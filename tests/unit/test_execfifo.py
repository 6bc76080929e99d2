"""nodeagent/execfifo.py: runc start's exec-fifo handshake, against a real FIFO and a
writer process playing ``runc init`` (the real runc is in
tests/integration/nodeagent_runtime/test_runtime.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from nodeagent.errors import ContainerRuntimeError
from nodeagent.execfifo import FIFO, start_created

WRITER = r"""
import os, sys, time
path, delay, write = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
time.sleep(delay)
if write:
    fd = os.open(path, os.O_WRONLY)   # blocks until the reader opened, as runc init's open
    os.write(fd, b"0")
    time.sleep(0.3)                   # "exec": the end closes a little later
"""


def writer(state, delay: float, write: bool = True) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(state / FIFO), str(delay), "1" if write else "0"])


@pytest.fixture
def state(tmp_path):
    os.mkfifo(tmp_path / FIFO)
    return tmp_path


def never():
    raise AssertionError("runc start must not run when there is an exec fifo")


async def test_writer_opening_late_is_waited_for_and_the_fifo_removed(state):
    """init not yet in its open() when the agent reads is no false end of file."""
    proc = writer(state, 0.5)
    try:
        t0 = time.monotonic()
        await start_created(state, proc.pid, never)
        assert time.monotonic() - t0 >= 0.5        # it waited for the byte, then for the close
        assert not (state / FIFO).exists()         # runc state says running from now on
    finally:
        proc.wait()


async def test_init_gone_without_the_byte_is_an_error_and_the_fifo_stays(state):
    proc = writer(state, 0, write=False)
    proc.wait()                                    # exited; a zombie would count as dead too
    with pytest.raises(ContainerRuntimeError, match="container process is already dead"):
        await start_created(state, proc.pid, never)
    assert (state / FIFO).exists()


async def test_a_zombie_init_counts_as_dead(state):
    proc = writer(state, 0, write=False)
    while open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)                           # exited, not reaped
    try:
        with pytest.raises(ContainerRuntimeError, match="already dead"):
            await start_created(state, proc.pid, never)
    finally:
        proc.wait()


async def test_an_init_that_never_takes_the_start_times_out(state):
    proc = writer(state, 30, write=False)          # alive, never opens its end
    try:
        with pytest.raises(ContainerRuntimeError, match="did not start within 0.3s"):
            await start_created(state, proc.pid, never, timeout=0.3)
        assert (state / FIFO).exists()
    finally:
        proc.kill()
        proc.wait()


async def test_no_fifo_runs_runc_start(tmp_path):
    calls = []

    async def runc_start():
        calls.append("start")
    await start_created(tmp_path, os.getpid(), runc_start)
    assert calls == ["start"]
