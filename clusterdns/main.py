"""`kctl-dns`: the cluster DNS server (see clusterdns/__init__.py for why it
is a control-plane component).

    kctl-dns --kubeconfig /etc/kctl/dns.conf [--listen 0.0.0.0:53]
             [--cluster-domain cluster.local] [--ttl 5] [--pods verified]
             [--upstream IP[:PORT] ...] [--upstream-timeout 2]
             [--advertise-address IP ...] [--dns-service kube-system/kube-dns]
             [--cache-size 10000] [--metrics-listen 127.0.0.1:9153]
             [--cluster-ip 10.96.0.10] [--register-interval 10] [--lease-ttl 15]

`run()` starts, in one TaskGroup (machinery.runner): the informers
(Namespaces, Services, Endpoints, and Pods unless `--pods` is not
`verified`), the feed that marks the index synced, and the UDP+TCP server.
The server answers from the first moment: until the first lists are in, a
name it does not know is SERVFAIL rather than NXDOMAIN (CoreDNS does the
same after its startup timeout). No `--upstream` (the default) means names
outside the cluster zone are REFUSED and nothing is ever sent anywhere.
With a `--dns-service` and an address (`--advertise-address`, or a specific
`--listen` host) it also puts itself behind that Service: creates it with
`--cluster-ip` when missing and keeps the Service's Endpoints equal to the
live kctl-dns instances, each renewing its own Lease (clusterdns/register.py
says why and how).

A renewed client certificate in --kubeconfig (`kctl pki renew dns.conf`)
is used within --credentials-reload-interval seconds (10), no restart
(machinery/certreload.py).
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import sys

from prometheus_client import start_http_server

from clusterdns.feed import Feed
from clusterdns.forward import Upstreams
from clusterdns.index import ClusterIndex
from clusterdns.metrics import Metrics
from clusterdns.register import Registration
from clusterdns.resolver import POD_MODES, Resolver
from clusterdns.server import MAX_TCP, DnsServer
from machinery import certreload
from machinery.client import Client
from machinery.informer import SharedInformerFactory
from machinery.runner import run_component, run_tasks, setup_logging
from machinery.validation.dns import cluster_domain_arg

log = logging.getLogger("kctl.dns")


def host_port(default_port: int | None):
    """argparse type for HOST:PORT, [V6]:PORT, or (with a default port) a bare IP."""
    def parse(text: str) -> tuple[str, int]:
        if text.startswith("["):                          # [V6] or [V6]:PORT
            host, _, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else rest or ""
        elif text.count(":") == 1:                        # V4:PORT
            host, port = text.split(":")
        else:                                             # V4 or V6 without a port
            host, port = text, ""
        try:
            ipaddress.ip_address(host)
            number = int(port) if port else default_port
            if number is None or not 0 <= number <= 65535:
                raise ValueError(port)
        except ValueError:
            form = "IP[:PORT]" if default_port is not None else "IP:PORT"
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: must be {form} with an IP address and a port 0-65535")
        return host, number
    return parse


def ttl_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be between 0 and 3600 seconds")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a positive integer")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a positive number of seconds")
    return value


def namespaced_name(text: str) -> tuple[str, str] | None:
    if text == "":
        return None
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be NAMESPACE/NAME")
    return ns, name


def optional_ip(text: str) -> str:
    if text == "":
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be an IP address or ''") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kctl-dns", description="Answer DNS for the cluster domain.")
    p.add_argument("--kubeconfig", help="kubeconfig with this component's credentials (CA, client certificate)")
    p.add_argument("--apiserver", default=None, help="apiserver HOST:PORT, or several comma-separated (HA: fails "
                   "over; overrides the kubeconfig's; "
                   "without --kubeconfig: 127.0.0.1:6443 with the default kubeconfig's credentials)")
    certreload.add_arguments(p)
    p.add_argument("--listen", type=host_port(None), default=("0.0.0.0", 53),
                   help="IP:PORT for UDP and TCP (default 0.0.0.0:53)")
    p.add_argument("--cluster-domain", type=cluster_domain_arg, default="cluster.local")
    p.add_argument("--ttl", type=ttl_seconds, default=5, help="TTL of answers, 0-3600 s (default 5)")
    p.add_argument("--pods", choices=POD_MODES, default="verified",
                   help="A-B-C-D.NS.pod records: verified (a pod has that IP), insecure, disabled")
    p.add_argument("--upstream", type=host_port(53), action="append", default=[],
                   help="forward names outside the cluster domain to IP[:PORT] (repeatable; none: REFUSED)")
    p.add_argument("--upstream-timeout", type=float, default=2.0, help="seconds per upstream try")
    p.add_argument("--advertise-address", action="append", default=[], type=ipaddress.ip_address,
                   help="this instance's address: registered in the --dns-service Endpoints, and "
                        "ns.dns.DOMAIN's while that Service does not exist (default: a specific --listen host)")
    p.add_argument("--dns-service", type=namespaced_name, default=("kube-system", "kube-dns"),
                   help="NAMESPACE/NAME of the Service clients reach us by (the zone's NS)")
    p.add_argument("--cluster-ip", default="10.96.0.10", type=optional_ip,
                   help="ClusterIP of the --dns-service when kctl-dns creates it (default %(default)s; "
                        "'' = never create it)")
    p.add_argument("--register-interval", type=positive_float, default=10.0,
                   help="seconds between renewals of this instance's Lease and rewrites of the "
                        "--dns-service Endpoints (default %(default)s)")
    p.add_argument("--lease-ttl", type=positive_int, default=15,
                   help="seconds after its last renewal that an instance which stopped renewing (crashed) "
                        "leaves the Endpoints; must be more than --register-interval (default %(default)s)")
    p.add_argument("--cache-size", type=int, default=10000, help="answers cached until the index changes")
    p.add_argument("--max-tcp-connections", type=positive_int, default=MAX_TCP,
                   help=f"TCP connections open at once; more are closed when accepted (default {MAX_TCP})")
    p.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics (off when empty)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    if args.lease_ttl <= args.register_interval:
        p.error(f"argument --lease-ttl: invalid value '{args.lease_ttl}': must be more than "
                f"--register-interval ({args.register_interval:g} s), or live instances expire between renewals")
    if not args.advertise_address and not ipaddress.ip_address(args.listen[0]).is_unspecified \
            and not ipaddress.ip_address(args.listen[0]).is_loopback:
        args.advertise_address = [ipaddress.ip_address(args.listen[0])]
    return args


def build(client, args, metrics: Metrics) -> tuple[dict, DnsServer]:
    """(named coroutines to run, the server)."""
    index = ClusterIndex()
    factory = SharedInformerFactory(client)
    feed = Feed(factory, index, pods=args.pods == "verified")
    resolver = Resolver(index, zone=args.cluster_domain, ttl=args.ttl, pods=args.pods,
                        ns_service=args.dns_service,
                        ns_addresses=tuple(str(a) for a in args.advertise_address))
    upstreams = Upstreams(args.upstream, timeout=args.upstream_timeout, metrics=metrics) \
        if args.upstream else None
    server = DnsServer(resolver, upstreams=upstreams, metrics=metrics, cache_size=args.cache_size,
                       max_tcp=args.max_tcp_connections)
    metrics.watch_index(index)
    host, port = args.listen
    tasks = {"informers": factory.run(), "feed": feed.run(), "dns": server.serve(host, port)}
    if args.dns_service and args.advertise_address:
        metrics_port = int(args.metrics_listen.rpartition(":")[2]) if args.metrics_listen else None
        tasks["register"] = Registration(client, args.dns_service, args.cluster_ip, str(args.advertise_address[0]),
                                         port, metrics_port, interval=args.register_interval,
                                         lease_ttl=args.lease_ttl).run()
    elif args.dns_service:
        log.warning("listening on %s with no --advertise-address: not registering in the Endpoints of %s/%s",
                    host, *args.dns_service)
    return tasks, server


async def run(args) -> None:
    metrics = Metrics()
    if args.metrics_listen:
        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=metrics.registry)
    async with Client.for_component(args.kubeconfig, args.apiserver, user_agent="kctl-dns") as client:
        tasks, _ = build(client, args, metrics)
        log.info("cluster domain %s, ttl %ds, pods %s, upstreams: %s", args.cluster_domain, args.ttl,
                 args.pods, ", ".join(f"{h}:{p}" for h, p in args.upstream) or "none (outside names REFUSED)")
        await run_tasks({**tasks, **certreload.reload_tasks(client, args.kubeconfig,
                                                            args.credentials_reload_interval)})


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging("kctl-dns", args.verbose)
    return run_component(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
