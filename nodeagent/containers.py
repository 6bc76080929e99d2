"""What the node agent's runtimes take and give: container config, state and info.

Plain dataclasses shared by the real runtime (nodeagent/runtime.py), the
hollow one (nodeagent/fake_runtime.py), the pod spec translation
(nodeagent/podspec.py) and the pod status (nodeagent/status.py), so none of
those needs the runtime's process and mount code to speak about a container.
``ContainerState`` is also what ``exit.json`` caches next to a bundle
(``dataclasses.asdict``), so its fields are part of the on-disk format.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUNNING, CREATED, EXITED, UNKNOWN = "running", "created", "exited", "unknown"


@dataclass
class Mount:
    source: str
    destination: str
    read_only: bool = False


@dataclass
class ContainerConfig:
    id: str
    name: str
    args: list[str]
    layers: list[str] = field(default_factory=list)   # read-only lower dirs, TOP FIRST
    rootfs: str | None = None                          # or a plain rootfs dir
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: Any = None                                   # uid int, (uid, gid) or "uid:gid"
    hostname: str = ""
    netns_path: str | None = None                      # /var/run/netns/NAME to join
    mounts: list[Any] = field(default_factory=list)    # Mount or (src, dst, read_only)
    cpu_quota: int | None = None                       # µs per period
    cpu_period: int | None = None
    cpu_shares: int | None = None
    memory_limit: int | None = None                    # bytes
    pids_limit: int | None = None
    readonly_rootfs: bool = False
    capabilities_add: list[str] = field(default_factory=list)
    capabilities_drop: list[str] = field(default_factory=list)
    # resolved securityContext (nodeagent/security.py); None/defaults keep runc's default spec
    capabilities: list[str] | None = None              # the full set (bounding, effective, permitted)
    additional_gids: list[int] = field(default_factory=list)
    no_new_privileges: bool = True
    privileged: bool = False
    seccomp: dict | None = None                        # OCI linux.seccomp; None = unconfined
    sysctls: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    stdin: bool = False                                # conmon keeps a stdin for attach (`stdin: true`)
    tty: bool = False                                  # the process runs on a pty held by conmon (`tty: true`)


@dataclass
class ContainerState:
    status: str                      # running | created | exited | unknown
    pid: int = 0
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    oom_killed: bool = False


@dataclass
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    created_at: float
    state: ContainerState
    log_path: str
    bundle: str
