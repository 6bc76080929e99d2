"""Baseline: a bare ``runc run`` of a busybox rootfs, from start to the exit of ``true``.

This is the floor under any pod start: no conmon, no overlayfs, no pod
network (a fresh empty netns per run), no agent.  ``bench/pod_start.py`` can
compare its numbers with ``measure_bare_runc(n)`` (one after another) and
``measure_bare_runc_burst(n)`` (n at once: the machine's limit for a burst).

Each run uses its own container id, ``runc --root`` in a temp dir and an
absolute cgroupsPath ``/kctlbench-<hex>/<id>``; ``runc run`` deletes the
container (and its leaf cgroups) when ``true`` exits; the parent cgroup dirs
are removed in every hierarchy at the end.  Needs root.

    python -m bench.runc_raw [N]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

RUNC = shutil.which("runc") or "/usr/sbin/runc"


def build_busybox_rootfs(root: Path) -> Path:
    """bin/busybox + applet symlinks + minimal etc (a single image layer)."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        link = root / "bin" / a
        if a != "busybox" and not link.exists():
            link.symlink_to("/bin/busybox")
    for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
        (root / d).mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def _percentile(sorted_vals: list[float], q: float) -> float:
    idx = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[idx]


def measure_bare_runc(n: int = 20, rootfs: str | os.PathLike | None = None, seccomp: dict | None = None) -> dict:
    """Run ``runc run`` of ``true`` n times; return latency stats in milliseconds.  ``seccomp``: an
    OCI linux.seccomp the container gets (e.g. nodeagent.seccomp.runtime_default(...), which the
    node agent gives every container that names no profile), None: none."""
    from nodeagent.ocispec import build_spec  # the exact spec the runtime uses
    from nodeagent.runtime import ContainerConfig

    parent = f"kctlbench-{uuid.uuid4().hex[:6]}"
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kctlbench-") as tmp:
        tmp_path = Path(tmp)
        rfs = Path(rootfs) if rootfs else build_busybox_rootfs(tmp_path / "rootfs")
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        state = tmp_path / "state"
        try:
            for i in range(n):
                cid = f"{parent}-{i}"
                cfg = ContainerConfig(id=cid, name=cid, rootfs=str(rfs), args=["true"],
                                      readonly_rootfs=True, seccomp=seccomp)
                spec = build_spec(cfg, str(rfs), f"/{parent}/{cid}")
                (bundle / "config.json").write_text(json.dumps(spec))
                t0 = time.perf_counter()
                r = subprocess.run([RUNC, "--root", str(state), "run", "--bundle", str(bundle), cid],
                                   stdin=subprocess.DEVNULL, capture_output=True)
                times.append((time.perf_counter() - t0) * 1000)
                if r.returncode != 0:
                    raise RuntimeError(f"runc run failed ({r.returncode}): {r.stderr.decode()}")
        finally:
            _remove_cgroup_parent(parent)
    return _stats(times)


def measure_bare_runc_burst(n: int = 30, seccomp: dict | None = None) -> dict:
    """Start n ``runc run`` of ``true`` at once (own bundle each); containers per second from the
    first start to the last exit: the machine's own limit for a burst of pods on one node.
    ``seccomp`` as for measure_bare_runc."""
    from nodeagent.ocispec import build_spec
    from nodeagent.runtime import ContainerConfig

    parent = f"kctlbench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="kctlbench-") as tmp:
        tmp_path = Path(tmp)
        rfs = build_busybox_rootfs(tmp_path / "rootfs")
        procs = []
        try:
            for i in range(n):
                cid = f"{parent}-{i}"
                cfg = ContainerConfig(id=cid, name=cid, rootfs=str(rfs), args=["true"], readonly_rootfs=True,
                                      seccomp=seccomp)
                (tmp_path / cid).mkdir()
                (tmp_path / cid / "config.json").write_text(json.dumps(build_spec(cfg, str(rfs), f"/{parent}/{cid}")))
            t0 = time.perf_counter()
            for i in range(n):
                procs.append(subprocess.Popen([RUNC, "--root", str(tmp_path / "state"), "run", "--bundle",
                                               str(tmp_path / f"{parent}-{i}"), f"{parent}-{i}"],
                                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE))
            failed = [p.stderr.read().decode() for p in procs if p.wait() != 0]
            elapsed = time.perf_counter() - t0
            if failed:
                raise RuntimeError(f"runc run failed: {failed[0]}")
        finally:
            for p in procs:
                p.stderr.close()
            _remove_cgroup_parent(parent)
    return {"n": n, "elapsed_s": round(elapsed, 3), "per_s": round(n / elapsed, 1)}


def _remove_cgroup_parent(parent: str) -> None:
    for h in Path("/sys/fs/cgroup").iterdir():
        if h.is_dir() and not h.is_symlink() and (h / parent).is_dir():
            for child in (h / parent).iterdir():
                if child.is_dir():
                    try:
                        child.rmdir()
                    except OSError:
                        pass
            try:
                (h / parent).rmdir()
            except OSError:
                pass


def _stats(times: list[float]) -> dict:
    n = len(times)
    s = sorted(times)
    return {"n": n, "p50_ms": round(_percentile(s, 0.5), 2), "p99_ms": round(_percentile(s, 0.99), 2),
            "mean_ms": round(sum(s) / len(s), 2), "min_ms": round(s[0], 2),
            "max_ms": round(s[-1], 2)}


if __name__ == "__main__":
    print(json.dumps(measure_bare_runc(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
