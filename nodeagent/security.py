"""A container's securityContext, resolved the way the kubelet and containerd's
CRI plugin do, into the ContainerConfig fields the OCI spec is built from.

* Container fields override pod fields (runAsUser, runAsGroup,
  runAsNonRoot, seccompProfile: the kubelet's
  DetermineEffectiveSecurityContext).
* User: runAsUser, else the image's `User` (`uid`, `name`, `uid:gid`,
  `name:group`, resolved in the image's /etc/passwd and /etc/group); the
  group is runAsGroup, else the image's, else the user's passwd group,
  else 0. Additional groups: the user's groups in /etc/group,
  supplementalGroups and fsGroup.
* runAsNonRoot: refused at container start with the kubelet's messages
  (ContainerConfigError, reason CreateContainerConfigError) when the
  effective user is root, or a user name that cannot be verified.
* Capabilities: containerd's default set when nothing is said; `add: [ALL]`
  grants every capability the agent holds, `drop: [ALL]` removes all, then
  the named adds and drops (with or without the `CAP_` prefix).
* noNewPrivileges exactly when allowPrivilegeEscalation is false (API
  validation refuses false together with privileged or CAP_SYS_ADMIN).
* privileged: every capability, every host device, writable /sys and
  cgroups, no masked paths, no seccomp.
* seccomp: the container's or pod's profile; without one RuntimeDefault
  (like the kubelet's --seccomp-default), unless the agent runs with
  --seccomp-default=false, then Unconfined (nodeagent/seccomp.py).
* sysctls: Kubernetes' safe set, plus what the agent allows with
  --allowed-unsafe-sysctls (names or `prefix*`); others are refused with the
  kubelet's `forbidden sysctl: "x" not allowlisted`.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

from machinery.pb import core_pb2
from nodeagent import seccomp
from nodeagent.errors import ContainerConfigError

# containerd's default capability set (pkg/oci defaultUnixCaps / the CRI plugin's default)
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
                "CAP_KILL", "CAP_AUDIT_WRITE"]
# every capability, in kernel order (capability.h); ALL is the ones in the agent's bounding set
LINUX_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
              "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
              "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
              "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
              "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
              "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
              "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
              "CAP_CHECKPOINT_RESTORE"]
# the kubelet's safe sysctls (pkg/kubelet/sysctl/safe_sysctls.go)
SAFE_SYSCTLS = ("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")


@dataclass
class Options:
    """The node agent's flags about container security."""
    seccomp_default: bool = True                 # RuntimeDefault for containers that name no profile
    seccomp_root: str = "/var/lib/kctl/seccomp"  # Localhost profiles live here (<root-dir>/seccomp)
    allowed_unsafe_sysctls: list[str] = field(default_factory=list)


def all_caps() -> list[str]:
    """Every capability the agent itself may grant: its bounding set (containerd's cap.Current())."""
    try:
        with open("/proc/self/status") as f:
            bits = int(next(line.split()[1] for line in f if line.startswith("CapBnd:")), 16)
    except (OSError, ValueError, StopIteration):
        return list(LINUX_CAPS)
    return [c for i, c in enumerate(LINUX_CAPS) if bits >> i & 1]


def _effective(pod: core_pb2.Pod, c: core_pb2.Container, name: str):
    """The container's securityContext.name if set, else the pod's, else None."""
    for holder in (c, pod.spec):
        if holder.HasField("security_context") and holder.security_context.HasField(name):
            return getattr(holder.security_context, name)
    return None


def capabilities(sc: core_pb2.SecurityContext) -> list[str]:
    """containerd's WithCapabilities: ALL first, then the named adds and drops."""
    add = ["CAP_" + a.upper().removeprefix("CAP_") for a in sc.capabilities.add]
    drop = ["CAP_" + d.upper().removeprefix("CAP_") for d in sc.capabilities.drop]
    caps = list(DEFAULT_CAPS)
    if "CAP_ALL" in add:
        caps = all_caps()
    if "CAP_ALL" in drop:
        caps = []
    caps += [a for a in add if a != "CAP_ALL" and a not in caps]
    return [cap for cap in caps if cap not in drop]


# ------------------------------------------------------------------ users

def _read_db(lowerdirs: list[str], name: str) -> list[list[str]]:
    """The entries of the image's /etc/<name> (the topmost layer that has it)."""
    for layer in lowerdirs:
        path = os.path.join(layer, "etc", name)
        if os.path.isfile(path) and not os.path.islink(path):
            try:
                with open(path, errors="replace") as f:
                    return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
            except OSError:
                return []
    return []


def _lookup(entries: list[list[str]], key: str) -> list[str] | None:
    for e in entries:
        if len(e) >= 4 and (e[0] == key or e[2] == key):
            return e
    return None


def resolve_user(image_user: str, lowerdirs: list[str]) -> tuple[int | None, int | None, str]:
    """(uid, gid, username) of an image's `User`; uid None when it is a name not in /etc/passwd."""
    user, _, group = (image_user or "").partition(":")
    passwd = _read_db(lowerdirs, "passwd")
    entry = _lookup(passwd, user) if user else None
    if not user:
        uid, name = 0, "root"
    elif user.isdigit():
        uid, name = int(user), entry[0] if entry else ""
    elif entry is not None:
        uid, name = int(entry[2]), user
    else:
        return None, None, user
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    if group:
        gentry = _lookup(_read_db(lowerdirs, "group"), group)
        gid = int(group) if group.isdigit() else int(gentry[2]) if gentry else gid
    return uid, gid, name


def _member_groups(lowerdirs: list[str], name: str) -> list[int]:
    if not name:
        return []
    return [int(e[2]) for e in _read_db(lowerdirs, "group")
            if len(e) >= 4 and e[2].isdigit() and name in e[3].split(",")]


def check_non_root(pod: core_pb2.Pod, c: core_pb2.Container, uid: int | None, username: str) -> None:
    """The kubelet's verifyRunAsNonRoot."""
    if not _effective(pod, c, "run_as_non_root"):
        return
    who = f'(pod: "{pod.metadata.name}_{pod.metadata.namespace}({pod.metadata.uid})", container: {c.name})'
    run_as = _effective(pod, c, "run_as_user")
    if run_as is not None:
        if run_as == 0:
            raise ContainerConfigError(f"container's runAsUser breaks non-root policy {who}")
        return
    if uid == 0:
        raise ContainerConfigError(f"container has runAsNonRoot and image will run as root {who}")
    if uid is None:
        raise ContainerConfigError(f"container has runAsNonRoot and image has non-numeric user ({username}), "
                                   f"cannot verify user is non-root {who}")


# ------------------------------------------------------------------ sysctls

def sysctls(pod: core_pb2.Pod, options: Options) -> dict[str, str]:
    out = {}
    for s in pod.spec.security_context.sysctls:
        name = s.name.replace("/", ".")
        if name not in SAFE_SYSCTLS and not any(fnmatch.fnmatchcase(name, p) for p in options.allowed_unsafe_sysctls):
            raise ContainerConfigError(f'forbidden sysctl: "{s.name}" not allowlisted')
        out[name] = s.value
    return out


# ------------------------------------------------------------------ all of it

def seccomp_profile(pod, c, caps: list[str], privileged: bool, options: Options) -> dict | None:
    if privileged:
        return None
    sp = _effective(pod, c, "seccomp_profile")
    kind = sp.type if sp is not None else ("RuntimeDefault" if options.seccomp_default else "Unconfined")
    if kind == "RuntimeDefault":
        return seccomp.runtime_default(caps)
    if kind == "Localhost":
        return seccomp.localhost(options.seccomp_root, sp.localhost_profile, caps)
    return None


def config(pod: core_pb2.Pod, c: core_pb2.Container, image_user: str, lowerdirs: list[str],
           options: Options | None = None) -> dict:
    """The ContainerConfig fields for container c of pod (raises ContainerConfigError)."""
    options = options or Options()
    sc = c.security_context
    privileged = sc.HasField("privileged") and sc.privileged
    run_as_user, run_as_group = _effective(pod, c, "run_as_user"), _effective(pod, c, "run_as_group")
    uid, gid, name = resolve_user(image_user, lowerdirs)
    if run_as_user is not None:
        entry = _lookup(_read_db(lowerdirs, "passwd"), str(run_as_user))
        uid, name = run_as_user, entry[0] if entry else ""
        gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    check_non_root(pod, c, uid, name)
    if uid is None:
        raise ContainerConfigError(f'unable to find user {name}: no matching entries in passwd file')
    if run_as_group is not None:
        gid = run_as_group
    psc = pod.spec.security_context
    extra = [gid, *_member_groups(lowerdirs, name), *psc.supplemental_groups]
    if psc.HasField("fs_group"):
        extra.append(psc.fs_group)
    caps = all_caps() if privileged else capabilities(sc)
    return {
        "user": (uid, gid),
        "additional_gids": list(dict.fromkeys(extra)),
        "capabilities": caps,
        "no_new_privileges": sc.HasField("allow_privilege_escalation") and not sc.allow_privilege_escalation,
        "readonly_rootfs": sc.HasField("read_only_root_filesystem") and sc.read_only_root_filesystem,
        "privileged": privileged,
        "seccomp": seccomp_profile(pod, c, caps, privileged, options),
        "sysctls": sysctls(pod, options),
    }
