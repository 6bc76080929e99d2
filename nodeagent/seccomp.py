"""Seccomp profiles for the OCI spec: RuntimeDefault, Localhost, Unconfined.

RuntimeDefault is nodeagent/seccomp_default.json: the default profile moby
and containerd ship (allow ~350 syscalls, refuse the rest with EPERM; the
namespace, mount, module, clock and tracing syscalls only for containers
that hold the capability that guards them — so `unshare -U` fails in a
container without CAP_SYS_ADMIN). It is written in Docker's conditional
format and resolved here per container as moby's `setupSeccomp` does:
a rule applies when the container holds every capability in
`includes.caps`, the node's architecture is in `includes.arches` and its
kernel is at least `includes.minKernel`, and when it holds none of
`excludes.caps` and runs on none of `excludes.arches`. The result is the
OCI `linux.seccomp` object runc loads.

Localhost profiles are files under the agent's seccomp root
(`<root-dir>/seccomp`, the kubelet's `<root-dir>/seccomp`), named by the
relative `localhostProfile`; they may be written in either format.

One departure from moby's resolution, for speed: runc compiles the filter
with libseccomp at every container start, and x32's share of that is ~4-5 ms
of CPU per container here (bench/README.md).  On x86_64 a profile's archMap
adds x86 and x32; when this kernel has no x32 ABI (`CONFIG_X86_X32_ABI`
unset, or Debian's `syscall.x32=n`), x32 is left out: no x32 program can
run on such a kernel anyway.  The one difference a container can see: an x32
system call (number | 0x40000000) from a 64-bit program is then refused by
the filter (SIGSYS) where the kernel would have answered ENOSYS.  Profiles
that list `architectures` themselves are used as written.
"""
from __future__ import annotations

import copy
import ctypes
import functools
import json
import os
import platform
import re

from nodeagent.errors import ContainerConfigError

DEFAULT_PROFILE = os.path.join(os.path.dirname(__file__), "seccomp_default.json")
# Go's GOARCH names (the profile's `arches`) by `uname -m`
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}
# the seccomp architectures of the native one (the profile's archMap keys)
NATIVE_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X",
               "riscv64": "SCMP_ARCH_RISCV64", "mips64": "SCMP_ARCH_MIPS64"}


def _kernel() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


X32_SYSCALL_BIT = 0x40000000
X32_GETPID = X32_SYSCALL_BIT + 39


@functools.lru_cache(maxsize=1)
def kernel_has_x32() -> bool:
    """Whether this kernel runs x32 system calls: x32's getpid from this (64-bit) process
    answers our PID, or fails with ENOSYS on a kernel without the x32 ABI."""
    if platform.machine() != "x86_64":
        return False
    return ctypes.CDLL(None, use_errno=True).syscall(X32_GETPID) == os.getpid()


@functools.lru_cache(maxsize=1)
def _default_profile() -> dict:
    with open(DEFAULT_PROFILE) as f:
        return json.load(f)


def _applies(rule: dict, caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("minKernel") and kernel < _version(inc["minKernel"]):
        return False
    if set(exc.get("caps") or ()) & caps or arch in (exc.get("arches") or ()):
        return False
    return True


def resolve(profile: dict, caps: list[str], machine: str | None = None,
            kernel: tuple[int, int] | None = None, x32: bool | None = None) -> dict:
    """The OCI linux.seccomp object of a (Docker- or OCI-format) profile for a container
    holding `caps`, on this node's architecture and kernel (`x32`: whether that kernel runs
    x32 system calls; default: this kernel's answer)."""
    x32 = kernel_has_x32() if x32 is None else x32
    machine = machine or platform.machine()
    kernel = kernel or _kernel()
    arch, held = GOARCH.get(machine, machine), set(caps)
    out = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    elif profile.get("archMap"):
        native = NATIVE_ARCH.get(machine, "")
        for entry in profile["archMap"]:
            if entry["architecture"] == native:
                out["architectures"] = [native, *(a for a in entry.get("subArchitectures") or ()
                                                  if x32 or a != "SCMP_ARCH_X32")]
    rules = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, held, arch, kernel):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        oci = {"names": list(names), "action": rule["action"]}
        for key in ("errnoRet", "args"):
            if rule.get(key) is not None:
                oci[key] = copy.deepcopy(rule[key])
        rules.append(oci)
    out["syscalls"] = rules
    return out


def runtime_default(caps: list[str]) -> dict:
    """RuntimeDefault for a container holding caps (shared between containers: do not change it)."""
    return _runtime_default(tuple(caps))


@functools.lru_cache(maxsize=64)
def _runtime_default(caps: tuple[str, ...]) -> dict:
    return resolve(_default_profile(), list(caps))


def localhost(root: str, name: str, caps: list[str]) -> dict:
    """The profile file `name` under the seccomp root (a relative, descending path)."""
    path = os.path.normpath(os.path.join(root, name))
    if os.path.isabs(name) or not path.startswith(os.path.normpath(root) + os.sep):
        raise ContainerConfigError(f"seccomp profile {name!r} must be a relative path inside {root}")
    try:
        with open(path) as f:
            profile = json.load(f)
    except (OSError, ValueError) as exc:
        raise ContainerConfigError(f"failed to load seccomp profile {path!r}: {exc}") from exc
    if "defaultAction" not in profile:
        raise ContainerConfigError(f"seccomp profile {path!r} has no defaultAction")
    return resolve(profile, caps)
