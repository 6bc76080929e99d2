"""The offline Vagrant lab's cycle: up, status, kill-node, down (and vagrant itself).

`up` = the cached box (box.py), libvirt running (host.start_daemons), no
forwarding libvirt network active (host.preflight), the isolated networks and
the storage pool defined (host.define_networks/define_pool), then
`vagrant up --provider=libvirt` on deploy/vagrant/Vagrantfile with
KCTL_OFFLINE=1. Vagrant's own state stays out of the checkout and out of
~/.vagrant.d: VAGRANT_DOTFILE_PATH is STATE/dot, VAGRANT_HOME is
CACHE/vagrant.d (where `vagrant up` adds the built box). `vagrant` runs any
vagrant command with that environment (`vagrant ssh cp -c ...`).

`up --control-planes 3` brings up an HA control plane (cp1..cp3, see the
Vagrantfile). The Vagrantfile defines only the machines its KCTL_WORKERS and
KCTL_CONTROL_PLANES name, so `up` records both in STATE/dot/kctl-layout.json
and every later vagrant command (`status`, `down`'s `vagrant destroy`,
`vagrant ssh cp3`) runs with them: all VMs of the lab, whatever the caller's
environment says.

`down` works after anything, a crashed or interrupted run included: it
starts libvirt if needed, `vagrant destroy -f`, then host.cleanup removes
whatever is left (domains, networks, pool and box volume, LIBVIRT_* chains)
and stops the daemons `up` started.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from deploy.vagrant import box, host
from machinery.errors import ConfigError, HostError

HERE = Path(__file__).resolve().parent
PKI_DIR = host.STATE / "dot" / "kctl-pki"     # the Vagrantfile's default under VAGRANT_DOTFILE_PATH; `down` removes it
LAYOUT = host.STATE / "dot" / "kctl-layout.json"   # {"workers": N, "control_planes": M} of the last `up`
HOST_TOOLS = ("vagrant", "virsh", "libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img", "rsync", "ssh")


def check_control_planes(n: int) -> int:
    if n != 1 and not (n % 2 and 3 <= n <= 9):
        raise ConfigError(f"--control-planes: 1 or an odd number from 3 to 9 (etcd's quorum), not {n}")
    return n


def machines(workers: int, control_planes: int = 1) -> list[str]:
    """The Vagrantfile's machine names: cp (or cp1..cpN), worker1..workerN."""
    cps = ["cp"] if control_planes == 1 else [f"cp{i}" for i in range(1, control_planes + 1)]
    return cps + [f"worker{i}" for i in range(1, workers + 1)]


def layout() -> dict[str, int]:
    """The workers and control planes of the last `up` ({} when there is none)."""
    try:
        return {k: int(v) for k, v in json.loads(LAYOUT.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def vagrant_env(workers: int | None = None, control_planes: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KCTL_OFFLINE="1", VAGRANT_CWD=str(HERE), VAGRANT_DOTFILE_PATH=str(host.STATE / "dot"),
               VAGRANT_HOME=str(box.CACHE / "vagrant.d"), VAGRANT_DEFAULT_PROVIDER="libvirt",
               VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_NO_COLOR="1", KCTL_VAGRANT_CACHE=str(box.CACHE))
    saved = layout()
    for var, value in (("KCTL_WORKERS", workers if workers is not None else saved.get("workers")),
                       ("KCTL_CONTROL_PLANES",
                        control_planes if control_planes is not None else saved.get("control_planes"))):
        if value is not None:
            env[var] = str(value)
    return env


def vagrant(*args, workers: int | None = None, control_planes: int | None = None, check: bool = True,
            timeout: float | None = None, capture: bool = False, log=None) -> subprocess.CompletedProcess:
    """Run vagrant with the lab's environment (the layout of the last `up` unless given).
    With `log`, its output goes line by line to log() and to STATE/vagrant.log (progress
    bars dropped), else to this terminal."""
    cmd = ["vagrant", *args]
    env = vagrant_env(workers, control_planes)
    try:
        if log is None:
            res = subprocess.run(cmd, env=env, cwd=HERE, timeout=timeout, capture_output=capture, text=True)
        else:
            res = _logged(cmd, env, timeout, log)
    except FileNotFoundError as exc:
        raise HostError("vagrant not found: run deploy/vagrant/install-host.sh") from exc
    if check and res.returncode != 0:
        raise HostError(f"vagrant {' '.join(args)} failed (exit {res.returncode}, see {host.STATE / 'vagrant.log'});"
                        " clean up with `down`")
    return res


def _logged(cmd, env, timeout, log) -> subprocess.CompletedProcess:
    deadline = None if timeout is None else time.monotonic() + timeout
    with open(host.STATE / "vagrant.log", "a") as out, \
            subprocess.Popen(cmd, env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) as proc:
        out.write(f"$ {' '.join(cmd)}\n")
        for line in proc.stdout:
            line = line.rstrip("\n").rsplit("\r", 1)[-1].replace("\x1b[K", "")
            if line and not line.startswith("Progress:"):
                out.write(line + "\n")
                out.flush()
                log(line)
            if deadline and time.monotonic() > deadline:
                proc.kill()
        rc = proc.wait()
    return subprocess.CompletedProcess(cmd, rc)


def missing_host_tools() -> list[str]:
    missing = [t for t in HOST_TOOLS if not shutil.which(t)]
    plugins = Path("/usr/share/vagrant-plugins/plugins.d")
    if shutil.which("vagrant") and not (plugins.is_dir() and any("libvirt" in p.name for p in plugins.iterdir())):
        missing.append("vagrant-libvirt")
    return missing


def cannot_run_reason(env=os.environ) -> str | None:
    """Why this machine cannot run the lab's VMs (None: it can)."""
    if env.get("KCTL_VAGRANT_TEST", "1") == "0":
        return "turned off with KCTL_VAGRANT_TEST=0 (it boots 3 QEMU TCG VMs for about 10-25 minutes)"
    if os.geteuid() != 0:
        return "not root (libvirt's system instance, networks and iptables need root)"
    missing = missing_host_tools() + [t for t in box.TOOLS if not shutil.which(t) and t not in HOST_TOOLS]
    if missing:
        return f"missing {', '.join(missing)} (deploy/vagrant/install-host.sh installs them)"
    try:
        avail_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                             if line.startswith("MemAvailable:")))
    except (OSError, StopIteration, ValueError):
        avail_kib = 0
    if avail_kib < 5 << 20:
        return f"{avail_kib >> 10} MiB of memory available, the lab needs 5 GiB (3 VMs of 1 GiB + QEMU)"
    return None


def up(workers: int = 2, log=print, *, control_planes: int = 1) -> dict[str, float]:
    """Bring the lab up (`control_planes` 3: an HA control plane); the seconds each phase took."""
    check_control_planes(control_planes)
    missing = missing_host_tools()
    if missing:
        raise HostError(f"missing {', '.join(missing)}: run deploy/vagrant/install-host.sh")
    times = {}
    t0 = time.monotonic()
    built = box.ensure_box(log)
    times["box"] = time.monotonic() - t0
    host.STATE.mkdir(parents=True, exist_ok=True)
    (host.STATE / "vagrant.log").unlink(missing_ok=True)
    t0 = time.monotonic()
    started = host.start_daemons()
    if started:
        log(f"started {', '.join(Path(s).stem for s in started)}")
    host.preflight()
    host.define_networks(host.Subnets.from_env())
    host.define_pool()
    times["libvirt"] = time.monotonic() - t0
    log(f"box {built.name}; networks {host.MGMT_NET}, {host.CLUSTER_NET} (isolated); "
        f"vagrant up {' '.join(machines(workers, control_planes))}")
    LAYOUT.parent.mkdir(parents=True, exist_ok=True)
    LAYOUT.write_text(json.dumps({"workers": workers, "control_planes": control_planes}))
    t0 = time.monotonic()
    vagrant("up", "--provider=libvirt", log=log)
    times["vagrant_up"] = time.monotonic() - t0
    return times


def status(log=print) -> None:
    saved = layout()
    if saved:
        log(f"lab: {' '.join(machines(saved.get('workers', 2), saved.get('control_planes', 1)))}")
    vagrant("status", check=False)
    if not host.libvirt_up():
        log("libvirt is not running")
        return
    for dom in host.domains():
        log(f"domain  {dom}: {host.virsh('domstate', dom, check=False).strip()}")
    for net in host.networks():
        log(f"network {net}: {'active' if net in host.active_networks() else 'inactive'}")


def down(log=print) -> float:
    t0 = time.monotonic()
    if shutil.which("virsh") and shutil.which("libvirtd"):
        host.STATE.mkdir(parents=True, exist_ok=True)
        host.start_daemons()   # a crashed run may have left domains defined: libvirt removes them
        if (host.STATE / "dot").is_dir():
            vagrant("destroy", "-f", check=False, timeout=600, log=log)
    host.cleanup(log)
    shutil.rmtree(host.STATE / "dot", ignore_errors=True)
    return time.monotonic() - t0
