"""Reading a container's state from what conmon and runc leave on disk
(the state half of nodeagent/runtime.py's Runtime).

Why apart: Runtime's other half starts, stops and removes containers; this
half only looks, so it is where the rules for "what state is this container
in" live, in one place. How, in order of trust:

1. ``ROOT/containers/ID/exit.json``: the final state, cached the first time
   the exit was seen (with ``cgroups.oom_killed`` read while the cgroup
   still existed);
2. ``ROOT/exits/ID``: conmon writes the exit code there after reaping;
3. ``runc state`` (or one ``runc list`` for every container, in ``list()``):
   running/paused, created; "stopped" means conmon is about to write the exit
   file, so we wait for conmon (``conmon.pid``) to go first.

``meta.json`` (written at create) gives the name, labels, ContainerConfig and
start time, so a new agent re-adopts every container with ``list()``.

Waiting for an exit (``wait``): conmon writes the exit file and then exits,
so the wait is on conmon's exit, a pidfd the event loop watches, and costs
nothing while the container runs (the kubelet's evented PLEG, rather than
its relist).  Where there is no conmon to watch (gone, its pid taken by
another process, no pidfds) the exit file is polled, and once no conmon
runs, ``runc state`` is asked every 20 polls.

``RuntimeState`` is a mixin with no state of its own: it uses Runtime's
directories (``ctrs``, ``exits``, ``logs``), ``_dir``, ``_runc`` and
``oom_killed``.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from nodeagent.containers import CREATED, EXITED, RUNNING, UNKNOWN, ContainerInfo, ContainerState
from nodeagent.errors import ContainerNotFound
from nodeagent.metrics import RUNTIME_OP_LATENCY as OP_LATENCY, RUNTIME_RUNNING


class RuntimeState:
    """Runtime's read side: a container's state, info, the list of all, waiting for an exit."""

    def _meta(self, cid: str) -> dict:
        try:
            return json.loads((self._dir(cid) / "meta.json").read_text())
        except FileNotFoundError as exc:
            raise ContainerNotFound(cid) from exc

    def _exit_state(self, cid: str, meta: dict) -> ContainerState | None:
        d = self._dir(cid)
        cached = d / "exit.json"
        if cached.exists():
            return ContainerState(**json.loads(cached.read_text()))
        ef = self.exits / cid
        try:
            code = int(ef.read_text().strip())
            finished = ef.stat().st_mtime
        except (FileNotFoundError, ValueError):
            return None
        st = ContainerState(EXITED, 0, code, meta.get("started_at"), finished, self.oom_killed(cid))
        try:
            cached.write_text(json.dumps(asdict(st)))
        except FileNotFoundError:
            pass  # removed concurrently
        return st

    def exists(self, cid: str) -> bool:
        """Whether a container with this id is under the root (created, not yet removed)."""
        return (self._dir(cid) / "meta.json").exists()

    def _conmon_pid(self, cid: str) -> int | None:
        """The pid conmon wrote for itself (None: none readable)."""
        try:
            return int((self._dir(cid) / "conmon.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _conmon_alive(self, cid: str) -> bool:
        pid = self._conmon_pid(cid)
        return pid is not None and _is_conmon(pid)

    async def state(self, cid: str, _runc_states: dict | None = None) -> ContainerState:
        t0 = time.perf_counter()
        try:
            meta = self._meta(cid)
        except ContainerNotFound:
            return ContainerState(UNKNOWN)
        st = self._exit_state(cid, meta)
        if st is not None:
            return st
        if _runc_states is not None:
            rs = _runc_states.get(cid)
        else:
            out = await self._runc("state", cid, check=False)
            rs = json.loads(out) if out.strip() else None
        OP_LATENCY.labels("state").observe(time.perf_counter() - t0)
        status = rs.get("status") if rs else None
        if status in ("running", "paused"):
            return ContainerState(RUNNING, rs.get("pid", 0), started_at=meta.get("started_at"))
        if status in ("created", "creating"):
            return ContainerState(CREATED, rs.get("pid", 0))
        # stopped (or runc forgot it): conmon writes the exit file right after reaping.
        for _ in range(40):
            if not self._conmon_alive(cid):
                break
            await asyncio.sleep(0.05)
        st = self._exit_state(cid, meta)
        if st is not None:
            return st
        if status == "stopped":
            return ContainerState(EXITED, exit_code=-1, started_at=meta.get("started_at"),
                                  oom_killed=self.oom_killed(cid))
        return ContainerState(UNKNOWN)

    async def info(self, cid: str, _runc_states: dict | None = None) -> ContainerInfo:
        meta = self._meta(cid)
        cfg = meta["config"]
        return ContainerInfo(cid, cfg["name"], cfg.get("labels", {}), meta["created_at"],
                             await self.state(cid, _runc_states),
                             str(self.logs / f"{cid}.log"), str(self._dir(cid)))

    async def list(self) -> list[ContainerInfo]:
        """Every container under this root, from on-disk state (for re-adoption)."""
        out = await self._runc("list", "--format", "json", check=False)
        runc_states = {c["id"]: c for c in (json.loads(out) if out.strip() else None) or []}
        infos = []
        for d in sorted(self.ctrs.iterdir()):
            if (d / "meta.json").exists():
                infos.append(await self.info(d.name, runc_states))
        RUNTIME_RUNNING.set(sum(1 for i in infos if i.state.status == RUNNING))
        return infos

    def _conmon_pidfd(self, cid: str) -> int | None:
        """A pidfd of the container's conmon (readable once it has exited), or None when
        conmon is gone or its pid now belongs to another process."""
        pidfd_open = getattr(os, "pidfd_open", None)         # Linux 5.3+ and its Python build
        pid = self._conmon_pid(cid)
        if pidfd_open is None or pid is None:
            return None
        try:
            fd = pidfd_open(pid)
        except OSError:                                        # gone, no pidfds here (ENOSYS)
            return None
        if _is_conmon(pid):  # checked after the open: the fd is of the process that has the pid now
            return fd
        os.close(fd)
        return None

    async def wait(self, cid: str, poll: float = 0.05) -> ContainerState:
        """Return once the container has exited (its final state): woken by conmon's exit,
        else (no conmon to watch) by polling every `poll` seconds."""
        meta = self._meta(cid)
        n, watched = 0, False
        while True:
            st = self._exit_state(cid, meta)
            if st is not None:
                return st
            fd = None if watched else self._conmon_pidfd(cid)
            if fd is not None:
                try:
                    await _exited(fd)
                finally:
                    os.close(fd)
                watched = True       # it wrote the exit file before it exited; if not, poll
                continue
            if n % 20 == 0 and not self._conmon_alive(cid):     # runc asked only once conmon is gone
                st = await self.state(cid)
                if st.status in (EXITED, UNKNOWN):
                    return st
            n += 1
            await asyncio.sleep(poll)


def _is_conmon(pid: int) -> bool:
    try:
        return b"conmon" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def _exited(pidfd: int) -> None:
    """Until the process of this pidfd has exited (the fd turns readable)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(pidfd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
