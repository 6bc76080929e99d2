"""RuntimeState.wait (nodeagent/runtimestate.py): woken by conmon's exit
through a pidfd, not by polling the exit file while the container runs; the
exit file read once conmon has gone; polling only where there is no conmon
to watch; a cancelled wait leaves no fd behind.  A process started as
`conmon` (argv[0]) stands in for conmon; the exit file is written as conmon
writes it, before it exits."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from nodeagent.containers import EXITED, RUNNING, ContainerState
from nodeagent.runtimestate import RuntimeState


class Root(RuntimeState):
    """RuntimeState's directories, and a runc that says the container runs."""

    def __init__(self, tmp: Path):
        self.ctrs, self.exits = tmp / "containers", tmp / "exits"
        self.ctrs.mkdir()
        self.exits.mkdir()
        self.reads = 0
        self.runc_states = 0

    def _dir(self, cid: str) -> Path:
        return self.ctrs / cid

    def _exit_state(self, cid, meta):
        self.reads += 1
        return super()._exit_state(cid, meta)

    def oom_killed(self, cid: str) -> bool:
        return False

    async def _runc(self, *args, check=True):
        self.runc_states += 1
        return json.dumps({"status": "running", "pid": 1})


@contextlib.asynccontextmanager
async def container(root: Root, cid: str, conmon_argv0: str):
    """A container dir whose conmon.pid is a process running as `conmon_argv0` (killed after)."""
    d = root.ctrs / cid
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"started_at": 1.0, "config": {}}))
    proc = subprocess.Popen(["bash", "-c", f'exec -a {conmon_argv0} sleep 60'])
    (d / "conmon.pid").write_text(str(proc.pid))
    try:
        while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(conmon_argv0.encode()):
            await asyncio.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def root(tmp_path):
    return Root(tmp_path)


async def test_woken_by_conmons_exit_without_polling(root):
    async with container(root, "c1", "conmon") as conmon:
        waiter = asyncio.create_task(root.wait("c1"))
        await asyncio.sleep(1.0)                    # 20 polls' worth of a running container
        assert not waiter.done()
        assert root.reads == 1 and root.runc_states == 0
        (root.exits / "c1").write_text("3")         # as conmon: the exit file, then its own exit
        conmon.kill()
        st = await asyncio.wait_for(waiter, 5)
    assert (st.status, st.exit_code) == (EXITED, 3)
    assert ContainerState(**json.loads((root.ctrs / "c1" / "exit.json").read_text())) == st


async def test_a_pid_that_is_not_conmon_falls_back_to_polling(root):
    async with container(root, "c2", "sleeper"):       # conmon's pid, taken by another process
        waiter = asyncio.create_task(root.wait("c2", poll=0.01))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        assert root.reads > 5 and root.runc_states >= 1          # polled, runc asked
        (root.exits / "c2").write_text("0")
        st = await asyncio.wait_for(waiter, 5)
    assert (st.status, st.exit_code) == (EXITED, 0)


async def test_a_cancelled_wait_closes_its_pidfd(root):
    async with container(root, "c3", "conmon"):
        before = open_fds()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(root.wait("c3"), 0.2)
        assert open_fds() == before
        st = await root.state("c3")
        assert st.status == RUNNING                  # nothing was decided about the container


async def test_without_pidfds_it_polls(root, monkeypatch):
    monkeypatch.delattr("os.pidfd_open")               # an older kernel or Python build
    async with container(root, "c4", "conmon"):
        waiter = asyncio.create_task(root.wait("c4", poll=0.01))
        await asyncio.sleep(0.3)
        assert not waiter.done() and root.reads > 5
        assert root.runc_states == 0                  # conmon runs: runc is not asked
        (root.exits / "c4").write_text("7")
        st = await asyncio.wait_for(waiter, 5)
    assert (st.status, st.exit_code) == (EXITED, 7)


async def test_a_conmon_gone_without_an_exit_file_is_polled_for_it(root):
    """conmon killed before it wrote the exit file: the wait goes on polling (at its pace,
    runc asked every 20 polls), not watching conmon again, until the exit file is there."""
    async with container(root, "c5", "conmon") as conmon:
        waiter = asyncio.create_task(root.wait("c5", poll=0.05))
        await asyncio.sleep(0.2)
        conmon.kill()
        conmon.wait()
        await asyncio.sleep(0.5)
        assert not waiter.done()
        assert 3 <= root.reads <= 20 and root.runc_states >= 1      # ~10 polls in 0.5 s, no spin
        (root.exits / "c5").write_text("137")
        st = await asyncio.wait_for(waiter, 5)
    assert (st.status, st.exit_code) == (EXITED, 137)
