"""``kctl-nodeagent``: command line, namespace entry and wiring.

    kctl-nodeagent --kubeconfig /etc/kctl/node.conf --node-name n1 --node-ip 10.0.0.11 \\
        --root-dir /var/lib/kctl/n1 [--netns /var/run/netns/n1] [--pod-cidr 10.244.1.0/24] \\
        [--registry-mirror docker.io=http://10.0.0.1:5000] [--runtime runc|fake] \\
        [--proxy iptables|none] [--masquerade-cidr 10.0.0.0/24] [--no-seccomp-default] ...
    kctl-nodeagent --cleanup-iptables [--netns /var/run/netns/n1]     # one-shot teardown

Service proxy: with ``--runtime runc`` the agent programs ClusterIP/NodePort
rules (nodeagent/proxy.py) in its network namespace unless ``--proxy none``.
``--masquerade-cidr CIDR``: pod traffic leaving the pod CIDRs towards CIDR is
masqueraded to the node IP (the lab passes its node subnet: the control plane's
rp_filter drops unmasqueraded pod sources).  The rules stay when the agent
stops (pods keep serving; the next agent takes them over); ``--cleanup-iptables``
removes every KCTL-* chain and hook in the (``--netns``) namespace and exits —
the explicit teardown.  Hollow agents (``--runtime fake``) never touch the
host's iptables: no proxy by default, ``--proxy iptables`` gives them a Proxier
on ``FakeIptables``.

Pod DNS: ``--cluster-dns IP[,IP]`` and ``--cluster-domain`` are the
kubelet's clusterDNS/clusterDomain: ClusterFirst pods get that nameserver and
the cluster search path in their resolv.conf (nodeagent/podfiles.py).

``--netns`` is entered FIRST, with ``setns(CLONE_NEWNET)`` on the main thread
before any other thread exists (so every thread the agent later starts —
gRPC, the network worker, executors — inherits it): only the network
namespace changes, never the mount namespace (design §4: ``ip netns exec``
remounts /sys and runc then finds no cgroups).

Identity: ``--kubeconfig`` carries the node's certificate (CN=system:node:NAME,
O=system:nodes) and the cluster CA; ``--apiserver`` overrides its address.
The logs/exec server (nodeagent/server.py) serves TLS with
``--tls-cert-file``/``--tls-private-key-file`` (default: the kubeconfig's
client certificate, which machinery.pki issues for serving too) and accepts
only the apiserver's client certificate signed by ``--client-ca-file``
(default: the kubeconfig's CA). Its serving certificate rotates: the files
(or the kubeconfig and the files it names) are re-read at the next TLS
handshake after they change, so the renewed client certificate — the
Renewer's for a joined node, ``kctl pki renew nodes/NAME.conf`` otherwise —
serves new connections without a restart. A joined node's CSR-signed client
certificate is client-only (no SANs, no serverAuth), which the apiserver
refuses as a serving certificate, so a joined agent (``--bootstrap-kubeconfig``,
no ``--tls-cert-file``) also requests a ``kubernetes.io/kubelet-serving``
certificate for its address and name and keeps it renewed (kubelet's
``--rotate-server-certificates``; nodeagent/certbootstrap.py) and serves with
it as soon as it is issued (the client certificate until then).

Node join (issue 14): with ``--bootstrap-kubeconfig`` (a bootstrap token)
the agent first obtains a client certificate through a
CertificateSigningRequest, writes ``--kubeconfig`` and keeps renewing the
certificate (nodeagent/certbootstrap.py, machinery/certmanager.py);
``--apiserver`` then defaults to that kubeconfig's server. Without it the
agent reads ``--kubeconfig`` again every ``--credentials-reload-interval``
seconds and uses a certificate renewed there by hand (``kctl pki renew
nodes/NAME.conf``; machinery/certreload.py).

Hollow nodes (``--runtime fake --hollow-nodes N``): N agents NAME-0..N-1 in
one process, each with its own identity, as each of Kubernetes' kubemark
hollow kubelets is its own process.  kubemark gives them all one shared
credential (user ``kubelet`` bound to ClusterRole system:node, NodeRestriction
off); under the Node authorizer and NodeRestriction a node certificate acts
for its own node only, so ``--hollow-kubeconfig-dir DIR`` gives hollow node
NAME-i the kubeconfig ``DIR/NAME-i.conf`` (CN=system:node:NAME-i; ``kctl pki
node NAME-i --ip IP`` writes it to ``<cert-dir>/nodes/``), one client each.
With ``--kubeconfig`` instead, all hollow nodes share that one client: only
an identity allowed to act for every node (an admin) works there.

``build_agent()`` is also what the hollow-node tests and benchmarks call to
run many agents in one process (``runtime="fake"``).
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys

CLONE_NEWNET = 0x40000000
log = logging.getLogger("kctl.nodeagent")


def enter_netns(path: str) -> None:
    if "/" not in path:
        path = f"/var/run/netns/{path}"
    from nodeagent.errors import NetworkError
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise NetworkError(f"node network namespace {path}: {exc.strerror}") from exc
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetworkError(f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _kv_list(s: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        k, sep, v = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {part!r}")
        out[k] = v
    return out


def _taints(s: str):
    from machinery.pb import core_pb2
    out = []
    for part in filter(None, (p.strip() for p in s.split(","))):
        kv, _, effect = part.partition(":")
        k, _, v = kv.partition("=")
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise argparse.ArgumentTypeError(f"taint {part!r}: effect must be NoSchedule, PreferNoSchedule "
                                             "or NoExecute")
        out.append(core_pb2.Taint(key=k, value=v, effect=effect))
    return out


REQUIRED = ("kubeconfig", "node_name", "node_ip", "root_dir")


def _cidr(s: str) -> str:
    import ipaddress
    if not s:
        return ""
    try:
        return str(ipaddress.ip_network(s, strict=False))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ip_list(s: str) -> list[str]:
    import ipaddress
    try:
        return [str(ipaddress.ip_address(p.strip())) for p in s.split(",") if p.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid value {s!r}: {exc}") from None


def parser() -> argparse.ArgumentParser:
    from machinery.validation.dns import cluster_domain_arg
    p = argparse.ArgumentParser(prog="kctl-nodeagent", description="kctl node agent")
    p.add_argument("--kubeconfig", help="kubeconfig with the node's credentials (required)")
    p.add_argument("--apiserver", help="HOST:PORT of the apiserver, or several comma-separated "
                   "(HA: fails over; overrides the kubeconfig's)")
    p.add_argument("--tls-cert-file", help="serving certificate of the logs/exec server (default: the "
                   "kubeconfig's client certificate)")
    p.add_argument("--tls-private-key-file", help="its key")
    p.add_argument("--client-ca-file", help="CA of the apiserver's client certificate (default: the kubeconfig's CA)")
    p.add_argument("--node-name", help="(required)")
    p.add_argument("--node-ip", help="InternalIP; the logs/exec service listens here (required)")
    p.add_argument("--root-dir", help="all agent state lives here (required); ROOT/run becomes a tmpfs "
                   "for the runtime's state (nodeagent/statedir.py)")
    p.add_argument("--netns", default="", help="enter this network namespace (name or path) first")
    p.add_argument("--pod-cidr", default="", help="use this pod CIDR (tests; else wait for spec.podCIDR)")
    p.add_argument("--heartbeat-interval", type=float, default=1.0, help="Lease renewal period, seconds")
    p.add_argument("--node-status-interval", type=float, default=10.0)
    p.add_argument("--node-labels", type=_kv_list, default={}, help="k=v,k2=v2")
    p.add_argument("--register-with-taints", type=_taints, default=[], help="k=v:NoSchedule,...")
    p.add_argument("--system-reserved", type=_kv_list, default={}, help="cpu=500m,memory=512Mi")
    p.add_argument("--capacity", type=_kv_list, default={}, help="override cpu=,memory=,pods= (hollow nodes)")
    p.add_argument("--registry-mirror", action="append", default=[], help="docker.io=http://ADDR:PORT")
    p.add_argument("--insecure-registry", action="append", default=[])
    p.add_argument("--runtime", choices=("runc", "fake"), default="runc")
    p.add_argument("--crashloop-base", type=float, default=10.0, help="CrashLoopBackOff base delay, seconds")
    p.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics")
    p.add_argument("--agent-port", type=int, default=10250, help="logs/exec gRPC port on --node-ip")
    p.add_argument("--cgroup-parent", default="", help="default kctl/<node-name>")
    p.add_argument("--bridge-name", default="kctl0")
    p.add_argument("--netns-prefix", default="kctl-", help="prefix of pod network namespace names")
    p.add_argument("--hollow-nodes", type=int, default=0,
                   help="with --runtime fake: run N hollow agents NODE_NAME-0..N-1 in this process; node IPs "
                        "count up from --node-ip, --pod-cidr (e.g. 10.200.0.0/16) is cut into /24s")
    p.add_argument("--hollow-kubeconfig-dir", default="",
                   help="with --hollow-nodes: hollow node NODE_NAME-i uses DIR/NODE_NAME-i.conf, its own node "
                        "identity (kctl pki node NODE_NAME-i writes <cert-dir>/nodes/NODE_NAME-i.conf)")
    p.add_argument("--proxy", choices=("iptables", "none"), default=None,
                   help="service proxy (ClusterIP/NodePort rules); default iptables with --runtime runc, "
                        "none with --runtime fake (iptables there means a Proxier on FakeIptables)")
    p.add_argument("--masquerade-cidr", type=_cidr, default="",
                   help="masquerade pod traffic leaving the pod CIDRs towards this CIDR (e.g. the node subnet)")
    p.add_argument("--cluster-dns", type=_ip_list, default=[],
                   help="IP[,IP] of the cluster DNS service, the nameserver of ClusterFirst pods (kubelet's clusterDNS)")
    p.add_argument("--cluster-domain", type=cluster_domain_arg, default="cluster.local",
                   help="cluster domain: pods search NS.svc.DOMAIN svc.DOMAIN DOMAIN (default %(default)s)")
    p.add_argument("--cleanup-iptables", action="store_true",
                   help="remove every KCTL-* iptables chain and hook (in --netns) and exit")
    p.add_argument("--seccomp-default", action=argparse.BooleanOptionalAction, default=True,
                   help="RuntimeDefault seccomp for containers that name no profile (default on; "
                        "--no-seccomp-default: Unconfined, Kubernetes' own default)")
    p.add_argument("--allowed-unsafe-sysctls", type=lambda s: [x for x in s.split(",") if x], default=[],
                   help="sysctls (or prefix*) pods may set beyond Kubernetes' safe set, comma-separated")
    from nodeagent import certbootstrap
    certbootstrap.add_arguments(p)     # node join: --bootstrap-kubeconfig, --kubeconfig, --cert-dir
    from machinery import certreload
    certreload.add_arguments(p)        # --credentials-reload-interval: a kubeconfig renewed by hand
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    if not args.cleanup_iptables:
        missing = [f"--{a.replace('_', '-')}" for a in REQUIRED if not getattr(args, a)
                   and not (a == "kubeconfig" and args.hollow_kubeconfig_dir)]
        if missing:
            p.error(f"the following arguments are required: {', '.join(missing)}")
        if args.hollow_kubeconfig_dir and not args.hollow_nodes:
            p.error("--hollow-kubeconfig-dir needs --hollow-nodes")
        if args.hollow_nodes and args.bootstrap_kubeconfig:
            p.error("--bootstrap-kubeconfig bootstraps one node, not --hollow-nodes")
    if args.proxy is None:
        args.proxy = "iptables" if args.runtime == "runc" else "none"
    return args


def build_agent(client, *, node_name: str, node_ip: str, root_dir: str, runtime: str = "runc",
                pod_cidr: str = "", mirrors: dict | None = None, insecure: list[str] | None = None,
                cgroup_parent: str = "", bridge_name: str = "kctl0", netns_prefix: str = "kctl-",
                proxy: str = "none", masquerade_cidr: str = "", **kw):
    """An Agent with the real (runc) or hollow (fake) node parts.

    proxy="iptables": a service proxy; on the real iptables for runc, on
    FakeIptables for fake (hollow agents never program the host)."""
    from nodeagent.agent import Agent
    from nodeagent.errors import AgentConfigError
    if proxy not in ("iptables", "none"):
        raise AgentConfigError(f"proxy must be iptables or none, not {proxy!r}")
    make_proxier = None
    if proxy == "iptables":
        from nodeagent.proxy import Proxier
        if runtime == "fake":
            from nodeagent.iptables import FakeIptables as runner_cls
        else:
            from nodeagent.iptables import IptablesRunner as runner_cls

        def make_proxier(cidr: str):
            from nodeagent.proxyhealth import HealthServer     # hollow agents never bind the host's ports
            return Proxier(runner_cls(), node_ip=node_ip, pod_cidr=cidr, masquerade_cidr=masquerade_cidr or None,
                           node_name=node_name, health=None if runtime == "fake" else HealthServer(node_ip))
    if runtime == "fake":
        from nodeagent.fake_runtime import FakeImageStore, FakeNetwork, FakeRuntime
        return Agent(client, node_name=node_name, node_ip=node_ip, root_dir=root_dir, runtime=FakeRuntime(),
                     images=FakeImageStore(), make_network=FakeNetwork, pod_cidr=pod_cidr, fake=True,
                     runtime_version="fake://0.1", make_proxier=make_proxier, **kw)
    from nodeagent.images import ImageStore
    from nodeagent.network import NodeNetwork
    from nodeagent.runtime import Runtime
    from nodeagent.statedir import ensure_tmpfs
    state = ensure_tmpfs(os.path.join(root_dir, "run"))      # what a reboot ends (nodeagent/statedir.py)
    rt = Runtime(os.path.join(root_dir, "runtime"), cgroup_parent=cgroup_parent or f"kctl/{node_name}",
                 state_dir=state)
    images = ImageStore(os.path.join(root_dir, "images"), mirrors=mirrors or {},
                        insecure_registries=insecure or [])

    def make_network(cidr: str):
        return NodeNetwork(bridge_name, cidr, os.path.join(state, "network"), netns_prefix)
    return Agent(client, node_name=node_name, node_ip=node_ip, root_dir=root_dir, runtime=rt, images=images,
                 make_network=make_network, pod_cidr=pod_cidr, runtime_version="runc://1.1.5",
                 make_proxier=make_proxier, **kw)


async def amain(args) -> None:
    from machinery import kubeconfig
    from machinery.client import Client
    from machinery.runner import run_tasks
    from nodeagent import metrics
    from nodeagent import security
    from nodeagent.podfiles import DnsConfigurer

    mirrors: dict[str, list[str]] = {}
    for m in args.registry_mirror:
        host, sep, url = m.partition("=")
        if not sep:
            raise SystemExit(f"--registry-mirror {m!r}: expected REGISTRY=URL")
        mirrors.setdefault(host, []).append(url)
    if args.hollow_nodes:
        if args.runtime != "fake":
            raise SystemExit("--hollow-nodes needs --runtime fake")
        clients = hollow_clients(args)
        try:
            await run_tasks({f"hollow-{i}": a.run() for i, a in enumerate(hollow_agents(clients, args))})
        finally:
            for c in set(clients):
                await c.close()
        return
    from nodeagent import certbootstrap
    await certbootstrap.ensure(args)          # a client certificate from the bootstrap token first
    client = Client.from_kubeconfig(args.kubeconfig, args.apiserver, timeout=30,
                                    user_agent=f"kctl-nodeagent/{args.node_name}")
    agent = build_agent(
        client, node_name=args.node_name, node_ip=args.node_ip, root_dir=os.path.abspath(args.root_dir),
        runtime=args.runtime, pod_cidr=args.pod_cidr, mirrors=mirrors, insecure=args.insecure_registry,
        cgroup_parent=args.cgroup_parent, bridge_name=args.bridge_name, netns_prefix=args.netns_prefix,
        heartbeat_interval=args.heartbeat_interval, status_interval=args.node_status_interval,
        labels=args.node_labels, taints=args.register_with_taints, system_reserved=args.system_reserved,
        capacity=({**agentlib_capacity(), **args.capacity} if args.capacity else None),
        crashloop_base=args.crashloop_base, agent_port=args.agent_port, proxy=args.proxy,
        masquerade_cidr=args.masquerade_cidr, dns=DnsConfigurer(args.cluster_dns, args.cluster_domain))
    agent.security = security.Options(args.seccomp_default, os.path.join(os.path.abspath(args.root_dir), "seccomp"),
                                      args.allowed_unsafe_sysctls)
    tasks = {"agent": agent.run()}
    async def reconnect() -> None:      # a renewed certificate: new connections present it
        await client.rotate(kubeconfig.select(args.kubeconfig).credentials)
    if (renewer := certbootstrap.renewer(args, on_rotate=reconnect)) is not None:
        tasks["certificate-renewal"] = renewer.run()
    if args.runtime == "runc" and args.agent_port and (serving := certbootstrap.serving_renewer(args)):
        tasks["serving-certificate"] = serving.run()
    else:                               # a kubeconfig renewed by hand (kctl pki renew nodes/NAME.conf)
        from machinery import certreload
        tasks.update(certreload.reload_tasks(client, args.kubeconfig, args.credentials_reload_interval))
    if args.metrics_listen:
        tasks["metrics"] = metrics.serve(args.metrics_listen)
    if args.runtime == "runc" and args.agent_port:
        from nodeagent.server import serve as serve_agent
        tasks["agent-server"] = serve_agent(agent, f"{args.node_ip}:{args.agent_port}", serving_tls(args, client))
    try:
        await run_tasks(tasks)
    finally:
        await client.close()


def serving_tls(args, client):
    """The logs/exec server's certificate, key and client CA (see the module
    docstring), re-read when their files change: a renewed node certificate
    (the Renewer's, or `kctl pki renew nodes/NAME.conf`) serves the next
    connections without a restart (machinery/certreload.py)."""
    from machinery import certmanager, certreload, kubeconfig
    from machinery.errors import ConfigError
    from nodeagent import certbootstrap
    source = args.kubeconfig or kubeconfig.default_path()
    issued = certbootstrap.serving_file(args)      # the kubelet-serving certificate, once there

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def load() -> tuple[bytes, bytes, bytes]:
        creds = kubeconfig.select(source).credentials if source else client.credentials
        cert = read(args.tls_cert_file) if args.tls_cert_file else creds.cert_pem
        key = read(args.tls_private_key_file) if args.tls_private_key_file else creds.key_pem
        if issued and (pair := certmanager.load_pair(issued)) is not None:
            cert, key = pair[1], pair[2]
        ca = read(args.client_ca_file) if args.client_ca_file else creds.ca_pem
        if not (cert and key and ca):
            raise ConfigError("the logs/exec server needs a certificate, key and client CA (--tls-cert-file, "
                              "--tls-private-key-file, --client-ca-file, or a kubeconfig with them)")
        return cert, key, ca
    paths = [p for p in (args.tls_cert_file, args.tls_private_key_file, args.client_ca_file, issued) if p]
    if source and not (args.tls_cert_file and args.client_ca_file):
        paths += certreload.kubeconfig_files(source)
    try:
        return certreload.ServingCertificate(load, paths)
    except (ConfigError, OSError) as exc:
        raise SystemExit(f"kctl-nodeagent: logs/exec server: {exc}") from None


def hollow_clients(args) -> list:
    """One client per hollow node: its own kubeconfig from --hollow-kubeconfig-dir,
    else the one --kubeconfig client shared by all (see the module docstring)."""
    from machinery.client import Client
    names = [f"{args.node_name}-{i}" for i in range(args.hollow_nodes)]
    if not args.hollow_kubeconfig_dir:
        shared = Client.from_kubeconfig(args.kubeconfig, args.apiserver, timeout=30,
                                        user_agent=f"kctl-nodeagent/{args.node_name}")
        return [shared] * len(names)
    return [Client.from_kubeconfig(os.path.join(args.hollow_kubeconfig_dir, f"{name}.conf"), args.apiserver,
                                   timeout=30, user_agent=f"kctl-nodeagent/{name}") for name in names]


def hollow_agents(clients: list, args) -> list:
    """N fake agents in one event loop, hollow node i with clients[i]."""
    import ipaddress
    ip0 = ipaddress.ip_address(args.node_ip)
    cidrs = (list(ipaddress.ip_network(args.pod_cidr).subnets(new_prefix=24)) if args.pod_cidr else [])
    if cidrs and len(cidrs) < args.hollow_nodes:
        raise SystemExit(f"--pod-cidr {args.pod_cidr} has fewer than {args.hollow_nodes} /24s")
    return [build_agent(clients[i], node_name=f"{args.node_name}-{i}", node_ip=str(ip0 + i),
                        root_dir=os.path.join(os.path.abspath(args.root_dir), f"{args.node_name}-{i}"),
                        runtime="fake", pod_cidr=str(cidrs[i]) if cidrs else "",
                        heartbeat_interval=args.heartbeat_interval, status_interval=args.node_status_interval,
                        labels=args.node_labels, taints=args.register_with_taints,
                        system_reserved=args.system_reserved,
                        capacity=({**agentlib_capacity(), **args.capacity} if args.capacity else None),
                        crashloop_base=args.crashloop_base, agent_port=args.agent_port,
                        proxy=args.proxy, masquerade_cidr=args.masquerade_cidr)
            for i in range(args.hollow_nodes)]


def agentlib_capacity() -> dict[str, str]:
    from nodeagent.agent import machine_capacity
    return machine_capacity()


def cleanup_iptables() -> int:
    """``--cleanup-iptables``: remove every KCTL-* chain and hook in this netns; print what went."""
    import asyncio
    from nodeagent.errors import IptablesError
    from nodeagent.iptables import IptablesRunner
    from nodeagent.proxy import cleanup
    try:
        removed = asyncio.run(cleanup(IptablesRunner()))
    except IptablesError as exc:
        print(f"kctl-nodeagent: iptables cleanup failed: {exc}", file=sys.stderr)
        return 1
    for r in removed:
        print(f"removed {r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.netns:
        enter_netns(args.netns)        # before any thread exists
    if args.cleanup_iptables:
        return cleanup_iptables()
    from machinery.runner import run_component, setup_logging
    setup_logging("nodeagent", args.verbose)
    return run_component(lambda: amain(args))


if __name__ == "__main__":
    sys.exit(main())
