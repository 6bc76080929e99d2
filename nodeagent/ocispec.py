"""OCI runtime config.json generation for kctl containers.

The starting point is exactly what ``runc spec`` 1.1.5 generates (captured in
``_runc_default_spec``): the small default capability set (AUDIT_WRITE, KILL,
NET_BIND_SERVICE), masked and read-only /proc and /sys paths, noNewPrivileges,
a read-only /sys and /sys/fs/cgroup, and "deny all devices" (runc appends its
own allow-list of /dev/null, /dev/zero, … after the spec's rules).  We only
change what a pod needs:

* ``terminal`` false: stdout/stderr go to conmon, which writes the CRI log
  (true for a ``tty: true`` container: conmon then holds the pty master);
* args, env, cwd, user, hostname from the ContainerConfig;
* namespaces: own pid, ipc, uts, mount; the network namespace is *joined* by
  path (the pod sandbox netns), or a fresh isolated one if no path is given;
* bind mounts (emptyDir, hostPath, /etc/hosts & co.) appended after the
  default mounts so they win;
* resources: cpu quota/period/shares, memory limit (swap = limit, i.e. no swap,
  so the limit really kills), optional pids limit;
* an absolute ``cgroupsPath`` (``/PARENT/ID``) so the runtime knows where the
  container's cgroup directories live in every hierarchy and can remove them;
* the securityContext as nodeagent/security.py resolved it: user, group and
  additional gids, the capability set (bounding/effective/permitted; none
  ambient, as containerd), noNewPrivileges, a read-only root, the seccomp
  profile, sysctls, and for a privileged container every host device,
  writable /sys and cgroups and no masked or read-only /proc paths.
  A ContainerConfig that says nothing keeps runc's defaults above.
"""

from __future__ import annotations

import copy
import os
import stat
from typing import Any

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

_runc_default_spec: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [DEFAULT_PATH],
        "cwd": "/",
        "capabilities": {k: list(DEFAULT_CAPS)
                         for k in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": False},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                       {"type": "uts"}, {"type": "mount"}],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    },
}


def parse_user(user: Any) -> tuple[int, int]:
    """Accept None, an int uid, (uid, gid) or "uid[:gid]"."""
    if user is None or user == "":
        return 0, 0
    if isinstance(user, int):
        return user, user
    if isinstance(user, (tuple, list)):
        return int(user[0]), int(user[1])
    uid, _, gid = str(user).partition(":")
    return int(uid), int(gid or uid)


def build_spec(cfg: Any, rootfs: str, cgroups_path: str) -> dict[str, Any]:
    """Return the config.json dict for ContainerConfig ``cfg`` (see runtime.py)."""
    spec = copy.deepcopy(_runc_default_spec)
    proc = spec["process"]
    proc["args"] = list(cfg.args)
    proc["terminal"] = bool(getattr(cfg, "tty", False))
    env = list(cfg.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    if cfg.hostname and not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={cfg.hostname}")
    proc["env"] = env
    proc["cwd"] = cfg.cwd or "/"
    uid, gid = parse_user(cfg.user)
    proc["user"] = {"uid": uid, "gid": gid}
    if getattr(cfg, "additional_gids", None):
        proc["user"]["additionalGids"] = [int(g) for g in cfg.additional_gids]
    proc["noNewPrivileges"] = bool(getattr(cfg, "no_new_privileges", True))
    if getattr(cfg, "capabilities", None) is not None:
        proc["capabilities"] = {k: list(cfg.capabilities) for k in ("bounding", "effective", "permitted")}
    elif cfg.capabilities_add or cfg.capabilities_drop:
        caps = [c for c in DEFAULT_CAPS + list(cfg.capabilities_add)
                if c not in cfg.capabilities_drop]
        caps = list(dict.fromkeys(caps))
        proc["capabilities"] = {k: list(caps)
                                for k in ("bounding", "effective", "permitted", "ambient")}
    spec["root"] = {"path": rootfs, "readonly": bool(cfg.readonly_rootfs)}
    spec["hostname"] = cfg.hostname or cfg.name or cfg.id[:12]

    for m in cfg.mounts:
        src, dst, ro = (m.source, m.destination, m.read_only) if hasattr(m, "source") else m
        spec["mounts"].append({"destination": dst, "type": "bind", "source": str(src),
                               "options": ["rbind", "rprivate", "ro" if ro else "rw"]})

    linux = spec["linux"]
    for ns in linux["namespaces"]:
        if ns["type"] == "network" and cfg.netns_path:
            ns["path"] = cfg.netns_path
    linux["cgroupsPath"] = cgroups_path
    _security(spec, cfg)
    res = linux["resources"]
    cpu: dict[str, int] = {}
    if cfg.cpu_quota:
        cpu["quota"] = int(cfg.cpu_quota)
        cpu["period"] = int(cfg.cpu_period or 100_000)
    if cfg.cpu_shares:
        cpu["shares"] = int(cfg.cpu_shares)
    if cpu:
        res["cpu"] = cpu
    if cfg.memory_limit:
        res["memory"] = {"limit": int(cfg.memory_limit), "swap": int(cfg.memory_limit)}
    if cfg.pids_limit:
        res["pids"] = {"limit": int(cfg.pids_limit)}
    spec["annotations"] = {f"io.kctl.label.{k}": str(v) for k, v in cfg.labels.items()}
    spec["annotations"]["io.kctl.container.name"] = cfg.name
    return spec


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Every character and block device under /dev, as OCI linux.devices (containerd's
    HostDevices for privileged containers; pts, shm and mqueue are the container's own)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in
                   (f"{root}/pts", f"{root}/shm", f"{root}/mqueue", f"{root}/.lxc", f"{root}/.udev")]
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out


def _security(spec: dict[str, Any], cfg: Any) -> None:
    """seccomp, sysctls and privileged mode (nodeagent/security.py decides them)."""
    linux = spec["linux"]
    if getattr(cfg, "seccomp", None):
        linux["seccomp"] = cfg.seccomp
    if getattr(cfg, "sysctls", None):
        linux["sysctl"] = dict(cfg.sysctls)
    if not getattr(cfg, "privileged", False):
        return
    linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    linux["devices"] = host_devices()
    linux.pop("maskedPaths", None)
    linux.pop("readonlyPaths", None)
    for m in spec["mounts"]:
        if m["destination"] in ("/sys", "/sys/fs/cgroup"):
            m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
