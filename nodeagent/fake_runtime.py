"""Hollow node parts for ``--runtime=fake``: no containers, no netns, no images.

A hollow agent runs the very same agent and pod worker code as a real one
(registration, Lease heartbeats, pod watch, one worker per pod UID, status,
deletion), but its three node-side dependencies are these in-memory fakes:

* ``FakeRuntime``  — the ``nodeagent.runtime.Runtime`` interface; a container
  is "running" from ``create_and_start`` until ``stop``/``remove``; ``exec``
  answers exit 0, except for the command ``false`` (``["false"]``,
  ``["/bin/false"]``), which exits 1; logs are empty.
* ``FakeNetwork``  — the ``nodeagent.network.NodeNetwork`` interface; a
  sandbox is just an IP handed out from the node's pod CIDR (never twice,
  released on delete).
* ``FakeImageStore`` — ``pull`` returns at once an image with no layers.

So pods become Running at once, and one process can host hundreds of hollow
agents for scale tests of the scheduler and controllers.

Modelled failures (so controller tests, e.g. a Deployment's
ProgressDeadlineExceeded, can use real hollow agents):

* an image whose name contains ``never-ready`` (``example/never-ready:1``)
  gives containers that run but are never ready: the pod is Running with
  Ready=False / ContainersReady=False (reason ContainersNotReady), with or
  without a readiness probe in the spec; a readiness probe of such a container
  always fails (an ``Unhealthy`` event per attempt);
* exec probes run ``FakeRuntime.exec``: ``["false"]`` fails, anything else
  succeeds — so an exec readiness probe of ``["false"]`` keeps the pod
  unready, an exec liveness probe of ``["false"]`` restarts the container
  (with CrashLoopBackOff, as for real);
* ``FakeRuntime.exit_container(cid, code, oom)`` makes a container exit
  (crashes, OOM kills, completions) from a test.

httpGet and tcpSocket probes and handlers never touch the network on a hollow
node (pod IPs are fictitious): they succeed, except readiness of a
``never-ready`` container.  ``FakeRuntime.probe`` is what the probe loop calls
instead of ``probes.probe_once`` when the runtime has it.

No global state: every instance owns its dicts, nothing is module-level
mutable, so many agents share one process and one event loop.  Everything is
single-threaded asyncio; methods never await between reading and writing
their dicts, so each call is atomic.
"""
from __future__ import annotations

import asyncio
import ipaddress
import time

from nodeagent.containers import ContainerConfig, ContainerInfo, ContainerState
from nodeagent.crilog import LogEntry
from nodeagent.errors import ContainerNotFound, ContainerNotRunning, ContainerRuntimeError, IPAMExhausted
from nodeagent.imageref import parse_reference
from nodeagent.images import Image, ImageConfig
from nodeagent.network import Sandbox


class _FakeContainer:
    def __init__(self, cfg: ContainerConfig) -> None:
        self.cfg = cfg
        self.created_at = time.time()
        self.state = ContainerState("running", pid=1, started_at=self.created_at)
        self.exited = asyncio.Event()

    def exit(self, code: int) -> None:
        if self.state.status == "running":
            self.state = ContainerState("exited", exit_code=code, started_at=self.state.started_at,
                                        finished_at=time.time())
            self.exited.set()


NEVER_READY = "never-ready"
FAILING_COMMANDS = ("false", "/bin/false", "/usr/bin/false")


class FakeRuntime:
    """In-memory containers (see the module docstring)."""

    hollow = True      # probes and handlers must not touch the network (see probes.py)

    def __init__(self) -> None:
        self._ctrs: dict[str, _FakeContainer] = {}

    @staticmethod
    def never_ready(container) -> bool:
        """Containers of images named ``...never-ready...`` run but are never ready."""
        return NEVER_READY in container.image

    async def probe(self, kind: str, probe, container, cid: str) -> tuple[bool, str]:
        """One hollow probe attempt: exec via ``exec``; httpGet/tcpSocket succeed without network;
        readiness of a never-ready container always fails."""
        if kind == "Readiness" and self.never_ready(container):
            return False, f"hollow node: image {container.image!r} never becomes ready"
        if probe.HasField("exec"):
            try:
                code, _, _ = await self.exec(cid, list(probe.exec.command))
            except ContainerRuntimeError as exc:
                return False, str(exc)
            if code:
                return False, f"command {list(probe.exec.command)!r} exited with {code}"
        return True, ""

    def _get(self, cid: str) -> _FakeContainer:
        try:
            return self._ctrs[cid]
        except KeyError:
            raise ContainerNotFound(cid) from None

    def exists(self, cid: str) -> bool:
        return cid in self._ctrs

    def exit_container(self, cid: str, code: int = 0, oom: bool = False) -> None:
        """Make a running fake container exit (tests: crashes, OOM kills, completions)."""
        c = self._get(cid)
        c.exit(code)
        c.state.oom_killed = oom

    async def create_and_start(self, cfg: ContainerConfig) -> ContainerInfo:
        if cfg.id in self._ctrs:
            raise ContainerRuntimeError(f"container {cfg.id} exists")
        self._ctrs[cfg.id] = _FakeContainer(cfg)
        return await self.info(cfg.id)

    async def state(self, cid: str, _runc_states=None) -> ContainerState:
        return self._get(cid).state

    async def info(self, cid: str, _runc_states=None) -> ContainerInfo:
        c = self._get(cid)
        return ContainerInfo(cid, c.cfg.name, dict(c.cfg.labels), c.created_at, c.state, "", "")

    async def list(self) -> list[ContainerInfo]:
        return [await self.info(cid) for cid in list(self._ctrs)]

    async def wait(self, cid: str, poll: float = 0.05) -> ContainerState:
        c = self._get(cid)
        await c.exited.wait()
        return c.state

    async def stop(self, cid: str, grace_seconds: float = 10) -> ContainerState:
        c = self._get(cid)
        c.exit(137 if grace_seconds <= 0 else 0)
        return c.state

    async def remove(self, cid: str, keep_logs: bool = False) -> None:
        c = self._ctrs.pop(cid, None)
        if c is not None:
            c.exit(137)

    async def exec(self, cid: str, argv: list[str], stdin: bytes | None = None,
                   timeout: float = 30) -> tuple[int, bytes, bytes]:
        if self._get(cid).state.status != "running":
            raise ContainerNotRunning(f"exec in {cid}: container is not running")
        return (1 if argv and argv[0] in FAILING_COMMANDS else 0), b"", b""

    def read_log(self, cid: str, tail: int | None = None) -> list[LogEntry]:
        return []

    async def follow_log(self, cid: str, poll: float = 0.1):
        c = self._get(cid)
        await c.exited.wait()
        return
        yield  # pragma: no cover - makes this an async generator


class FakeNetwork:
    """Pod IPs from the node's CIDR, in memory (see the module docstring)."""

    def __init__(self, pod_cidr: str) -> None:
        self.pod_cidr = ipaddress.ip_network(pod_cidr)
        self.gateway = str(self.pod_cidr.network_address + 1)
        self._hosts = self.pod_cidr.hosts()
        next(self._hosts, None)            # the gateway
        self._free: list[str] = []
        self._sandboxes: dict[str, Sandbox] = {}
        self.routes: dict[str, str] = {}

    async def setup(self) -> None:
        pass

    async def sync_routes(self, routes: dict[str, str]) -> dict[str, list[str]]:
        self.routes = dict(routes)
        return {"added": [], "removed": []}

    async def create_sandbox(self, pod_uid: str, pod_name: str = "") -> Sandbox:
        sb = self._sandboxes.get(pod_uid)
        if sb is not None:
            return sb
        ip = self._free.pop() if self._free else next(self._hosts, None)
        if ip is None:
            raise IPAMExhausted(f"pod CIDR {self.pod_cidr} exhausted")
        sb = Sandbox(pod_uid, "", "", str(ip), self.pod_cidr.prefixlen, self.gateway, "")
        self._sandboxes[pod_uid] = sb
        return sb

    async def delete_sandbox(self, pod_uid: str) -> None:
        sb = self._sandboxes.pop(pod_uid, None)
        if sb is not None:
            self._free.append(sb.ip)

    def get_sandbox(self, pod_uid: str) -> Sandbox | None:
        return self._sandboxes.get(pod_uid)

    async def list_sandboxes(self) -> list[Sandbox]:
        return list(self._sandboxes.values())

    def list_allocations(self) -> dict[str, str]:
        return {sb.ip: uid for uid, sb in self._sandboxes.items()}

    def close(self) -> None:
        pass


class FakeImageStore:
    """Every image exists and has no layers."""

    async def pull(self, ref: str, policy: str = "IfNotPresent") -> Image:
        r = parse_reference(ref)
        return Image(str(r), "sha256:" + "0" * 64, None, (), ImageConfig(cmd=("sleep", "infinity")))

    def get(self, ref: str) -> Image | None:
        return None
