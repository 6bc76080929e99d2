"""`kctl pki`: the cluster's certificates by hand, as `kubeadm init phase
certs` / `kubeconfig` and `kubeadm certs` do it (machinery.pki does the work).

    kctl pki init  [--cert-dir DIR] [--address 10.0.0.1]... [--grpc-server H:P] [--https-server URL] [--etcd]
    kctl pki node  NAME --ip IP [--cert-dir DIR]            nodes/NAME.conf (+ .crt/.key, client and serving)
    kctl pki user  NAME [--group G]... [--days N]           users/NAME.crt/.key and users/NAME.conf
    kctl pki ca-hash [--cert-dir DIR]                       sha256:<hex>, kubeadm's --discovery-token-ca-cert-hash
    kctl pki check-expiration [--cert-dir DIR]              every certificate, its subject and expiry
    kctl pki renew NAME...|all [--days N] [--cert-dir DIR]  renew certificates (`kubeadm certs renew`)

The cert dir defaults to the apiserver's (/var/lib/kctl/apiserver/pki).
Nothing that exists is overwritten: `init` on a filled directory only adds
what is missing (a serving certificate missing an address is issued
again). A user's certificate is an identity only: what the user may do is
granted with RBAC (a RoleBinding or ClusterRoleBinding naming the user or
one of its groups).

`renew` issues again, from the CA on disk, the certificates named
(admin.conf, scheduler.conf, controller-manager.conf, dns.conf, apiserver,
apiserver-kubelet-client, apiserver-etcd-client, etcd/server,
nodes/NODE.conf) or `all` of them, whatever their expiry, keeping subject,
SANs and usages (machinery/pkirenew.py). Running components pick them up
without a restart (machinery/certreload.py).
"""
from __future__ import annotations

import datetime

import click

from machinery import pki
from machinery.errors import ConfigError

DEFAULT_CERT_DIR = "/var/lib/kctl/apiserver/pki"


def _cert_dir_option(f):
    return click.option("--cert-dir", default=DEFAULT_CERT_DIR, show_default=True,
                        help="The directory of the cluster's certificates (kubeadm's layout).")(f)


def _fail(exc: Exception):
    raise click.ClickException(str(exc)) from exc


@click.group("pki")
def pki_group():
    """Create the cluster's CA, certificates and kubeconfigs (like kubeadm init phase certs)."""


@pki_group.command("init")
@_cert_dir_option
@click.option("--address", "addresses", multiple=True,
              help="Another name or IP the apiserver is reached at (a SAN; repeatable).")
@click.option("--grpc-server", default="127.0.0.1:6443", show_default=True,
              help="The apiserver's gRPC HOST:PORT written into the kubeconfigs (also a SAN).")
@click.option("--https-server", default="https://127.0.0.1:8080", show_default=True,
              help="The apiserver's HTTPS URL written into the kubeconfigs (also a SAN).")
@click.option("--service-cidr", default="10.96.0.0/16", show_default=True,
              help="The Service range: its first address (the kubernetes Service) is a SAN.")
@click.option("--cluster-name", default="kubernetes", show_default=True)
@click.option("--etcd", "with_etcd", is_flag=True,
              help="Also etcd's CA, its serving certificate and the apiserver's etcd client certificate.")
def init_cmd(cert_dir, addresses, grpc_server, https_server, service_cidr, cluster_name, with_etcd):
    """CA, apiserver serving and kubelet-client certificates, sa.key/sa.pub and the
    admin, scheduler, controller-manager and dns kubeconfigs (what is missing)."""
    import ipaddress
    dns, ips = pki.split_sans(addresses)
    try:
        service_ip = str(next(ipaddress.ip_network(service_cidr, strict=False).hosts()))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--service-cidr") from exc
    store = pki.PKI(cert_dir, pki.Endpoints(grpc=grpc_server, https_url=https_server, dns=dns, ips=ips,
                                            service_ip=service_ip, cluster_name=cluster_name))
    try:
        store.control_plane()
        if with_etcd:
            store.etcd(ips)
    except (ConfigError, OSError) as exc:
        _fail(exc)
    click.echo(f"[certs] cluster CA, serving and client certificates in {store.dir}")
    click.echo(f"[kubeconfig] admin: export KUBECONFIG={store.path('admin.conf')}")
    click.echo(f"CA hash: {pki.ca_hash(store.ca.cert)}")


def _store(cert_dir: str) -> pki.PKI:
    store = pki.PKI(cert_dir)
    if not store.path("ca.crt").exists() or not store.path("ca.key").exists():
        raise click.ClickException(f"no cluster CA in {cert_dir} (ca.crt and ca.key): run `kctl pki init` first")
    return store


def _server_of(store: pki.PKI, grpc_server: str | None, https_server: str | None) -> None:
    """Take the addresses of new kubeconfigs from admin.conf unless given."""
    from machinery import kubeconfig
    if store.path("admin.conf").exists():
        sel = kubeconfig.select(store.path("admin.conf"))
        store.endpoints.grpc = sel.grpc or store.endpoints.grpc
        store.endpoints.https_url = sel.https_url or store.endpoints.https_url
    store.endpoints.grpc = grpc_server or store.endpoints.grpc
    store.endpoints.https_url = https_server or store.endpoints.https_url


@pki_group.command("node")
@click.argument("name")
@click.option("--ip", required=True, help="The node's address (a SAN of its serving certificate).")
@_cert_dir_option
@click.option("--grpc-server", default=None, help="gRPC HOST:PORT for the kubeconfig (default: admin.conf's).")
@click.option("--https-server", default=None, help="HTTPS URL for the kubeconfig (default: admin.conf's).")
def node_cmd(name, ip, cert_dir, grpc_server, https_server):
    """A node's certificate (CN=system:node:NAME, O=system:nodes) and kubeconfig."""
    store = _store(cert_dir)
    _server_of(store, grpc_server, https_server)
    try:
        path = store.node(name, ip)
    except (ConfigError, OSError, ValueError) as exc:
        _fail(exc)
    click.echo(f"node {name}: {path} (certificate {store.path(f'nodes/{name}.crt')})")


@pki_group.command("user")
@click.argument("name")
@click.option("--group", "groups", multiple=True, help="A group (the certificate's O; repeatable).")
@click.option("--days", type=click.IntRange(1, 3650), default=pki.CERT_DAYS, show_default=True)
@_cert_dir_option
@click.option("--grpc-server", default=None, help="gRPC HOST:PORT for the kubeconfig (default: admin.conf's).")
@click.option("--https-server", default=None, help="HTTPS URL for the kubeconfig (default: admin.conf's).")
def user_cmd(name, groups, days, cert_dir, grpc_server, https_server):
    """A user's client certificate (CN=NAME, O=each group) and a kubeconfig of its own."""
    store = _store(cert_dir)
    crt = store.path(f"users/{name}.crt")
    if crt.exists():
        raise click.ClickException(f"{crt} exists: a user's certificate is made once (remove it to make a new one)")
    _server_of(store, grpc_server, https_server)
    cert, key = store.ca.issue(name, groups, days=days)
    pki.write_pair(store.dir / "users", name, cert, key)
    path = store.kubeconfig(f"users/{name}.conf", name, groups, cert=cert, key=key)
    click.echo(f"user {name}{' (groups ' + ', '.join(groups) + ')' if groups else ''}: "
               f"{crt}, {store.path(f'users/{name}.key')}")
    click.echo(f"kubeconfig: {path}")
    click.echo(f"add to yours: kctl config set-credentials {name} --client-certificate={crt} "
               f"--client-key={store.path(f'users/{name}.key')} --embed-certs")


@pki_group.command("ca-hash")
@_cert_dir_option
def ca_hash_cmd(cert_dir):
    """The CA's public key hash, as kubeadm prints it for `join`."""
    click.echo(pki.ca_hash(_store(cert_dir).ca.cert))


@pki_group.command("check-expiration")
@_cert_dir_option
def check_expiration_cmd(cert_dir):
    """Every certificate of the cert dir: subject, expiry, days left; the
    kubeconfigs' client certificates too (admin.conf, scheduler.conf, ...: as
    kubeadm's check-expiration lists them, by the kubeconfig's name)."""
    from kubectlish.printers import tabwrite
    from machinery import kubeconfig
    d = pki.PKI(cert_dir).dir
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = ["CERTIFICATE\tSUBJECT\tEXPIRES\tRESIDUAL TIME"]
    found = []
    for path in sorted(d.rglob("*.crt")):
        try:
            found.append((path, pki.load_cert(path.read_bytes())))
        except ConfigError:
            continue
    for path in sorted(d.rglob("*.conf")):
        try:
            pem = kubeconfig.select(path).credentials.cert_pem
            if pem:
                found.append((path, pki.load_cert(pem)))
        except (ConfigError, OSError):
            continue
    for path, c in sorted(found, key=lambda pc: str(pc[0].relative_to(d))):
        left = c.not_valid_after_utc - now
        lines.append(f"{path.relative_to(d)}\t{c.subject.rfc4514_string()}\t"
                     f"{c.not_valid_after_utc:%Y-%m-%d %H:%M}Z\t{max(left.days, 0)}d")
    if len(lines) == 1:
        raise click.ClickException(f"no certificates in {d}")
    click.echo(tabwrite(lines), nl=False)


@pki_group.command("renew")
@click.argument("names", nargs=-1, required=True)
@click.option("--days", type=click.IntRange(1, 3650), default=pki.CERT_DAYS, show_default=True,
              help="Validity of the renewed certificates (never past the CA's own).")
@_cert_dir_option
def renew_cmd(names, days, cert_dir):
    """Renew certificates of the cert dir (NAME... or all), like kubeadm certs renew."""
    from machinery import pkirenew
    _store(cert_dir)
    todo = pkirenew.names(cert_dir) if "all" in names else list(dict.fromkeys(names))
    try:
        for name in todo:                  # every name checked before anything is written
            pkirenew.check_name(name)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="NAMES") from exc
    for name in todo:
        try:
            path, cert = pkirenew.renew(cert_dir, name, datetime.timedelta(days=days))
        except (ConfigError, OSError) as exc:
            _fail(exc)
        click.echo(f"[renew] {name}: {path} renewed (CN={pki.subject(cert)[0]}, "
                   f"until {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z)")
    click.echo("Done renewing certificates. Running components use the new ones within seconds "
               "(they re-read their files); nothing needs a restart.")
