"""`lab_down(name)`: remove every trace of a lab, idempotently, after a crash.

Works from the lab *name* alone; the state file only adds recorded PIDs.
Every step tolerates things that are already gone, so it can run twice, or
after a `build()` that died half way, or after SIGKILLed components. Order:

1. Recorded processes: TERM, bounded wait, KILL (start time checked); the
   lab's supervisor first and alone, so it restarts nothing that is killed
   after it (it stops its own units on TERM).
2. Sweep (SIGKILL, repeated until empty, bounded) every process whose network
   namespace is one of the lab's -- netns files ``/var/run/netns/<prefix>*``
   and nsfs bind mounts under the lab's directories -- or whose cgroup is
   under ``/kctl-lab/<lab>`` in any hierarchy. That catches conmon and
   containers of node agents, which are not our children.
3. Unmount everything under the lab's state and data dirs and the lab's
   netns files, deepest first (lazy unmount as a last resort).
4. Delete the netns files (the kernel then frees the namespaces with their
   bridge, veths and iptables rules).
5. Delete links named ``<prefix>*`` in the root namespace.
6. Delete iptables chains named ``<prefix>*`` in the root namespace (the lab
   itself creates none there; this guards against components that did).
7. Remove cgroup directories under ``/kctl-lab/<lab>``, deepest first.
8. Remove the state and data dirs -- only if no mount is left below them, so
   a stuck bind mount never makes us delete someone else's files.

Problems that remain are collected and raised as one LabError at the end,
after every step had its chance.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shlex
import shutil
import subprocess

from deploy.lab import naming
from deploy.lab.naming import NETNS_DIR, LabError
from deploy.lab.nsutil import (
    is_under, list_netns, mounts_under, netns_inode, nsfs_inodes, off_loop)
from deploy.lab.procs import cgroup_dirs, pids_in_cgroups, pids_in_netns, sweep, terminate
from deploy.lab.state import StateStore

MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def lab_down(name: str, timeout: float = 5.0) -> dict:
    """Tear down lab `name`; return what was removed. Raises LabError if
    something could not be removed (after trying everything)."""
    pfx = naming.prefix(name)
    dirs = [naming.state_dir(name), naming.data_dir(name)]
    state = StateStore(dirs[0]).load()
    report: dict = {"killed": [], "unmounted": [], "netns": [], "links": [],
                    "chains": [], "cgroups": [], "dirs": [], "errors": []}

    # 1. the supervisor first (it stops its units and restarts nothing after),
    #    then every recorded process still alive (all of them if it crashed)
    sups = [(r["pid"], r.get("start_time")) for n, r in state.get("procs", {}).items()
            if n.split("-")[0] == "supervisor" and r.get("pid")]  # supervisor[-<machine>]
    left = terminate(sups, timeout + 10.0)
    recs = list(dict.fromkeys(
        (r["pid"], r.get("start_time")) for st in (state, StateStore(dirs[0]).load())
        for r in st.get("procs", {}).values() if r.get("pid")))
    left += terminate(recs, timeout)
    report["killed"] += [p for p, _ in recs if p not in left]
    # 2. everything in the lab's namespaces and cgroups
    cgroup = naming.cgroup_parent(name)

    def find() -> list[int]:
        inodes = {netns_inode(naming.netns_path(n)) for n in list_netns(pfx)}
        inodes |= nsfs_inodes(mounts_under(dirs))
        pids = set(pids_in_netns(inodes)) | set(pids_in_cgroups(cgroup))
        report["killed"] += sorted(pids - set(report["killed"]))
        return sorted(pids)

    left += sweep(find)
    if left:
        report["errors"].append(f"processes survived SIGKILL: {sorted(set(left))}")

    # 3. mounts (state/data dirs, netns files of the lab)
    report["unmounted"] = unmount_all(dirs, netns_prefix=pfx, errors=report["errors"])
    # 4. netns files
    for ns in list_netns(pfx):
        try:
            os.unlink(naming.netns_path(ns))
            report["netns"].append(ns)
        except FileNotFoundError:
            pass
        except OSError as exc:
            report["errors"].append(f"netns {ns}: {exc}")
    # 5. root-namespace links
    report["links"] = delete_links(pfx, report["errors"])
    # 6. root-namespace iptables chains
    report["chains"] = delete_chains(pfx, report["errors"])
    # 7. cgroups
    report["cgroups"] = remove_cgroups(cgroup, report["errors"])
    # 8. directories
    for d in dirs:
        if not os.path.lexists(d):
            continue
        stuck = mounts_under([d])
        if stuck:
            report["errors"].append(f"not removing {d}: still mounted {[m['mountpoint'] for m in stuck]}")
            continue
        shutil.rmtree(d, ignore_errors=True)
        report["dirs"].append(d)
    for parent in (naming.STATE_ROOT, naming.DATA_ROOT):
        _rmdir_quiet(parent)
    if report["errors"]:
        raise LabError(f"lab down {name} incomplete: " + "; ".join(report["errors"]))
    return report


def _umount(path: str, flags: int = 0) -> int:
    if _libc.umount2(path.encode(), flags) == 0:
        return 0
    return ctypes.get_errno()


def unmount_all(dirs: list[str], netns_prefix: str | None = None,
                errors: list | None = None, rounds: int = 20) -> list[str]:
    """Unmount every mount under `dirs` (and netns files with the prefix).

    Deepest first; repeated because mounts can be stacked on one path.
    Falls back to a lazy unmount for a busy mount.
    """
    done: list[str] = []
    netns_dir = os.path.realpath(NETNS_DIR)

    def ours() -> list[dict]:
        found = mounts_under(dirs)
        if netns_prefix:
            from deploy.lab.nsutil import read_mountinfo

            found += [m for m in read_mountinfo()
                      if is_under(m["mountpoint"], netns_dir)
                      and os.path.basename(m["mountpoint"]).startswith(netns_prefix)
                      and os.path.dirname(m["mountpoint"]) == netns_dir]
        return found

    for _ in range(rounds):
        mounts = ours()
        if not mounts:
            return done
        for m in mounts:
            err = _umount(m["mountpoint"])
            if err in (errno.EBUSY,):
                err = _umount(m["mountpoint"], MNT_DETACH)
            if err == 0:
                done.append(m["mountpoint"])
            elif err not in (errno.EINVAL, errno.ENOENT) and errors is not None:
                errors.append(f"umount {m['mountpoint']}: {os.strerror(err)}")
    left = ours()
    if left and errors is not None:
        errors.append(f"mounts left: {[m['mountpoint'] for m in left]}")
    return done


@off_loop
def delete_links(pfx: str, errors: list) -> list[str]:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    removed = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            ifname = link.get("ifname") or ""
            if not ifname.startswith(pfx):
                continue
            try:
                ipr.link("del", index=link["index"])
                removed.append(ifname)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:  # vanished with its peer's netns
                    errors.append(f"link {ifname}: {exc}")
    return removed


def _iptables_variants() -> list[str]:
    """iptables-save commands whose tables may hold rules of ours."""
    out = []
    if shutil.which("iptables-nft-save"):
        out.append("iptables-nft")
    # Do not make the legacy tool load x_tables modules just to look.
    if shutil.which("iptables-legacy-save") and _nonempty("/proc/net/ip_tables_names"):
        out.append("iptables-legacy")
    if not out and shutil.which("iptables-save"):
        out.append("iptables")
    return out


def _nonempty(path: str) -> bool:
    try:
        with open(path) as f:
            return bool(f.read().strip())
    except OSError:
        return False


def delete_chains(pfx: str, errors: list) -> list[str]:
    """Delete iptables chains named <pfx>* (and jumps to them), root netns."""
    removed = []
    for tool in _iptables_variants():
        try:
            dump = subprocess.run([tool + "-save"], capture_output=True, text=True,
                                  timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{tool}-save: {exc}")
            continue
        table, chains, rules = None, {}, []
        for line in dump.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith(":") and line[1:].startswith(pfx):
                chains.setdefault(table, []).append(line[1:].split()[0])
            elif line.startswith("-A "):
                rules.append((table, line))
        for table, names in chains.items():
            ipt = lambda *a: subprocess.run([tool, "-w", "-t", table, *a],  # noqa: E731
                                            capture_output=True, text=True, timeout=30)
            for t, line in rules:
                args = shlex.split(line)
                if t == table and ("-j" in args or "-g" in args):
                    target = args[args.index("-j" if "-j" in args else "-g") + 1]
                    if target in names and not args[1].startswith(pfx):
                        ipt("-D", *args[1:])
            for c in names:
                ipt("-F", c)
            for c in names:
                res = ipt("-X", c)
                if res.returncode == 0:
                    removed.append(f"{tool}:{table}:{c}")
                else:
                    errors.append(f"{tool} -t {table} -X {c}: {res.stderr.strip()}")
    return removed


def remove_cgroups(cgroup_path: str, errors: list) -> list[str]:
    """rmdir the cgroup subtree in every hierarchy, deepest first."""
    removed = []
    for top in cgroup_dirs(cgroup_path):
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
                removed.append(dirpath)
            except FileNotFoundError:
                pass
            except OSError as exc:
                errors.append(f"cgroup {dirpath}: {exc}")
        # the shared /kctl-lab parent, if this was the last lab
        _rmdir_quiet(os.path.dirname(top))
    return removed


def _rmdir_quiet(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


__all__ = ["lab_down", "unmount_all", "delete_links", "delete_chains", "remove_cgroups"]
