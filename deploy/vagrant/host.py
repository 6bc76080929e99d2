"""The host side of the offline Vagrant lab: libvirt daemons, isolated networks, cleanup.

Hard rules kept here (and checked by tests/unit/test_vagrant_host.py):

* Every network the lab defines comes from `net-management.xml` or
  `net-cluster.xml` and is checked before `virsh net-define`: no `<forward>`
  element (libvirt's isolated mode: no NAT, no routing), DNS off, DHCP (on the
  management network only) without a router option. Guests therefore have
  no default route; traffic flows only between this host and the VMs.
* `preflight` refuses to start when any *active* libvirt network forwards
  (NAT, route, bridge, ...), and nothing here ever starts libvirt's
  `default` network (we define no autostart either).
* Daemons: with systemd as PID 1, `systemctl start virtlogd libvirtd`;
  without it (containers, this project's machines), `virtlogd -d` and
  `libvirtd -d` with pid files under STATE/run, remembered so `down` stops
  exactly what `up` started. That libvirtd runs in a mount namespace of its
  own where /dev/kvm is hidden (see _without_kvm: otherwise libvirt probes
  QEMU again on nearly every call).
* `down` removes everything the lab made, also after a crashed run: the
  domains (prefix `kctl-vagrant-`), the lab's networks, its storage pool with
  the box volume vagrant-libvirt uploaded, the daemons it started, and
  libvirt's `LIBVIRT_*` iptables chains once no libvirt network is active.

Names: domains `kctl-vagrant-<machine>`, networks `kctl-vagrant-mgmt` and
`kctl-vagrant-cluster`, pool `kctl-vagrant` (directory STATE/pool), bridges
`kctlv-mgmt` and `kctlv-cluster`.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from string import Template

from machinery.errors import ConfigError, HostError

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("KCTL_VAGRANT_STATE", "/var/lib/kctl-vagrant"))
URI = "qemu:///system"
PREFIX = "kctl-vagrant-"
POOL = "kctl-vagrant"
MGMT_NET, CLUSTER_NET = "kctl-vagrant-mgmt", "kctl-vagrant-cluster"
DAEMONS = ("virtlogd", "libvirtd")   # start order; stopped in reverse


@dataclass(frozen=True)
class Subnets:
    management: ipaddress.IPv4Network
    cluster: ipaddress.IPv4Network

    @classmethod
    def from_env(cls, env=os.environ) -> "Subnets":
        out = []
        for var, default in (("KCTL_MGMT_SUBNET", "192.168.121.0/24"), ("KCTL_SUBNET", "192.168.56.0/24")):
            try:
                out.append(ipaddress.IPv4Network(env.get(var, default)))
            except ValueError as exc:
                raise ConfigError(f"{var}: must be a network such as {default}: {exc}") from exc
        if out[0].overlaps(out[1]):
            raise ConfigError(f"KCTL_MGMT_SUBNET {out[0]} overlaps KCTL_SUBNET {out[1]}")
        return cls(*out)


def virsh(*args, check: bool = True, timeout: float = 120) -> str:
    try:
        res = subprocess.run(["virsh", "-q", "-c", URI, *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise HostError("virsh not found: run deploy/vagrant/install-host.sh") from exc
    if check and res.returncode != 0:
        raise HostError(f"virsh {' '.join(args)}: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


# ------------------------------------------------------------------ networks

def render_network(kind: str, name: str, bridge: str, net: ipaddress.IPv4Network) -> str:
    hosts = list(net.hosts())
    xml = Template((HERE / f"net-{kind}.xml").read_text()).substitute(
        name=name, bridge=bridge, host_ip=hosts[0], netmask=net.netmask,
        dhcp_start=hosts[min(99, len(hosts) - 2)], dhcp_end=hosts[-1])
    check_isolated(name, xml)
    return xml


def isolation_problems(xml: str) -> list[str]:
    """What makes a libvirt network definition not isolated (empty: isolated)."""
    root = ET.fromstring(xml)
    problems = []
    if root.find("forward") is not None:
        problems.append(f"it forwards (<forward mode='{root.find('forward').get('mode', 'nat')}'>)")
    dns = root.find("dns")
    if dns is None or dns.get("enable") != "no":
        problems.append("its DNS server is on (needs <dns enable='no'/>)")
    for opt in root.iter("option"):
        if opt.get("number") in ("3", "router"):
            problems.append("its DHCP hands out a router")
    return problems


def check_isolated(name: str, xml: str) -> None:
    problems = isolation_problems(xml)
    if problems:
        raise HostError(f"libvirt network {name}: {'; '.join(problems)}; the lab defines isolated networks only")


def active_networks() -> list[str]:
    return [n for n in virsh("net-list", "--name").split() if n]


def preflight() -> None:
    """Refuse to go on if any active libvirt network forwards traffic out of this host."""
    forwarding = [n for n in active_networks() if ET.fromstring(virsh("net-dumpxml", n)).find("forward") is not None]
    if forwarding:
        raise HostError(f"active libvirt network(s) {', '.join(forwarding)} forward traffic (NAT or routing): "
                        "the lab only runs when every libvirt network is isolated; stop them "
                        f"(virsh net-destroy {forwarding[0]}) and run again")


def host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        dest = line.split()[0]
        if dest not in ("default", "local", "broadcast", "unreachable"):
            try:
                nets.append(ipaddress.IPv4Network(dest, strict=False))
            except ValueError:
                continue
    return nets


def define_networks(subnets: Subnets) -> None:
    wanted = [("management", MGMT_NET, "kctlv-mgmt", subnets.management),
              ("cluster", CLUSTER_NET, "kctlv-cluster", subnets.cluster)]
    defined = virsh("net-list", "--all", "--name").split()
    ours = {"kctlv-mgmt", "kctlv-cluster"}
    for kind, name, bridge, net in wanted:
        if name not in defined:
            clash = [r for r in host_routes() if r.overlaps(net) and not _route_is_ours(r, ours)]
            if clash:
                raise HostError(f"the {kind} network {net} overlaps this host's route {clash[0]}: "
                                f"choose another ({'KCTL_MGMT_SUBNET' if kind == 'management' else 'KCTL_SUBNET'})")
            path = STATE / f"net-{kind}.xml"
            path.write_text(render_network(kind, name, bridge, net))
            virsh("net-define", str(path))
        else:
            check_isolated(name, virsh("net-dumpxml", name))
        if name not in active_networks():
            virsh("net-start", name)


def _route_is_ours(route, bridges) -> bool:
    out = subprocess.run(["ip", "-4", "-o", "route", "show", str(route)], capture_output=True, text=True).stdout
    return any(f"dev {b} " in out for b in bridges)


def define_pool() -> None:
    if POOL in virsh("pool-list", "--all", "--name").split():
        if POOL not in virsh("pool-list", "--name").split():
            virsh("pool-start", POOL)
        return
    (STATE / "pool").mkdir(parents=True, exist_ok=True)
    virsh("pool-define-as", POOL, "dir", "--target", str(STATE / "pool"))
    virsh("pool-start", POOL)


# ------------------------------------------------------------------ daemons

def libvirt_up() -> bool:
    try:
        return subprocess.run(["virsh", "-c", URI, "uri"], capture_output=True, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def systemd_is_init() -> bool:
    return Path("/run/systemd/system").is_dir()


def start_daemons() -> list[str]:
    """Start virtlogd and libvirtd unless libvirt answers already; the names of those started."""
    if libvirt_up():
        return []
    started = []
    if systemd_is_init():
        subprocess.run(["systemctl", "start", *DAEMONS], check=True)
        started = [f"systemd:{d}" for d in DAEMONS]
    else:
        run_dir = STATE / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        for daemon in DAEMONS:
            pidfile = run_dir / f"{daemon}.pid"
            if _pid_alive(pidfile):
                continue
            subprocess.run([*_without_kvm(daemon), daemon, "-d", "-p", str(pidfile)], check=True)
            started.append(str(pidfile))
    (STATE / "started-daemons").write_text("".join(s + "\n" for s in started))
    for _ in range(60):
        if libvirt_up():
            return started
        time.sleep(0.5)
    raise HostError("libvirtd started but does not answer on qemu:///system (see /var/log/libvirt/)")


def _without_kvm(daemon: str) -> list[str]:
    """The command prefix that starts libvirtd with /dev/kvm hidden (empty: start it as is).

    Here /dev/kvm is root-only (no udev gives it to the kvm group) and cannot
    run Debian's kernel anyway. libvirt then disagrees with itself: its QEMU
    probe finds KVM, while its check whether the qemu user may open /dev/kvm
    says no, so it declares its capability cache stale and probes QEMU again
    on nearly every API call (4-8 s each, far more on a loaded machine: a
    3-VM `vagrant up` stalled for minutes). We keep /dev/kvm's permissions
    and give libvirtd a private mount namespace in which /dev/kvm is an empty
    root-only file: probe and check then agree (no KVM), the cache holds, and
    the VMs run TCG as configured. In that namespace libvirt also reads a
    qemu.conf with `namespaces = []`: its per-VM /dev would try to carry the
    /dev/kvm file mount over as a directory and fail. QEMU still runs as
    libvirt's unprivileged qemu user.
    """
    if daemon != "libvirtd" or not Path("/dev/kvm").exists():
        return []
    run_dir = STATE / "run"
    placeholder = run_dir / "no-kvm"
    placeholder.touch(mode=0o600)
    conf = Path("/etc/libvirt/qemu.conf")
    (run_dir / "qemu.conf").write_text(
        (conf.read_text() if conf.exists() else "")
        + "\n# kctl Vagrant lab (deploy/vagrant/host.py): no per-VM /dev namespace\nnamespaces = []\n")
    binds = f'mount --bind "{placeholder}" /dev/kvm && mount --bind "{run_dir / "qemu.conf"}" {conf}'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", f'{binds} && exec "$0" "$@"']


def _pid_alive(pidfile: Path) -> int:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return 0


def stop_daemons() -> list[str]:
    """Stop what start_daemons started (recorded in STATE/started-daemons), in reverse order."""
    record = STATE / "started-daemons"
    stopped = []
    entries = record.read_text().split() if record.exists() else []
    for entry in reversed(entries):
        if entry.startswith("systemd:"):
            subprocess.run(["systemctl", "stop", entry.split(":", 1)[1]], check=False)
            stopped.append(entry)
            continue
        pid = _pid_alive(Path(entry))
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _pid_alive(Path(entry)):
                    break
                time.sleep(0.1)
            stopped.append(Path(entry).stem)
    record.unlink(missing_ok=True)
    return stopped


# ------------------------------------------------------------------ what the lab leaves

def domains() -> list[str]:
    return [d for d in virsh("list", "--all", "--name").split() if d.startswith(PREFIX)]


def networks() -> list[str]:
    return [n for n in virsh("net-list", "--all", "--name").split() if n in (MGMT_NET, CLUSTER_NET)]


def pools() -> list[str]:
    return [p for p in virsh("pool-list", "--all", "--name").split() if p == POOL]


def iptables_chains() -> list[str]:
    """libvirt's LIBVIRT_* chains, as 'iptables:TABLE:CHAIN' (also ip6tables)."""
    found = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            res = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True)
            found += [f"{tool}:{table}:{c}" for c in re.findall(r"^-N (LIBVIRT_\S+)", res.stdout, re.M)]
    return found


def remove_iptables_chains() -> None:
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            res = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True)
            for rule in re.findall(r"^-A (\S+ .*-j LIBVIRT_\S+)$", res.stdout, re.M):
                if not rule.startswith("LIBVIRT_"):
                    subprocess.run([tool, "-w", "-t", table, "-D", *rule.split()], check=False)
            chains = re.findall(r"^-N (LIBVIRT_\S+)", res.stdout, re.M)
            for chain in chains:
                subprocess.run([tool, "-w", "-t", table, "-F", chain], check=False)
            for chain in chains:
                subprocess.run([tool, "-w", "-t", table, "-X", chain], check=False)


def kill_node(machine: str) -> None:
    """`virsh destroy`: the VM's power cord, no shutdown."""
    name = PREFIX + machine
    if name not in domains():
        raise ConfigError(f"no lab VM named {machine!r} (libvirt domain {name}); see `status`")
    virsh("destroy", name)


def cleanup(log=print) -> None:
    """Remove every domain, network, pool/volume and chain of the lab, then the daemons it started."""
    if libvirt_up():
        for dom in domains():
            virsh("destroy", dom, check=False)
            virsh("undefine", dom, "--remove-all-storage", "--nvram", check=False)
            log(f"removed domain {dom}")
        for net in networks():
            virsh("net-destroy", net, check=False)
            virsh("net-undefine", net, check=False)
            log(f"removed network {net}")
        for pool in pools():
            for vol in [line.split()[0] for line in virsh("vol-list", pool, check=False).splitlines() if line.strip()]:
                virsh("vol-delete", vol, "--pool", pool, check=False)
                log(f"removed volume {vol}")
            virsh("pool-destroy", pool, check=False)
            virsh("pool-undefine", pool, check=False)
            log(f"removed pool {pool}")
        others = active_networks()
    else:
        others = []
    if (STATE / "pool").is_dir():   # also files of a pool libvirt no longer knows
        shutil.rmtree(STATE / "pool")
    for d in stop_daemons():
        log(f"stopped {d}")
    if not others:
        remove_iptables_chains()
    else:
        log(f"kept libvirt's iptables chains: other libvirt networks are active ({', '.join(others)})")
