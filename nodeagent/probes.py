"""Liveness, readiness and startup probes (and the httpGet/exec/sleep handlers of preStop).

One ``ContainerProbes`` per running container instance, started by its pod
worker and cancelled when the instance exits or the pod terminates.  Its
``run()`` is one asyncio task: the startup probe first (if any), then the
liveness and readiness loops concurrently.  Each loop waits
``initialDelaySeconds``, then probes every ``periodSeconds`` with
``timeoutSeconds``; ``successThreshold`` consecutive successes or
``failureThreshold`` consecutive failures flip its result.  Until a readiness
or startup probe first succeeds, extra quiet attempts run between the
counted ones (after 0.1 s, 0.2 s, then every 0.4 s), so a pod is Ready as soon
as its app answers rather than a whole period after the first attempt (which
comes right at start, usually before the app listens).

No probe runs before the worker has reported the instance running: its first
attempt waits (after ``initialDelaySeconds``) for ``reported``, which the worker
sets once it has written a status with the instance in it (at most
``REPORT_WAIT`` s, so a status write that fails delays probing only that
long).  The kubelet does the same: its prober manager triggers the first
readiness run from ``UpdatePodStatus``, when it builds a status that shows the
container running, and its liveness and startup workers find a container only
once its status says it runs.  Probing at the very moment of the exec found the
app not listening yet: one failed attempt, an ``Unhealthy`` event and quiet
retries for nearly every pod.  Results are
reported through ``on_result(kind, ok, message)`` (a plain callback: the worker
records the result and wakes itself); every failed attempt also goes to
``on_failure(kind, message)`` (for the ``Unhealthy`` event).

How probes reach the pod: exec runs ``runc exec`` in the container
(``Runtime.exec``); httpGet and tcpSocket connect from the agent's network
namespace (the node's) to the pod IP — exactly what the kubelet does.
A hollow runtime (``runtime.hollow``, nodeagent/fake_runtime.py) has no pod
network: its ``probe()`` answers each attempt instead, and handlers other
than exec/sleep are skipped.
"""
from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Callable

from machinery.pb import core_pb2
from nodeagent.podspec import resolve_port
from nodeagent.errors import ContainerConfigError, ContainerRuntimeError

log = logging.getLogger("kctl.nodeagent.probes")

STARTUP, LIVENESS, READINESS = "Startup", "Liveness", "Readiness"
QUICK_RETRY = 0.1      # s: first quiet retry of a readiness/startup probe not yet successful,
QUICK_RETRY_MAX = 0.4  # doubling up to this (an app listening after 0.8 s is Ready by ~1.1 s)
REPORT_WAIT = 1.0      # s: the longest a first attempt waits for the worker's status write


async def http_get(action: core_pb2.HTTPGetAction, container: core_pb2.Container, pod_ip: str,
                   timeout: float) -> tuple[bool, str]:
    host = action.host or pod_ip
    port = resolve_port(container, action.port)
    if (action.scheme or "HTTP").upper() != "HTTP":
        return False, f"scheme {action.scheme} is not supported (only HTTP)"
    path = action.path or "/"
    headers = "".join(f"{h.name}: {h.value}\r\n" for h in action.http_headers)
    reader = writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kctl-probe/1.0\r\n"
                     f"Accept: */*\r\n{headers}Connection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.decode(errors="replace").split()
        code = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}" if code else "malformed HTTP response"
    except asyncio.TimeoutError:
        return False, f'Get "http://{host}:{port}{path}": context deadline exceeded'
    except OSError as exc:
        return False, f'Get "http://{host}:{port}{path}": {exc.strerror or exc}'
    finally:
        if writer is not None:
            writer.close()


async def tcp_socket(action: core_pb2.TCPSocketAction, container: core_pb2.Container, pod_ip: str,
                     timeout: float) -> tuple[bool, str]:
    host = action.host or pod_ip
    port = resolve_port(container, action.port)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.close()
        return True, ""
    except asyncio.TimeoutError:
        return False, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as exc:
        return False, f"dial tcp {host}:{port}: {exc.strerror or exc}"


async def exec_action(runtime, cid: str, command: list[str], timeout: float) -> tuple[bool, str]:
    try:
        code, out, err = await runtime.exec(cid, command, timeout=timeout)
    except ContainerRuntimeError as exc:
        return False, str(exc)
    if code == 0:
        return True, ""
    text = (out + err).decode(errors="replace").strip()
    return False, f"command {command!r} exited with {code}" + (f": {text[:200]}" if text else "")


async def probe_once(probe: core_pb2.Probe, container: core_pb2.Container, runtime, cid: str,
                     pod_ip: str) -> tuple[bool, str]:
    timeout = float(probe.timeout_seconds or 1)
    try:
        if probe.HasField("exec"):
            return await exec_action(runtime, cid, list(probe.exec.command), timeout)
        if probe.HasField("http_get"):
            return await http_get(probe.http_get, container, pod_ip, timeout)
        if probe.HasField("tcp_socket"):
            return await tcp_socket(probe.tcp_socket, container, pod_ip, timeout)
    except ContainerConfigError as exc:      # unknown named port
        return False, str(exc)
    return True, ""                # a probe without a handler always succeeds


async def run_handler(handler: core_pb2.LifecycleHandler, container: core_pb2.Container, runtime,
                      cid: str, pod_ip: str, timeout: float) -> tuple[bool, str]:
    """A preStop/postStart handler, bounded by timeout."""
    if handler.HasField("sleep"):
        await asyncio.sleep(min(handler.sleep.seconds, timeout))
        return True, ""
    if handler.HasField("exec"):
        return await exec_action(runtime, cid, list(handler.exec.command), timeout)
    if getattr(runtime, "hollow", False):
        return True, ""                # no pod network on a hollow node
    if handler.HasField("http_get"):
        return await http_get(handler.http_get, container, pod_ip, timeout)
    if handler.HasField("tcp_socket"):
        return await tcp_socket(handler.tcp_socket, container, pod_ip, timeout)
    return True, ""


class ContainerProbes:
    """The probes of one container instance (see the module docstring)."""

    def __init__(self, container: core_pb2.Container, runtime, cid: str, pod_ip: str,
                 on_result: Callable[[str, bool, str], None], on_failure: Callable[[str, str], None],
                 reported: asyncio.Event | None = None):
        self.container, self.runtime, self.cid, self.pod_ip = container, runtime, cid, pod_ip
        self.on_result, self.on_failure = on_result, on_failure
        self.reported = reported

    @staticmethod
    def has(container: core_pb2.Container, kind: str) -> bool:
        return container.HasField({STARTUP: "startup_probe", LIVENESS: "liveness_probe",
                                   READINESS: "readiness_probe"}[kind])

    async def run(self) -> None:
        c = self.container
        if c.HasField("startup_probe"):
            ok = await self._loop(STARTUP, c.startup_probe)
            if not ok:
                return
        loops = []
        if c.HasField("liveness_probe"):
            loops.append(self._loop(LIVENESS, c.liveness_probe))
        if c.HasField("readiness_probe"):
            loops.append(self._loop(READINESS, c.readiness_probe))
        if loops:
            await asyncio.gather(*loops)

    async def _loop(self, kind: str, probe: core_pb2.Probe) -> bool:
        """Probe forever (liveness/readiness); startup returns True on success, False on failure."""
        period = float(probe.period_seconds or 10)
        success_needed = 1 if kind != READINESS else max(1, probe.success_threshold or 1)
        failure_needed = max(1, probe.failure_threshold or 3)
        await asyncio.sleep(probe.initial_delay_seconds)
        await self._reported()
        successes = failures = 0
        result: bool | None = None
        quick_ok = False
        while True:
            ok, msg = (True, "") if quick_ok else await self._attempt(kind, probe)
            if ok:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
                self.on_failure(kind, msg)
            if ok and successes >= success_needed and result is not True:
                result = True
                self.on_result(kind, True, msg)
                if kind == STARTUP:
                    return True
            elif not ok and failures >= failure_needed and result is not False:
                result = False
                self.on_result(kind, False, msg)
                if kind == STARTUP:
                    return False
                if kind == LIVENESS:
                    failures = 0          # the container is being restarted
                    result = None
            quick_ok = await self._wait(kind, probe, period, quick=result is None and kind != LIVENESS)

    async def _reported(self) -> None:
        """Until the worker has reported the instance running (at most REPORT_WAIT s)."""
        if self.reported is not None and not self.reported.is_set():
            try:
                await asyncio.wait_for(self.reported.wait(), REPORT_WAIT)
            except asyncio.TimeoutError:
                log.debug("container %s: no status written within %.1f s; probing anyway", self.cid, REPORT_WAIT)

    async def _attempt(self, kind: str, probe: core_pb2.Probe) -> tuple[bool, str]:
        if getattr(self.runtime, "hollow", False):
            return await self.runtime.probe(kind, probe, self.container, self.cid)
        return await probe_once(probe, self.container, self.runtime, self.cid, self.pod_ip)

    async def _wait(self, kind: str, probe: core_pb2.Probe, period: float, quick: bool) -> bool:
        """Sleep one period until the next counted attempt.  With `quick` (a readiness or startup
        probe that has not succeeded yet: the first attempt, right at start, usually comes before
        the app listens) also try quietly in between, after 0.1 s, 0.2 s, then every 0.4 s: these
        attempts are neither counted as failures nor reported, so failureThreshold and the
        events keep Kubernetes' schedule; the first success ends the wait (returns True) and
        counts as a success.  Without it a pod became Ready a whole period after its start."""
        end, delay = monotonic() + period, QUICK_RETRY
        while quick and end - monotonic() > delay:
            await asyncio.sleep(delay)
            if (await self._attempt(kind, probe))[0]:
                return True
            delay = min(delay * 2, QUICK_RETRY_MAX)
        await asyncio.sleep(max(0.0, end - monotonic()))
        return False
