"""The node agent's container runtime: overlayfs + conmon + runc.

Two directories: STATE (the agent gives a tmpfs, nodeagent/statedir.py, as
containerd and CRI-O keep theirs under /run) holds what each start and stop
makes and removes: bundles, runc's root, conmon's exit and socket dirs;
ROOT (on disk) what must outlive a reboot: each container's writable layer
(``ROOT/layers/ID/{upper,work}``) and its log (``ROOT/logs/ID.log``).
Without a STATE, both are ROOT.

How a container starts (design §4):

1. ``STATE/containers/ID/`` is the bundle.  With image layers, ``rootfs/`` is an
   overlayfs mount (lowerdir = layers top first, upper and work in
   ``ROOT/layers/ID/``, private to the container); with a plain rootfs dir,
   that dir is used as is.
2. ``config.json`` comes from ``ocispec.build_spec`` (runc's own defaults plus
   what the pod asks for); ``meta.json`` keeps the ContainerConfig and labels so
   a later agent can re-adopt the container (``list()``), all but the seccomp
   profile, which is config.json's ``linux.seccomp`` (~15 KB that every
   ``list()`` would parse again).
3. ``conmon`` runs ``runc create`` in a session of its own (the container
   outlives the agent) and reports the PID on its sync pipe (nodeagent/conmon.py).
4. what ``runc --root STATE/runc start ID`` does, in-process: read the container's
   exec fifo, then remove it (nodeagent/execfifo.py; ``runc start`` itself where
   there is no fifo).  conmon stays the container's parent,
   writes the CRI log (``TIME STREAM F|P TEXT``) to ``ROOT/logs/ID.log`` and, at
   exit, the exit code as a plain integer to ``STATE/exits/ID``.  A container
   with ``stdin`` gets conmon's ``--stdin`` (what attach clients send reaches
   its stdin; conmon closes it when the first attached client leaves, i.e.
   Kubernetes' ``stdinOnce``), with ``tty`` conmon's ``--terminal`` (conmon
   holds the pty master; ``attach.py`` resizes it from the slave side).

cgroups (nodeagent/cgroups.py): ``cgroupsPath`` is absolute, ``/PARENT/ID``
(PARENT defaults to "kctl"), so runc creates ``<hierarchy>/PARENT/ID`` in
every hierarchy.  ``runc delete`` removes the leaf; ``remove()`` removes
leftovers and the parent (when empty and no create is in flight in this
process; every component of a nested parent such as "kctl/NODE") in every
hierarchy itself.  Agents sharing a parent prefix may race (one removes "kctl"
while another's runc is about to mkdir under it): runc create then fails and the
pod worker's retry succeeds.

OOM: when the exit is first observed (the cgroup still exists until
``remove()``), ``cgroups.oom_killed`` reads the container's cgroup once and
the answer is cached with the exit code in ``exit.json``.

Neighbours: reading a container's state back from disk and runc (state,
info, list, wait: the ``RuntimeState`` mixin) is in nodeagent/runtimestate.py,
the dataclasses it takes and gives are in nodeagent/containers.py, the CRI log parser in nodeagent/crilog.py, starting conmon in
nodeagent/conmon.py, the exec killer in nodeagent/processes.py, its metrics
in nodeagent/metrics.py and its errors (``ContainerRuntimeError`` and
subclasses) in nodeagent/errors.py.

Measured here (2 cores): create_and_start of a busybox container ~75 ms median
(conmon + runc create ~65 ms; the start through the exec fifo well under 1 ms,
where ``runc start`` took ~9 ms); each runc state/kill/delete
call ~8 ms; a bare ``runc run`` of ``true`` (bench/runc_raw.py) ~45 ms median.

Concurrency: everything is asyncio subprocesses and small file reads; methods
for different containers may run concurrently.  The only shared in-process
state is ``_creating`` (count of creates in flight) so ``remove()`` never
deletes the cgroup parent while runc is about to create a child in it.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import shutil
import time
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import AsyncIterator

from nodeagent import cgroups, ocispec
from nodeagent.conmon import run_conmon
from nodeagent.containers import CREATED, RUNNING, ContainerConfig, ContainerInfo, ContainerState
from nodeagent import crilog
from nodeagent.crilog import LogEntry
from nodeagent.errors import ContainerNotFound, ContainerNotRunning, ContainerRuntimeError, ExecTimeout
from nodeagent.execfifo import start_created
from nodeagent.metrics import RUNTIME_OP_ERRORS as OP_ERRORS, RUNTIME_OP_LATENCY as OP_LATENCY
from nodeagent.processes import end_exec, kill_exec
from nodeagent.runtimestate import RuntimeState

RUNC = shutil.which("runc") or "/usr/sbin/runc"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


class Runtime(RuntimeState):
    """Containers under one root dir (and state dir).  All state is in files: a
    new Runtime on the same dirs (and cgroup_parent) re-adopts every container
    (``list()``); writable layers whose container is gone (the state dir was
    a tmpfs and the machine rebooted) are removed when it starts.
    Reading a container's state (state, info, list, wait, exists) is
    RuntimeState's part (nodeagent/runtimestate.py); this class creates,
    stops, removes and execs.

    Give each node agent on a machine its own root and cgroup_parent.
    """

    def __init__(self, root_dir: str | os.PathLike, cgroup_parent: str = "kctl",
                 state_dir: str | os.PathLike | None = None):
        self.root = Path(root_dir)
        self.state_dir = Path(state_dir) if state_dir is not None else self.root
        self.cgroup_parent = cgroup_parent.strip("/")
        self.runc_root = self.state_dir / "runc"
        self.exits = self.state_dir / "exits"
        self.socks = self.state_dir / "socks"
        self.ctrs = self.state_dir / "containers"
        self.logs = self.root / "logs"
        self.layers = self.root / "layers"
        for d in (self.runc_root, self.exits, self.logs, self.socks, self.ctrs, self.layers):
            d.mkdir(parents=True, exist_ok=True)
        self._creating = 0
        for d in self.layers.iterdir():      # a layer without its bundle: the state went with a reboot
            if not (self.ctrs / d.name).exists():
                shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ helpers
    def _dir(self, cid: str) -> Path:
        if not _ID_RE.match(cid):
            raise ContainerRuntimeError(f"invalid container id {cid!r}")
        return self.ctrs / cid

    def bundle(self, cid: str) -> Path:
        """The container's bundle directory (config.json, pidfile, conmon's attach socket)."""
        return self._dir(cid)

    def cgroup_dirs(self, cid: str | None = None) -> list[Path]:
        """The container's (or, with None, the parent's) directory in every hierarchy."""
        return cgroups.dirs(self.cgroup_parent if cid is None else f"{self.cgroup_parent}/{cid}")

    def oom_killed(self, cid: str) -> bool:
        """Whether the OOM killer killed a process in the container's cgroup (while it exists)."""
        return cgroups.oom_killed(self.cgroup_dirs(cid))

    async def _cmd(self, *argv: str, stdin: bytes | None = None,
                   timeout: float = 60) -> tuple[int, bytes, bytes]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise ContainerRuntimeError(f"cannot run {argv[0]}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode, out, err

    async def _runc(self, *args: str, check: bool = True, timeout: float = 60) -> bytes:
        rc, out, err = await self._cmd(RUNC, "--root", str(self.runc_root), *args, timeout=timeout)
        if check and rc != 0:
            raise ContainerRuntimeError(f"runc {args[0]} failed ({rc}): {err.decode().strip()}")
        return out

    # ------------------------------------------------------------------ create
    async def create_and_start(self, cfg: ContainerConfig) -> ContainerInfo:
        t0 = time.perf_counter()
        d = self._dir(cfg.id)
        try:
            d.mkdir(parents=True)  # claims the id atomically
        except FileExistsError as exc:
            raise ContainerRuntimeError(f"container {cfg.id} already exists") from exc
        self._creating += 1
        try:
            pid = await self._create(cfg, d)
            await start_created(self.runc_root / cfg.id, pid, lambda: self._runc("start", cfg.id))
        except BaseException as exc:  # also on cancellation: never leave half a container
            self._creating -= 1
            OP_ERRORS.labels("create_and_start").inc()
            try:
                await self.remove(cfg.id)
            except Exception:
                pass
            if isinstance(exc, ContainerRuntimeError) or not isinstance(exc, Exception):
                raise
            raise ContainerRuntimeError(f"create {cfg.id}: {exc}") from exc
        self._creating -= 1
        OP_LATENCY.labels("create_and_start").observe(time.perf_counter() - t0)
        meta = self._meta(cfg.id)
        return ContainerInfo(cfg.id, cfg.name, dict(cfg.labels), meta["created_at"],
                             ContainerState(RUNNING, pid, started_at=meta.get("started_at")),
                             str(self.log_path(cfg.id)), str(d))

    async def _create(self, cfg: ContainerConfig, d: Path) -> int:
        """Mount the rootfs, write the bundle, run conmon (-> runc create); return the pid."""
        if cfg.layers:
            rootfs = _mount_overlay(d / "rootfs", self.layers / cfg.id, cfg.layers)
        elif cfg.rootfs:
            rootfs = Path(cfg.rootfs)
        else:
            raise ContainerRuntimeError("ContainerConfig needs layers or rootfs")
        spec = ocispec.build_spec(cfg, str(rootfs), f"/{self.cgroup_parent}/{cfg.id}")
        (d / "config.json").write_text(json.dumps(spec))
        meta = {"config": _config_record(cfg), "created_at": time.time()}
        (d / "meta.json").write_text(json.dumps(meta))
        pid = await run_conmon(d, cfg.id, [
            "--api-version", "1", "-c", cfg.id, "-u", cfg.id, "-n", cfg.name or cfg.id,
            "-r", RUNC, "--runtime-arg", f"--root={self.runc_root}",
            "-b", str(d), "-p", str(d / "pidfile"), "-P", str(d / "conmon.pid"),
            "-l", f"k8s-file:{self.logs / (cfg.id + '.log')}",
            "--exit-dir", str(self.exits), "--socket-dir-path", str(self.socks),
            *(["--stdin"] if cfg.stdin else []), *(["--terminal"] if cfg.tty else [])])
        meta["started_at"] = time.time()
        (d / "meta.json").write_text(json.dumps(meta))
        return pid

    # ------------------------------------------------------------------ stop / remove
    async def stop(self, cid: str, grace_seconds: float = 10) -> ContainerState:
        """SIGTERM, wait up to grace, then SIGKILL; returns the exit state."""
        t0 = time.perf_counter()
        try:
            st = await self.state(cid)
            if st.status in (RUNNING, CREATED):
                await self._runc("kill", cid, "TERM", check=False)
                try:
                    st = await asyncio.wait_for(self.wait(cid), grace_seconds)
                except asyncio.TimeoutError:
                    await self._runc("kill", cid, "KILL", check=False)
                    st = await asyncio.wait_for(self.wait(cid), 30)
        except (asyncio.TimeoutError, OSError) as exc:
            OP_ERRORS.labels("stop").inc()
            raise ContainerRuntimeError(f"stop {cid}: {exc!r}") from exc
        OP_LATENCY.labels("stop").observe(time.perf_counter() - t0)
        return st

    async def remove(self, cid: str, keep_logs: bool = False) -> None:
        """Kill if needed, runc delete, unmount, delete bundle, cgroups, exit file, log."""
        t0 = time.perf_counter()
        d = self._dir(cid)
        try:
            if (d / "meta.json").exists() and (await self.state(cid)).status in (RUNNING, CREATED):
                await self._runc("kill", cid, "KILL", check=False)
                try:
                    await asyncio.wait_for(self.wait(cid), 10)
                except asyncio.TimeoutError:
                    pass
            await self._runc("delete", "--force", cid, check=False)
            for cg in self.cgroup_dirs(cid):
                cgroups.rmdir(cg)
            if self._creating == 0:
                self.prune_cgroup_parent()
            rootfs = d / "rootfs"
            if os.path.ismount(rootfs):
                if _libc.umount2(str(rootfs).encode(), 0) != 0:
                    _libc.umount2(str(rootfs).encode(), MNT_DETACH)
            if d.exists():
                await asyncio.to_thread(shutil.rmtree, d)
            layer = self.layers / cid
            if layer.exists():   # the container's writes can be large: not on the agent's loop
                await asyncio.to_thread(shutil.rmtree, layer)
            (self.exits / cid).unlink(missing_ok=True)
            sock = self.socks / cid  # conmon leaves a symlink to the bundle's attach dir
            if sock.is_symlink() or sock.is_file():
                sock.unlink()
            elif sock.exists():
                shutil.rmtree(sock, ignore_errors=True)
            if not keep_logs:
                (self.logs / f"{cid}.log").unlink(missing_ok=True)
        except ContainerRuntimeError:
            OP_ERRORS.labels("remove").inc()
            raise
        except OSError as exc:
            OP_ERRORS.labels("remove").inc()
            raise ContainerRuntimeError(f"remove {cid}: {exc}") from exc
        OP_LATENCY.labels("remove").observe(time.perf_counter() - t0)

    def prune_cgroup_parent(self) -> None:
        """rmdir the cgroup parent (each component of a nested "a/b" parent, deepest
        first) in every hierarchy where it is empty; non-empty ones are left alone."""
        cgroups.prune(self.cgroup_parent)

    # ------------------------------------------------------------------ exec / logs
    async def start_exec(self, cid: str, argv: list[str], *, stdin: bool = False,
                         tty: int | None = None) -> tuple[asyncio.subprocess.Process, Path]:
        """Start ``runc exec --pid-file PIDFILE CID ARGV`` with pipes; return (process, pidfile).

        With ``tty`` (the slave fd of a pseudo-terminal, nodeagent/tty.py), ``runc exec --tty``
        runs in the foreground with that terminal as its stdio: runc allocates the container's
        own pty and copies between the two (and resizes it on SIGWINCH).

        Always end it with ``processes.end_exec`` (which kills the command if it still runs)."""
        if not self.exists(cid):
            raise ContainerNotFound(cid)
        if (self.exits / cid).exists():
            raise ContainerNotRunning(f"exec in {cid}: container is not running")
        pidfile = self._dir(cid) / f"exec-{os.getpid()}-{time.monotonic_ns()}.pid"
        pipe = asyncio.subprocess.PIPE
        stdio = dict(stdin=tty, stdout=tty, stderr=tty, start_new_session=True) if tty is not None else dict(
            stdin=pipe if stdin else asyncio.subprocess.DEVNULL, stdout=pipe, stderr=pipe)
        try:
            proc = await asyncio.create_subprocess_exec(
                RUNC, "--root", str(self.runc_root), "exec", *(["--tty"] if tty is not None else []),
                "--pid-file", str(pidfile), cid, *argv, **stdio)
        except OSError as exc:
            OP_ERRORS.labels("exec").inc()
            raise ContainerRuntimeError(f"exec in {cid}: {exc}") from exc
        return proc, pidfile

    async def exec(self, cid: str, argv: list[str], stdin: bytes | None = None,
                   timeout: float = 30) -> tuple[int, bytes, bytes]:
        """Run argv in the container (runc exec); returns (exit_code, stdout, stderr)."""
        t0 = time.perf_counter()
        proc, pidfile = await self.start_exec(cid, argv, stdin=stdin is not None)
        try:
            comm = asyncio.ensure_future(proc.communicate(stdin))
            done, _ = await asyncio.wait({comm}, timeout=timeout)
            if comm in done:
                out, err = comm.result()
                return proc.returncode, out, err
            # Kill the exec'd process (and its children) first so that runc exec reaps it and exits
            # by itself (killing runc first would leave the command running in the container).
            await kill_exec(proc, pidfile)
            await comm
            OP_ERRORS.labels("exec").inc()
            raise ExecTimeout(f"exec in {cid} timed out after {timeout}s")
        except OSError as exc:
            OP_ERRORS.labels("exec").inc()
            raise ContainerRuntimeError(f"exec in {cid}: {exc}") from exc
        finally:
            await end_exec(proc, pidfile)    # cancelled: kill what runs
            OP_LATENCY.labels("exec").observe(time.perf_counter() - t0)

    def log_path(self, cid: str) -> Path:
        return self.logs / f"{cid}.log"

    def read_log(self, cid: str, tail: int | None = None) -> list[LogEntry]:
        return crilog.read(self.log_path(cid), tail)

    def follow_log(self, cid: str, poll: float = 0.1) -> AsyncIterator[LogEntry]:
        """Yield log entries from the start, following until the container has exited
        (more exactly: until its conmon, which writes the log, is gone)."""
        return crilog.follow(self.log_path(cid), lambda: self._conmon_alive(cid), poll)


def _mount_overlay(rootfs: Path, layer: Path, layers: list[str]) -> Path:
    """rootfs as an overlayfs of the layers (top first) with LAYER/upper and LAYER/work."""
    rootfs.mkdir()
    for sub in ("upper", "work"):
        (layer / sub).mkdir(parents=True)
    opts = f"lowerdir={':'.join(str(p) for p in layers)},upperdir={layer / 'upper'},workdir={layer / 'work'}"
    if _libc.mount(b"overlay", str(rootfs).encode(), b"overlay", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise ContainerRuntimeError(f"overlay mount {rootfs}: {os.strerror(err)}")
    return rootfs


def _config_record(cfg: ContainerConfig) -> dict:
    """meta.json's copy of a ContainerConfig: every field but the seccomp profile (what
    asdict() gives, without deep-copying that profile's ~350 syscall names)."""
    rec = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "seccomp"}
    rec["mounts"] = [asdict(m) if is_dataclass(m) else m for m in cfg.mounts]
    return rec
