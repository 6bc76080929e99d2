"""The helper tasks of a pod's running container instances: an exit waiter and the probes.

One ``InstanceWatchers`` per pod worker, keyed by runtime container id.  For
each running instance, ``ensure`` starts a task that waits for its exit
(``runtime.wait``) and, if the container has probes, one running its
``ContainerProbes`` (nodeagent/probes.py), whose first attempts wait for
``reported()``: the worker calls it after each status write.  The tasks never touch the
worker's state: the exit waiter only wakes the worker, the probes report
through the callbacks the worker gave (which record and wake).  ``stop``
cancels an instance's tasks (its exit was seen, or it is being killed);
``stop_all`` all of them (termination, the worker ending).
"""
from __future__ import annotations

import asyncio
from typing import Callable

from machinery.pb import core_pb2
from nodeagent.errors import ContainerRuntimeError
from nodeagent.probes import LIVENESS, READINESS, STARTUP, ContainerProbes


class InstanceWatchers:
    def __init__(self, runtime, wake: Callable[[], None]) -> None:
        self.runtime = runtime
        self.wake = wake
        self._tasks: dict[str, list[asyncio.Task]] = {}   # cid -> exit waiter + probes
        self._reported: dict[str, asyncio.Event] = {}      # cid -> set once a status showed it

    def ensure(self, c: core_pb2.Container, cid: str, pod_ip: str,
               on_result: Callable[[str, bool, str], None], on_failure: Callable[[str, str], None]) -> None:
        """Start the exit waiter (and the probes, if c has any) of instance cid, once."""
        if cid in self._tasks:
            return
        tasks = [asyncio.create_task(self._wait_exit(cid), name=f"wait-{cid[:8]}")]
        if any(ContainerProbes.has(c, k) for k in (STARTUP, LIVENESS, READINESS)):
            reported = self._reported[cid] = asyncio.Event()
            probes = ContainerProbes(c, self.runtime, cid, pod_ip, on_result, on_failure, reported)
            tasks.append(asyncio.create_task(probes.run(), name=f"probes-{cid[:8]}"))
        self._tasks[cid] = tasks

    def awaiting_exit(self, cid: str) -> bool:
        """Whether cid's exit waiter runs and has not fired (the instance still runs)."""
        waiter = self._tasks.get(cid, [None])[0]
        return waiter is not None and not waiter.done()

    def reported(self) -> None:
        """A status with every current instance in it was written: their probes may start."""
        for event in self._reported.values():
            event.set()

    def stop(self, cid: str | None) -> None:
        self._reported.pop(cid, None)
        for t in self._tasks.pop(cid, []):
            t.cancel()

    def stop_all(self) -> None:
        for cid in list(self._tasks):
            self.stop(cid)

    async def _wait_exit(self, cid: str) -> None:
        try:
            await self.runtime.wait(cid)
        except ContainerRuntimeError:
            pass
        self.wake()
