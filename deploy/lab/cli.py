"""`kctl lab ...`: a multi-node cluster on one Linux machine (run as root).

    kctl lab up [--nodes 3] [--name kctl] [--control-planes 1|3|5]
                                            build the network, start everything, wait for Ready nodes
    kctl lab status                         components per machine: PID, state, restarts, last exit;
                                            machines and the etcd leader; nodes, addresses
    kctl lab stop|start|kill COMPONENT [--machine cpI]
                                            etcd, apiserver, scheduler, controller-manager, dns, registry, agent-node1 ...
    kctl lab down                           stop and remove everything (safe twice, and after a crash)
    kctl lab logs COMPONENT [--machine cpI] [-f]
    kctl lab kill-node NODE / start-node NODE
    kctl lab kill-machine cpI / start-machine cpI   (HA lab) power a control-plane machine off / on
    kctl lab stop-agent NODE / start-agent NODE
    kctl lab partition NODE|cpI / heal NODE|cpI
    kctl lab exec NODE|cpI -- CMD...        run a command inside a node's or machine's network namespace

With ``--control-planes N`` (odd, > 1) every component of the control plane
runs once per machine cp1..cpN (controlplane.py); COMPONENT then needs
``--machine`` (or is typed as ``apiserver-cp2``).
"""
from __future__ import annotations

import subprocess
import sys
import time

import click

from deploy.lab.naming import LabError

name_opt = click.option("--name", default="kctl", show_default=True, help="Lab name (1-8 of [a-z0-9]).")
machine_opt = click.option("--machine", default=None, help="Control-plane machine (cp1, cp2, ...) of an HA lab.")


def _fail(exc: Exception):
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@click.group()
def lab():
    """A multi-node cluster on this machine: nodes are network namespaces."""


@lab.command("up")
@name_opt
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 99))
@click.option("--subnet", default=None, help="Lab subnet (default: a free /24 in 172.30.0.0/15).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for Ready nodes.")
@click.option("--kubeconfig", default=None,
              help="kubeconfig to write (default: first of $KUBECONFIG, else ~/.kctl/config).")
@click.option("--control-planes", default=1, show_default=True, type=int,
              help="Control-plane machines: 1 (on the host), or an odd N: N etcd members, N apiservers, ...")
def up_cmd(name, nodes, subnet, timeout, kubeconfig, control_planes):
    """Bring up a lab cluster and point kctl at it."""
    from deploy.lab import cluster
    t0 = time.monotonic()
    try:
        info = cluster.up(name, nodes, subnet=subnet, timeout=timeout, progress=click.echo,
                          kubeconfig=kubeconfig, control_planes=control_planes)
    except LabError as exc:
        _fail(exc)
    click.echo(f"\nLab \"{name}\" is up in {time.monotonic() - t0:.1f}s: {nodes} node(s), "
               f"apiserver{'s' if len(info['apiservers']) > 1 else ''} {', '.join(info['apiservers'])}.")
    click.echo(f"kctl now talks to it (kubeconfig {info['kubeconfig']}). Try:\n"
               "  kctl get nodes -o wide\n"
               "  kctl apply -f examples/echo.yaml\n"
               "  kctl get pods -o wide -w\n"
               f"  kctl lab kill-node node2 --name {name}     # and watch the pods move\n"
               f"  kctl lab down --name {name}")


@lab.command("down")
@name_opt
def down_cmd(name):
    """Stop everything and remove every trace of the lab (and its kubeconfig context)."""
    from deploy.lab import cluster
    try:
        report = cluster.down(name)
    except LabError as exc:
        _fail(exc)
    removed = {k: v for k, v in (report or {}).items() if v}
    click.echo(f"lab \"{name}\" is down" + (f" (removed: {', '.join(sorted(removed))})" if removed else ""))


@lab.command("status")
@name_opt
def status_cmd(name):
    """Components with their PIDs, nodes with their addresses and readiness."""
    from deploy.lab import cluster
    from deploy.lab.topology import Lab
    try:
        lab_ = Lab.load(name)
        info = cluster.load_cluster(name)
    except LabError as exc:
        _fail(exc)
    servers = info.get("apiservers") or [info["apiserver"]]
    click.echo(f"lab {name}: subnet {lab_.subnet}, control plane {', '.join(lab_.cp_addresses)}, "
               f"apiserver{'s' if len(servers) > 1 else ''} {', '.join(servers)}")
    click.echo(f"cluster DNS: kube-system/kube-dns {cluster.dns_service_ip()} -> "
               f"{', '.join(f'{a}:{cluster.DNS_PORT}' for a in lab_.cp_addresses)} (domain {cluster.CLUSTER_DOMAIN})")
    click.echo(f"{'COMPONENT':<24}{'PID':<9}{'STATE':<10}{'RESTARTS':<10}{'LAST EXIT':<26}{'WHERE'}")
    now = time.time()
    for comp, st in sorted(lab_.status().items(), key=lambda kv: (kv[1].get("machine") or "", kv[0])):
        click.echo(f"{comp:<24}{st.get('pid') or '-':<9}{component_state(st):<10}{st.get('restarts', '-'):<10}"
                   f"{last_exit(st.get('last_exit'), now):<26}{where(st)}")
    faults = lab_.store.load().get("faults", {})
    if lab_.machines:
        _machines_table(lab_, faults)
    try:
        ready = cluster.node_conditions(",".join(servers), cluster.admin_credentials(name))
    except Exception as exc:  # noqa: BLE001 - status must work with a dead apiserver too
        ready = {}
        click.echo(f"(apiserver not answering: {exc})")
    click.echo(f"\n{'NODE':<10}{'ADDRESS':<16}{'NETNS':<20}{'READY':<9}{'FAULTS'}")
    for n in lab_.nodes:
        click.echo(f"{n.name:<10}{n.ip:<16}{n.netns:<20}{ready.get(n.name, '-'):<9}{fault_notes(faults, n.name)}")


def where(st: dict) -> str:
    """The machine a unit runs on: cpI, the node, else the host's root netns."""
    return st.get("machine") or st.get("node") or "root netns"


def fault_notes(faults: dict, target: str) -> str:
    f = faults.get(target, {})
    return ", ".join(w for w, on in (("link down", f.get("link") == "down"),
                                     ("partitioned", f.get("partitioned"))) if on) or "-"


def etcd_role(member: dict, leader: str | None, machine: str) -> str:
    """leader / follower / unreachable / no leader, as `kctl lab status` shows an etcd member."""
    if not member.get("id"):
        return "unreachable"
    if not member.get("leader_id"):
        return "no leader"
    return "leader" if machine == leader else "follower"


def _machines_table(lab_, faults: dict) -> None:
    from deploy.lab import controlplane
    members = controlplane.etcd_members(lab_)
    leader = controlplane.leader_of(members)
    click.echo(f"\n{'MACHINE':<10}{'ADDRESS':<16}{'NETNS':<20}{'ETCD':<13}{'FAULTS'}")
    for m in lab_.machines:
        click.echo(f"{m.name:<10}{m.ip:<16}{m.netns:<20}{etcd_role(members[m.name], leader, m.name):<13}"
                   f"{fault_notes(faults, m.name)}")
    click.echo(f"etcd leader: {leader or 'none known'}")


def component_state(st: dict) -> str:
    """running / backoff / stopping / stopped (supervised), else running / dead."""
    if st.get("supervised"):
        state = st.get("state") or "pending"
        return "dead" if state == "running" and not st.get("alive") else state
    return "running" if st.get("alive") else "dead"


def last_exit(ex: dict | None, now: float) -> str:
    """`signal SIGKILL, 12s ago`, `code 1, 3s ago`, `-`."""
    if not ex:
        return "-"
    what = (f"signal {ex['signal']}" if "signal" in ex else f"code {ex['code']}" if "code" in ex
            else "not started")
    return f"{what}, {max(0, now - ex.get('at', now)):.0f}s ago"


@lab.command("logs")
@name_opt
@click.argument("component")
@machine_opt
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", default=-1, help="Lines from the end (-1: all).")
def logs_cmd(name, component, machine, follow, tail):
    """Print a component's log (apiserver, scheduler, controller-manager, dns, etcd, registry, agent-NODE)."""
    from deploy.lab.topology import Lab
    try:
        lab_ = Lab.load(name)
        st = lab_.status()
        if machine or component not in st:
            from deploy.lab.faults import resolve
            component = resolve(lab_, component, machine)
    except LabError as exc:
        _fail(exc)
    if component not in st:
        _fail(LabError(f"no component {component!r}; known: {', '.join(sorted(st))}"))
    argv = ["tail", "-n", str(tail) if tail >= 0 else "+1"] + (["-F"] if follow else []) + [st[component]["log"]]
    sys.exit(subprocess.call(argv))


def _node_cmd(cmd_name, fn, done_msg, help_text):
    @lab.command(cmd_name, help=help_text)
    @name_opt
    @click.argument("node")
    def _cmd(name, node):
        try:
            fn(name, node)
        except (LabError, KeyError) as exc:
            _fail(exc)
        click.echo(done_msg.format(node=node))
    return _cmd


def _fault(fn_name: str, survivors: bool = False):
    """`faults.<fn_name>(lab, target)`; with `survivors`, the PIDs it returns are an error."""
    def run(name, target):
        from deploy.lab import faults
        left = getattr(faults, fn_name)(name, target)
        if survivors and left:
            raise LabError(f"processes survived: {left}")
    return run


_kill, _start_node = _fault("kill_node", survivors=True), _fault("start_node")
_stop_agent, _start_agent = _fault("stop_agent"), _fault("start_agent")
_partition, _heal = _fault("partition"), _fault("heal")
_kill_machine, _start_machine = _fault("kill_machine", survivors=True), _fault("start_machine")


_node_cmd("kill-node", _kill, "{node} powered off (link down, agent and containers killed)",
          "Power a node off: its agent and all its containers die, its link goes down.")
_node_cmd("start-node", _start_node, "{node} booted (link up, agent started)",
          "Boot a killed node again: a fresh agent that finds its old state.")
_node_cmd("stop-agent", _stop_agent, "agent of {node} stopped (containers keep running)",
          "Stop a node's agent; its containers keep running.")
_node_cmd("start-agent", _start_agent, "agent of {node} started", "Start a node's agent again.")

_node_cmd("partition", _partition, "{node} cut off (a node from the control plane, a machine from the others)",
          "Cut a node off from the control plane (its containers keep running), or a control-plane "
          "machine (cpI) from the other machines and the nodes.")
_node_cmd("heal", _heal, "{node} reconnected", "Undo `partition`.")
_node_cmd("kill-machine", _kill_machine, "{node} powered off (link down, supervisor and every process killed)",
          "Power a control-plane machine (cpI) of an HA lab off: its link goes down, its etcd member, "
          "apiserver, scheduler, controller manager, DNS and supervisor die at once.")
_node_cmd("start-machine", _start_machine, "{node} booted (link up, supervisor and its units started)",
          "Boot a killed control-plane machine again (etcd rejoins with its data).")


def _component_cmd(cmd_name, help_text):
    @lab.command(cmd_name, help=help_text)
    @name_opt
    @click.argument("component")
    @machine_opt
    def _cmd(name, component, machine):
        from deploy.lab import faults
        fn = {"stop": faults.stop_component, "start": faults.start_component,
              "kill": faults.kill_component}[cmd_name]
        try:
            res = fn(name, component, machine=machine)
        except LabError as exc:
            _fail(exc)
        typed = f"{component} --machine {machine}" if machine else component
        click.echo({"stop": f"{typed} stopped (not restarted until `kctl lab start {typed}`)",
                    "start": f"{typed} started (pid {res['pid'] if isinstance(res, dict) else ''})",
                    "kill": f"{typed} (pid {res}) killed with SIGKILL; the supervisor restarts it"}[cmd_name])
    return _cmd


_component_cmd("stop", "Stop a component on purpose (TERM, then KILL): it stays down until `start`.")
_component_cmd("start", "Start a component stopped with `stop`.")
_component_cmd("kill", "Crash a component (SIGKILL): the lab's supervisor restarts it with back-off.")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@name_opt
@click.argument("node")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(name, node, argv):
    """Run a command inside a node's (or control-plane machine's) network namespace."""
    from deploy.lab.topology import Lab
    try:
        info = Lab.load(name).place(node)
    except (LabError, KeyError) as exc:
        _fail(exc)
    sys.exit(subprocess.call(["nsenter", f"--net={info.netns_path}", "--", *argv]))
