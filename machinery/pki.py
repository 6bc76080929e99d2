"""The cluster's PKI, made with the `cryptography` package, in kubeadm's
file layout under one cert dir:

    ca.crt / ca.key                        the cluster CA (CN=kubernetes), 10 years
    apiserver.crt / .key                   the apiserver's serving certificate: SANs for every
                                           address it is reached on (127.0.0.1, localhost, the
                                           host name, the `kubernetes` Service's ClusterIP and
                                           kubernetes.default.svc names, the addresses given)
    apiserver-kubelet-client.crt / .key    the apiserver's client certificate towards node agents
                                           (CN=kube-apiserver-kubelet-client, O=system:masters)
    sa.key / sa.pub                        the ServiceAccount token signing key pair (RSA)
    admin.conf                             kubeconfig: CN=kubernetes-admin, O=system:masters
    scheduler.conf                         kubeconfig: CN=system:kube-scheduler
    controller-manager.conf                kubeconfig: CN=system:kube-controller-manager
    dns.conf                               kubeconfig: CN=system:kube-dns
    nodes/NAME.conf, nodes/NAME.crt/.key   a node: CN=system:node:NAME, O=system:nodes; the one
                                           certificate is also the agent's serving certificate
                                           (SANs: its name and address)
    users/NAME.conf                        `kctl pki user`: any CN and groups
    etcd/ca.crt / .key                     etcd's own CA (`etcd()`): a certificate of the cluster CA
                                           (any user's) must not open etcd
    etcd/server.crt / .key                 etcd's serving and peer certificate (SANs: loopback + addresses)
    apiserver-etcd-client.crt / .key       the apiserver towards etcd (etcd CA)

Certificates are ECDSA P-256 (fast to make, as kubeadm's `--encryption-
algorithm ECDSA-P256`), valid one year (`CERT_DAYS`); kubeconfigs embed
their certificate, key and the CA (`*-data`), so each is one file to hand
over. Every writer keeps what exists: running `init` twice, or on a
directory someone filled by hand, changes nothing already there (like
`kubeadm init phase certs`). Keys are written 0600.

`ca_hash()` is the CA's public key pin as kubeadm prints it for `kubeadm
join --discovery-token-ca-cert-hash`: "sha256:" + hex(sha256(the CA's
DER SubjectPublicKeyInfo)).
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from machinery import kubeconfig as kc
from machinery.errors import ConfigError

CA_DAYS = 3650
CERT_DAYS = 365
MASTERS = "system:masters"
NODES = "system:nodes"
ADMIN = "kubernetes-admin"
SCHEDULER = "system:kube-scheduler"
CONTROLLER_MANAGER = "system:kube-controller-manager"
DNS = "system:kube-dns"
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")
# component kubeconfig file -> (CN, groups), as kubeadm names them
COMPONENTS = {"admin.conf": (ADMIN, (MASTERS,)), "scheduler.conf": (SCHEDULER, ()),
              "controller-manager.conf": (CONTROLLER_MANAGER, ()), "dns.conf": (DNS, ())}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str, orgs=()) -> x509.Name:
    return x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError(f"not a PEM certificate: {exc}") from exc


def load_key(pem: bytes):
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a PEM private key (unencrypted): {exc}") from exc


def _sans(dns=(), ips=()) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for d in dict.fromkeys(dns):
        out.append(x509.DNSName(d))
    for ip in dict.fromkeys(str(ipaddress.ip_address(i)) for i in ips):
        out.append(x509.IPAddress(ipaddress.ip_address(ip)))
    return out


def split_sans(values) -> tuple[list[str], list[str]]:
    """("10.0.0.1", "api.example") -> (dns names, ip addresses)."""
    dns, ips = [], []
    for v in values:
        try:
            ips.append(str(ipaddress.ip_address(v.strip("[]"))))
        except ValueError:
            dns.append(v)
    return dns, ips


@dataclass
class CA:
    cert: x509.Certificate
    key: object

    @classmethod
    def create(cls, cn: str = "kubernetes", days: int = CA_DAYS) -> "CA":
        key = new_key()
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=True,
                                             crl_sign=False, content_commitment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False, decipher_only=False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @classmethod
    def load(cls, cert_dir: str | os.PathLike) -> "CA":
        d = Path(cert_dir)
        try:
            return cls(load_cert((d / "ca.crt").read_bytes()), load_key((d / "ca.key").read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read the cluster CA in {d}: {exc.strerror}") from exc

    def issue(self, cn: str, orgs=(), *, client: bool = True, server: bool = False, dns=(), ips=(),
              days: int = CERT_DAYS, key=None) -> tuple[x509.Certificate, object]:
        """A certificate signed by this CA and its (new) key."""
        key = key or new_key()
        now = _now()
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(self.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(min(now + datetime.timedelta(days=days), self.cert.not_valid_after_utc))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                          crl_sign=False, content_commitment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False),
                            critical=True)
             .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                            critical=False))
        names = _sans(dns, ips)
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(self.key, hashes.SHA256()), key


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a certificate's SubjectAltName."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


def covers(cert: x509.Certificate, dns=(), ips=()) -> bool:
    have_dns, have_ips = sans(cert)
    return set(dns) <= have_dns and {str(ipaddress.ip_address(i)) for i in ips} <= have_ips


def ca_hash(cert: x509.Certificate) -> str:
    """kubeadm's --discovery-token-ca-cert-hash of a CA certificate."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def subject(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    """(CN, O values): a client certificate's user name and groups, as Kubernetes reads them."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else ""), tuple(str(o.value) for o in orgs)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_pair(cert_dir, base: str, cert: x509.Certificate, key) -> None:
    d = Path(cert_dir)
    _write(d / f"{base}.key", key_pem(key), private=True)
    _write(d / f"{base}.crt", cert_pem(cert))


@dataclass
class Endpoints:
    """Where the apiserver is reached: the serving certificate's SANs and the
    kubeconfigs' servers (`https_url` for kubectl, `grpc` for kctl: HOST:PORT,
    or a comma list of every apiserver of an HA control plane, all of them SANs)."""
    grpc: str = "127.0.0.1:6443"
    https_url: str = "https://127.0.0.1:6444"
    dns: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    service_ip: str = "10.96.0.1"
    cluster_name: str = "kubernetes"

    def serving_sans(self) -> tuple[list[str], list[str]]:
        hosts = [*(g.strip().rpartition(":")[0] for g in self.grpc.split(",")),   # every apiserver of an HA list
                 self.https_url.split("://", 1)[-1].rpartition(":")[0]]
        dns, ips = split_sans([h for h in hosts if h and h not in ("0.0.0.0", "[::]", "::")])
        return ([*SERVICE_NAMES, "localhost", socket.gethostname(), *self.dns, *dns],
                ["127.0.0.1", self.service_ip, *self.ips, *ips])


class PKI:
    """The cert dir: create what is missing, read what is there."""

    def __init__(self, cert_dir: str | os.PathLike, endpoints: Endpoints | None = None):
        self.dir = Path(cert_dir)
        self.endpoints = endpoints or Endpoints()
        self._ca: CA | None = None

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def ca(self) -> CA:
        if self._ca is None:
            if not self.path("ca.crt").exists():
                ca = CA.create()
                write_pair(self.dir, "ca", ca.cert, ca.key)
            self._ca = CA.load(self.dir)
        return self._ca

    def ca_pem(self) -> bytes:
        return cert_pem(self.ca.cert)

    def _pair(self, base: str, make) -> None:
        if not (self.path(f"{base}.crt").exists() and self.path(f"{base}.key").exists()):
            cert, key = make()
            write_pair(self.dir, base, cert, key)

    def serving(self) -> None:
        """apiserver.crt/.key; issued again when it lacks an address now asked for."""
        dns, ips = self.endpoints.serving_sans()
        crt = self.path("apiserver.crt")
        if crt.exists() and not covers(load_cert(crt.read_bytes()), dns, ips):
            crt.unlink()
        self._pair("apiserver", lambda: self.ca.issue("kube-apiserver", client=False, server=True,
                                                      dns=dns, ips=ips))

    def kubelet_client(self) -> None:
        self._pair("apiserver-kubelet-client", lambda: self.ca.issue(APISERVER_KUBELET_CLIENT, (MASTERS,)))

    def service_account(self) -> None:
        if self.path("sa.key").exists() and self.path("sa.pub").exists():
            return
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(self.path("sa.key"), key_pem(key), private=True)
        _write(self.path("sa.pub"), key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def kubeconfig(self, file: str, cn: str, groups=(), *, cert=None, key=None, namespace: str = "") -> Path:
        """A kubeconfig for one identity (kept if it exists); returns its path."""
        path = self.path(file)
        if not path.exists():
            if cert is None:
                cert, key = self.ca.issue(cn, groups)
            ep = self.endpoints
            doc = kc.document(ep.cluster_name, cn, https_url=ep.https_url, grpc=ep.grpc, ca_pem=self.ca_pem(),
                              cert_pem=cert_pem(cert), key_pem=key_pem(key), namespace=namespace)
            _write(path, kc.dump(doc), private=True)
        return path

    def node(self, name: str, ip: str = "") -> Path:
        """nodes/NAME.conf and nodes/NAME.crt/.key (client and serving: SANs name and ip)."""
        base = f"nodes/{name}"
        self._pair(base, lambda: self.ca.issue(f"system:node:{name}", (NODES,), server=True, dns=[name],
                                               ips=[ip] if ip else []))
        cert = load_cert(self.path(f"{base}.crt").read_bytes())
        key = load_key(self.path(f"{base}.key").read_bytes())
        return self.kubeconfig(f"{base}.conf", f"system:node:{name}", cert=cert, key=key)

    def user(self, name: str, groups=(), days: int = CERT_DAYS) -> Path:
        cert, key = self.ca.issue(name, groups, days=days)
        return self.kubeconfig(f"users/{name}.conf", name, groups, cert=cert, key=key)

    def etcd(self, ips=()) -> None:
        """etcd's CA, serving certificate and the apiserver's etcd client certificate (kubeadm's names)."""
        d = self.dir / "etcd"
        if not (d / "ca.crt").exists():
            ca = CA.create("etcd-ca")
            write_pair(d, "ca", ca.cert, ca.key)
        # The CA's key is read only to issue a missing pair: a control plane given
        # its finished etcd certificates without etcd/ca.key (the Vagrant bundle) is complete.
        dns, addrs = ["localhost", socket.gethostname()], ["127.0.0.1", *ips]
        self._pair("etcd/server", lambda: CA.load(d).issue("kube-etcd", server=True, client=True,
                                                           dns=dns, ips=addrs))
        self._pair("apiserver-etcd-client", lambda: CA.load(d).issue("kube-apiserver-etcd-client"))

    def control_plane(self) -> None:
        """Everything the apiserver and the control-plane components need
        (`kubeadm init phase certs all` + `kubeconfig all`)."""
        _ = self.ca
        self.serving()
        self.kubelet_client()
        self.service_account()
        for file, (cn, groups) in COMPONENTS.items():
            self.kubeconfig(file, cn, groups)


def verify_chain(cert: x509.Certificate, ca_cert: x509.Certificate, *, server_name: str | None = None,
                 when: datetime.datetime | None = None) -> None:
    """Verify `cert` against `ca_cert` as a TLS peer would: as a server
    certificate for `server_name` (cryptography's X.509 verifier: signature,
    validity, usage, SANs), else as a client certificate (signed by the CA,
    valid at `when`, clientAuth usage; client certificates carry no SANs,
    which the RFC 5280 client verifier insists on). Raises ConfigError."""
    from cryptography.x509 import verification as v
    when = when or _now()
    what = cert.subject.rfc4514_string()
    if server_name is not None:
        try:
            name = x509.IPAddress(ipaddress.ip_address(server_name))
        except ValueError:
            name = x509.DNSName(server_name)
        try:
            v.PolicyBuilder().store(v.Store([ca_cert])).time(when).build_server_verifier(name).verify(cert, [])
        except v.VerificationError as exc:
            raise ConfigError(f"certificate {what} does not verify: {exc}") from exc
        return
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigError(f"certificate {what} does not verify: not signed by {ca_cert.subject.rfc4514_string()}") \
            from exc
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise ConfigError(f"certificate {what} does not verify: expired or not yet valid "
                          f"(valid {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
                          f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise ConfigError(f"certificate {what} does not verify: not for client authentication")
