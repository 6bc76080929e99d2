"""The apiserver's TLS: serving certificate, client CA, its client
certificate towards node agents, for both transports.

Zero configuration stays zero (as k3s does it): without --tls-cert-file the
apiserver fills its --cert-dir with what is missing (machinery.pki: cluster
CA, serving certificate with SANs for every address it listens on, its
client certificate for the node agents, the ServiceAccount key pair and
kubeconfigs for the admin, scheduler, controller manager and kctl-dns) and
reuses it at the next start; a serving certificate that lacks an address
it now listens on is issued again from the same CA. It logs where the admin
kubeconfig is (`export KUBECONFIG=<cert-dir>/admin.conf`).

With --tls-cert-file/--tls-private-key-file the operator's files are used
as they are, and --client-ca-file is then required (the CA of client
certificates; gRPC cannot serve TLS without one, see apiserver.auth.authn).

etcd: plaintext to an http:// etcd (on the same machine's loopback: the
one-machine lab, the harness); an https:// etcd is reached with
--etcd-cafile/--etcd-certfile/--etcd-keyfile (the Vagrant set-up, where etcd
verifies the apiserver's client certificate against its own CA).

Both transports speak TLS 1.2 or later: gRPC requires and verifies a client
certificate in the handshake, HTTPS asks for one (CERT_OPTIONAL) and leaves
the rest to the authenticators (bearer tokens, 401).

Renewal (`kctl pki renew apiserver`): the serving certificate and the client
CA are read again when their files change, no restart: gRPC at the next
handshake (dynamic server credentials), HTTPS within 10 s (`reload_tasks`,
a polling task); open connections go on (machinery/certreload.py).
"""
from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from apiserver import etcdendpoints
from machinery import certreload, errors, pki
from machinery.kubeconfig import Credentials

log = logging.getLogger("kctl-apiserver")

X509_V_FLAG_NO_CHECK_TIME = 0x200000     # OpenSSL's; the ssl module does not name it

DEFAULT_CERT_DIR = "/var/lib/kctl/apiserver/pki"


@dataclass
class ServingTLS:
    cert_file: Path
    key_file: Path
    client_ca_file: Path
    kubelet: Credentials          # towards node agents: the cluster CA and apiserver-kubelet-client
    cert_dir: Path | None = None  # --cert-dir: sa.key / sa.pub (ServiceAccount tokens) live here
    _https: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    @property
    def sa_key_file(self) -> Path | None:
        return self.cert_dir / "sa.key" if self.cert_dir else None

    @property
    def sa_pub_file(self) -> Path | None:
        return self.cert_dir / "sa.pub" if self.cert_dir else None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that follow the files (re-read at a handshake after a change)."""
        files = (self.cert_file, self.key_file, self.client_ca_file)
        try:
            serving = certreload.ServingCertificate(lambda: tuple(f.read_bytes() for f in files),
                                                    [str(f) for f in files])
        except (errors.ConfigError, OSError) as exc:
            raise SystemExit(f"kctl-apiserver: serving certificate {self.cert_file}: {exc}") from None
        return serving.credentials()

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.client_ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        # The chain is verified in the handshake, the validity period by the authenticator on
        # every request (apiserver/auth/authn.py): an expired client certificate gets Kubernetes'
        # 401 "x509: certificate has expired or is not yet valid", not a reset connection.
        ctx.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
        self._https = ctx
        return ctx

    def reload_tasks(self) -> dict:
        """The task that loads a renewed certificate into the HTTPS context (once it was made)."""
        if self._https is None:
            return {}
        return {"https-certificate-reload": certreload.reload_ssl_context(self._https, str(self.cert_file),
                                                                          str(self.key_file))}


def _read(path: str | Path, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SystemExit(f"kctl-apiserver: {flag} {path}: {exc.strerror}") from None


def setup(args) -> ServingTLS:
    """The serving material the flags name, creating the cert dir's when none is named."""
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        raise SystemExit("kctl-apiserver: --tls-cert-file and --tls-private-key-file must be given together")
    if args.tls_cert_file:
        if not args.client_ca_file:
            raise SystemExit("kctl-apiserver: --tls-cert-file needs --client-ca-file (gRPC verifies client "
                             "certificates against it)")
        kubelet = Credentials(ca_pem=_read(args.client_ca_file, "--client-ca-file"),
                              cert_pem=_read(args.kubelet_client_certificate, "--kubelet-client-certificate")
                              if args.kubelet_client_certificate else None,
                              key_pem=_read(args.kubelet_client_key, "--kubelet-client-key")
                              if args.kubelet_client_key else None)
        return ServingTLS(Path(args.tls_cert_file), Path(args.tls_private_key_file), Path(args.client_ca_file),
                          kubelet, Path(args.cert_dir))
    store = pki.PKI(args.cert_dir, endpoints(args))
    store.control_plane()
    log.info("cluster CA and certificates in %s; admin kubeconfig: export KUBECONFIG=%s",
             store.dir, store.path("admin.conf"))
    ca = Path(args.client_ca_file) if args.client_ca_file else store.path("ca.crt")
    kubelet = Credentials(ca_pem=store.ca_pem(), cert_pem=store.path("apiserver-kubelet-client.crt").read_bytes(),
                          key_pem=store.path("apiserver-kubelet-client.key").read_bytes())
    return ServingTLS(store.path("apiserver.crt"), store.path("apiserver.key"), ca, kubelet, store.dir)


def etcd_credentials(args) -> grpc.ChannelCredentials | None:
    """TLS towards an https:// etcd (kube-apiserver's --etcd-cafile/--etcd-certfile/
    --etcd-keyfile), the same for every member of --etcd-servers; None for
    http:// (plaintext is for an etcd on loopback only)."""
    try:
        scheme, _ = etcdendpoints.parse_servers(args.etcd_servers)
    except errors.ConfigError as exc:
        raise SystemExit(f"kctl-apiserver: {exc}") from None
    if scheme != "https://":
        if args.etcd_cafile or args.etcd_certfile:
            raise SystemExit("kctl-apiserver: --etcd-cafile/--etcd-certfile need an https:// --etcd-servers")
        return None
    if not (args.etcd_cafile and args.etcd_certfile and args.etcd_keyfile):
        raise SystemExit("kctl-apiserver: an https:// etcd needs --etcd-cafile, --etcd-certfile and --etcd-keyfile")
    return grpc.ssl_channel_credentials(_read(args.etcd_cafile, "--etcd-cafile"),
                                        _read(args.etcd_keyfile, "--etcd-keyfile"),
                                        _read(args.etcd_certfile, "--etcd-certfile"))


def endpoints(args) -> pki.Endpoints:
    """Where this apiserver is reached: its listen addresses, --tls-san, the
    `kubernetes` Service's ClusterIP (the first address of the service range)."""
    import ipaddress
    service_ip = str(next(ipaddress.ip_network(args.service_cluster_ip_range, strict=False).hosts()))
    http = args.http_listen if args.http_listen and args.http_listen != "off" else "127.0.0.1:8080"
    dns, ips = pki.split_sans(args.tls_san or [])
    return pki.Endpoints(grpc=_reachable(args.listen), https_url=f"https://{_reachable(http)}", dns=dns, ips=ips,
                         service_ip=service_ip)


def _reachable(listen: str) -> str:
    """A listen address as a client dials it (a wildcard host: loopback)."""
    host, _, port = listen.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "[::]") else listen
