"""A pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, as the kubelet writes them.

The kubelet's rules (pkg/kubelet/network/dns/dns.go, kubelet_pods.go), which
pods and users rely on:

* The node's resolv.conf (/etc/resolv.conf): ``nameserver`` lines
  accumulate, the last ``search`` and ``options`` lines win (a bare
  ``nameserver`` line is skipped, where the kubelet refuses the file).
* DNS type from ``dnsPolicy``: ClusterFirst → cluster DNS, except for
  hostNetwork pods, which fall back to Default; ClusterFirstWithHostNet →
  cluster DNS; Default → the node's resolv.conf; None → nothing but the
  pod's ``dnsConfig``.
* Cluster DNS: ``nameserver`` = the agent's ``--cluster-dns`` addresses only,
  ``search NS.svc.DOMAIN svc.DOMAIN DOMAIN`` + the node's search domains
  (duplicates dropped), ``options ndots:5``. An agent without
  ``--cluster-dns`` falls back to Default and says so (event
  MissingClusterDNS), as the kubelet does.
* ``dnsConfig`` is appended: nameservers and searches without duplicates,
  options merged by name (the pod's value wins; the kubelet's Go map has no
  order, we keep first-seen order so the file is stable).
* The result is trimmed to the resolver's limits (3 nameservers, 32 search
  paths, 2048 characters, no path over 253) with a DNSConfigForming
  warning, like the kubelet's formDNSConfigFitsLimits.
* resolv.conf is written the way containerd renders the CRI DNSConfig:
  ``search``, then one ``nameserver`` line each, then ``options``.
* hostname: ``spec.hostname`` or the pod name, cut to 63 characters without
  a trailing '-' or '.'; with ``spec.subdomain`` the domain is
  ``SUBDOMAIN.NS.svc.DOMAIN``. /etc/hosts then carries ``IP\\tFQDN\\tHOSTNAME``
  (so ``hostname -f`` prints the FQDN) under the kubelet's header and
  localhost lines, then the ``hostAliases`` block. hostNetwork pods get the
  node's /etc/hosts under a "(host network)" header, plus their aliases,
  and the node name as hostname.

``DnsConfigurer`` is the agent's (built from its flags); ``write_pod_files``
renders and writes the three files into POD_DIR/etc atomically (``atomic_write``:
a temp file renamed over the old one) and returns {container path: host path}
for read-only bind mounts (nodeagent/podspec.py).  Everything else here is
pure, for the unit tests.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.errors import NetworkError

DEFAULT_OPTIONS = ("ndots:5",)
MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
MAX_DOMAIN_LEN = 253
MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
CLUSTER, HOST, NONE = "cluster", "host", "none"


@dataclass
class DnsConfig:
    """What the kubelet hands the runtime (CRI DNSConfig)."""
    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def parse_resolv_conf(text: str) -> DnsConfig:
    """nameserver lines accumulate; the last search and options lines win;
    comments and unknown lines are skipped (the kubelet's parseResolvConf)."""
    out = DnsConfig()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            out.servers.append(fields[1])
        elif fields[0] == "search":
            out.searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            out.options = fields[1:]
    return out


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def merge_options(existing, pod_options) -> list[str]:
    """Options by name; a pod option replaces the same-named existing one."""
    opts: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        opts[name] = value
    for op in pod_options:
        opts[op.name] = op.value if op.HasField("value") else ""
    return [f"{k}:{v}" if v else k for k, v in opts.items()]


def dns_type(pod) -> str:
    policy = pod.spec.dns_policy or "ClusterFirst"
    if policy == "None":
        return NONE
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not pod.spec.host_network):
        return CLUSTER
    return HOST          # Default, and ClusterFirst on the host network


def fit_limits(cfg: DnsConfig) -> tuple[DnsConfig, list[str]]:
    """Trim to the resolver's limits; returns the warnings the kubelet records."""
    warnings = []
    servers = cfg.servers
    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        warnings.append("Nameserver limits were exceeded, some nameservers have been omitted, "
                        f"the applied nameserver line is: {' '.join(servers)}")
    searches = cfg.searches[:MAX_SEARCH_PATHS]
    cut = len(searches) < len(cfg.searches)
    kept = [s for s in searches if len(s) <= MAX_DOMAIN_LEN]
    cut |= len(kept) < len(searches)
    while kept and len(" ".join(kept)) > MAX_SEARCH_CHARS:
        kept.pop()
        cut = True
    if cut:
        warnings.append("Search Line limits were exceeded, some search paths have been omitted, "
                        f"the applied search line is: {' '.join(kept)}")
    return DnsConfig(servers, kept, cfg.options), warnings


@dataclass
class DnsConfigurer:
    """The kubelet's dns.Configurer: --cluster-dns, --cluster-domain and the
    node's resolv.conf ("" = none: Default pods get 127.0.0.1 and search ".")."""
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    resolver_config: str = "/etc/resolv.conf"
    node_hosts: str = "/etc/hosts"

    def host_config(self) -> DnsConfig:
        if not self.resolver_config:
            return DnsConfig()
        try:
            text = Path(self.resolver_config).read_text()
        except OSError as exc:
            raise NetworkError(f"node resolv.conf {self.resolver_config}: {exc.strerror}") from exc
        return parse_resolv_conf(text)

    def pod_dns(self, pod) -> tuple[DnsConfig, list[tuple[str, str]]]:
        """(the pod's DNS config, [(event reason, message)] to record as warnings)."""
        events: list[tuple[str, str]] = []
        kind = dns_type(pod)
        cfg = DnsConfig() if kind == NONE else self.host_config()
        if kind == CLUSTER and not self.cluster_dns:
            events.append(("MissingClusterDNS", "node agent does not have ClusterDNS IP configured and cannot "
                                                'create Pod using "ClusterFirst" policy. Falling back to '
                                                '"Default" policy.'))
            kind = HOST
        if kind == CLUSTER:
            domain, ns = self.cluster_domain, pod.metadata.namespace
            cluster_search = [f"{ns}.svc.{domain}", f"svc.{domain}", domain] if domain else []
            cfg = DnsConfig(list(self.cluster_dns), _unique(cluster_search + cfg.searches), list(DEFAULT_OPTIONS))
        elif kind == HOST and not self.resolver_config:
            cfg = DnsConfig(["127.0.0.1"], ["."], [])
        if pod.spec.HasField("dns_config"):
            pc = pod.spec.dns_config
            cfg = DnsConfig(_unique(cfg.servers + list(pc.nameservers)),
                            _unique(cfg.searches + list(pc.searches)),
                            merge_options(cfg.options, pc.options))
        cfg, warnings = fit_limits(cfg)
        return cfg, events + [("DNSConfigForming", w) for w in warnings]


def resolv_conf_text(cfg: DnsConfig) -> str:
    lines = []
    if cfg.searches:
        lines.append("search " + " ".join(cfg.searches))
    lines += [f"nameserver {s}" for s in cfg.servers]
    if cfg.options:
        lines.append("options " + " ".join(cfg.options))
    return "".join(line + "\n" for line in lines)


def pod_hostname(pod) -> str:
    """The pod's hostname: the node's for hostNetwork pods, else spec.hostname
    or the pod name, cut to 63 characters without a trailing '-' or '.'."""
    if pod.spec.host_network:
        return pod.spec.node_name[:63]
    name = pod.spec.hostname or pod.metadata.name
    return name[:63].rstrip("-.") if len(name) > 63 else name


def pod_domain(pod, cluster_domain: str) -> str:
    """SUBDOMAIN.NS.svc.DOMAIN with spec.subdomain, else "" (no domain)."""
    if not pod.spec.subdomain or pod.spec.host_network:
        return ""
    return f"{pod.spec.subdomain}.{pod.metadata.namespace}.svc.{cluster_domain}"


def host_aliases_text(pod) -> str:
    if not pod.spec.host_aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    lines += [f"{a.ip}\t{h}" for a in pod.spec.host_aliases for h in a.hostnames]
    return "\n".join(lines) + "\n"


def managed_hosts_text(pod_ips: list[str], hostname: str, domain: str, pod) -> str:
    out = [MANAGED_HOSTS_HEADER, "127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n",
           "fe00::0\tip6-localnet\n", "fe00::0\tip6-mcastprefix\n", "fe00::1\tip6-allnodes\n",
           "fe00::2\tip6-allrouters\n"]
    names = f"{hostname}.{domain}\t{hostname}" if domain else hostname
    out += [f"{ip}\t{names}\n" for ip in pod_ips]
    return "".join(out) + host_aliases_text(pod)


def hosts_text(pod, pod_ips: list[str], configurer: DnsConfigurer) -> str:
    if pod.spec.host_network:
        try:
            node = Path(configurer.node_hosts).read_text()
        except OSError as exc:
            raise NetworkError(f"node hosts file {configurer.node_hosts}: {exc.strerror}") from exc
        return MANAGED_HOSTS_HEADER_HOST_NETWORK + node + host_aliases_text(pod)
    return managed_hosts_text(pod_ips, pod_hostname(pod), pod_domain(pod, configurer.cluster_domain), pod)


def render(pod, pod_ips: list[str], configurer: DnsConfigurer) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """({container path: content}, warning events) for the three files."""
    cfg, events = configurer.pod_dns(pod)
    return {"/etc/hosts": hosts_text(pod, pod_ips, configurer),
            "/etc/hostname": pod_hostname(pod) + "\n",
            "/etc/resolv.conf": resolv_conf_text(cfg)}, events


def atomic_write(path: Path, data: str) -> None:
    """Replace PATH's content in one step: readers see the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(data)
    os.replace(tmp, path)


def write_pod_files(pod_dir: str | os.PathLike, pod, pod_ips: list[str],
                    configurer: DnsConfigurer) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Write the files into POD_DIR/etc; ({container path: host path}, warning events)."""
    files, events = render(pod, pod_ips, configurer)
    etc = Path(pod_dir) / "etc"
    paths = {cpath: etc / Path(cpath).name for cpath in files}
    try:
        etc.mkdir(parents=True, exist_ok=True)
        for cpath, host in paths.items():
            atomic_write(host, files[cpath])
    except OSError as exc:
        raise NetworkError(f"pod files in {etc}: {exc}") from exc
    return {cpath: str(host) for cpath, host in paths.items()}, events
