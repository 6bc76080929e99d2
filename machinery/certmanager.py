"""A node's client certificate: bootstrap with a token, then renewal
(Kubernetes' kubelet/certificate/bootstrap and client-go's
util/certificate manager).

Bootstrap (`bootstrap()`, before the node agent starts):

    --kubeconfig holds a client certificate that is still valid?  use it.
    else  read --bootstrap-kubeconfig (server, CA, bootstrap token),
          load or make the private key (kept in <cert-dir> across restarts,
          so a restarted agent finds the CSR it already submitted: the CSR
          name is a digest of the public key and the node name),
          submit a CertificateSigningRequest (signer
          kubernetes.io/kube-apiserver-client-kubelet, CN=system:node:NAME,
          O=system:nodes, usages digital signature + client auth) as the
          bootstrap user, wait until it is issued (Denied or Failed: error),
          write <cert-dir>/kubelet-client-<time>.pem (certificate + key),
          point kubelet-client-current.pem at it, and write --kubeconfig
          with the server, the CA and that file.

Renewal (`Renewer.run()`, a task of the running agent): sleep until a
jittered 70-90% of the current certificate's lifetime has passed
(client-go's nextRotationDeadline), then do the same request with a new
key as the node itself (the approver approves a node renewing its own
certificate), store the new pair, swap the symlink and call on_rotate so
the agent reconnects with it. Failures are retried with backoff; the old
certificate stays in use until a new one is stored.

Serving certificate (kubelet's --rotate-server-certificates): the same
Renewer with `serving(ips, dns_names)` instead of CLIENT requests a
kubernetes.io/kubelet-serving certificate as the node (CN=system:node:NAME,
O=system:nodes, SANs = the node's IPs and host name, usages digital
signature, key encipherment, server auth), right away when there is none
or the current one names other addresses (a restarted agent with a new
--node-ip), then at the same 70-90% of its lifetime, and keeps it in
<cert-dir>/kubelet-server-<time>.pem behind kubelet-server-current.pem
(the agent's logs/exec server re-reads that file when it changes).

Talking to the API goes through `make_client(Credentials)`, injected: the
node agent passes a factory that builds an authenticated client from the
credentials (TLS with the CA, the bearer token or the client certificate).
"""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import logging
import os
import random
import time
from dataclasses import dataclass

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from machinery import csr as csrs, errors, kinds
from machinery.kubeconfig import grpc_extension, grpc_server
from machinery.errors import ConfigError

log = logging.getLogger("kctl.certmanager")

CURRENT = "kubelet-client-current.pem"
SERVING_CURRENT = "kubelet-server-current.pem"
PENDING_KEY = "kubelet-client.key.tmp"
POLL = 0.5


@dataclass(frozen=True)
class Kind:
    """Which certificate: the files' prefix, the CSR's name prefix, signer, usages and
    request (a function of the key and node name)."""
    prefix: str
    csr_prefix: str
    signer: str
    usages: tuple
    request: object
    required: bool = True       # Renewer.run: no current certificate is an error (else: request one now)
    sans: dict | None = None    # the subjectAltNames a current certificate must have (else: request one now)

    def satisfied_by(self, cert) -> bool:
        """Does cert still match what would be requested (client-go's certSatisfiesTemplate, SANs)?"""
        if self.sans is None:
            return True
        have = csrs.sans(cert)
        return all(sorted(have[k]) == sorted(v) for k, v in self.sans.items())

    @property
    def current(self) -> str:
        return f"{self.prefix}-current.pem"


CLIENT = Kind("kubelet-client", "node-csr-", csrs.KUBE_APISERVER_CLIENT_KUBELET, csrs.NODE_CLIENT_USAGES,
              csrs.node_request)


def serving(ips=(), dns_names=()) -> Kind:
    """The node's serving certificate for these addresses (see the module docstring)."""
    return Kind("kubelet-server", "node-serving-csr-", csrs.KUBELET_SERVING, csrs.NODE_SERVING_USAGES,
                lambda key, node: csrs.node_serving_request(key, node, ips, dns_names), required=False,
                sans={"IP": [str(ipaddress.ip_address(i)) for i in ips], "DNS": list(dns_names)})


class CertificateNotIssued(ConfigError):
    """The CSR was denied, failed, or not issued in time."""


@dataclass
class Credentials:
    server: str
    ca_pem: bytes | None = None
    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    grpc: str | None = None          # the gRPC address(es), a comma list (machinery.kubeconfig.grpc_server)


# ---------------------------------------------------------------- kubeconfig

def _file_or_data(base: str, entry: dict, name: str) -> bytes | None:
    import base64
    if entry.get(f"{name}-data"):
        return base64.b64decode(entry[f"{name}-data"])
    path = entry.get(name)
    if not path:
        return None
    with open(os.path.join(base, path), "rb") as f:
        return f.read()


def load_kubeconfig(path: str) -> Credentials:
    """The current context's server, CA and credentials (token or client certificate)."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        ctx_name = doc.get("current-context") or (doc.get("contexts") or [{}])[0].get("name")
        ctx = next(c["context"] for c in doc.get("contexts") or [] if c.get("name") == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c.get("name") == ctx.get("cluster"))
        user = next((u.get("user") or {} for u in doc.get("users") or [] if u.get("name") == ctx.get("user")), {})
        base = os.path.dirname(os.path.abspath(path))
        return Credentials(server=cluster["server"], ca_pem=_file_or_data(base, cluster, "certificate-authority"),
                           token=user.get("token"), cert_pem=_file_or_data(base, user, "client-certificate"),
                           key_pem=_file_or_data(base, user, "client-key"), grpc=grpc_server(cluster))
    except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError, ValueError) as exc:
        raise ConfigError(f"cannot use kubeconfig {path}: {exc}") from exc


def kubeconfig_doc(server: str, ca_pem: bytes | None, user: dict, grpc: str | None = None) -> dict:
    import base64
    cluster: dict = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    if grpc:
        cluster["extensions"] = [grpc_extension(grpc)]
    return {"apiVersion": "v1", "kind": "Config", "current-context": "default-context",
            "clusters": [{"name": "default-cluster", "cluster": cluster}],
            "contexts": [{"name": "default-context", "context": {"cluster": "default-cluster",
                                                                 "user": "default-auth", "namespace": "default"}}],
            "users": [{"name": "default-auth", "user": user}]}


def write_file(path: str, data: bytes, mode: int = 0o600) -> None:
    """Atomically (temporary file + rename), private by default."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_kubeconfig(path: str, server: str, ca_pem: bytes | None, grpc: str | None = None, **user) -> None:
    write_file(path, yaml.safe_dump(kubeconfig_doc(server, ca_pem, user, grpc), sort_keys=False).encode())


# ------------------------------------------------------------------- storage

def store_pair(cert_dir: str, cert_pem: bytes, key_pem: bytes, now: float | None = None, kind: Kind = CLIENT) -> str:
    """Write <prefix>-<time>.pem (cert + key) and point <prefix>-current.pem at it."""
    stamp = datetime.datetime.fromtimestamp(now or time.time(), datetime.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
    name = f"{kind.prefix}-{stamp}.pem"
    write_file(os.path.join(cert_dir, name), cert_pem + key_pem)
    link = os.path.join(cert_dir, kind.current)
    tmp = f"{link}.{os.getpid()}.tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(name, tmp)
    os.replace(tmp, link)
    return link


def load_pair(path: str) -> tuple[x509.Certificate, bytes, bytes] | None:
    """(certificate, cert PEM, key PEM) of a combined PEM file, None when absent or unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    start = data.find(b"-----BEGIN CERTIFICATE-----")
    key_at = data.find(b"-----BEGIN", data.find(b"-----END CERTIFICATE-----"))
    if start < 0 or key_at < 0:
        return None
    try:
        cert = x509.load_pem_x509_certificate(data[start:key_at])
        serialization.load_pem_private_key(data[key_at:], password=None)
    except ValueError:
        return None
    return cert, data[start:key_at], data[key_at:]


def valid(cert: x509.Certificate, now: float) -> bool:
    return cert.not_valid_before_utc.timestamp() <= now < cert.not_valid_after_utc.timestamp()


def rotation_deadline(cert: x509.Certificate, rand: float) -> float:
    """notBefore + (70% + 20%*rand) of the lifetime (client-go's jitteryDuration)."""
    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    return start + (end - start) * (0.7 + 0.2 * rand)


# ------------------------------------------------------------------ requests

def csr_name(key, node_name: str, prefix: str = CLIENT.csr_prefix) -> str:
    """node-csr-<digest of the public key and node name>: the same key finds the same CSR."""
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return prefix + hashlib.sha256(pub + node_name.encode()).hexdigest()[:40]


def _same_key(cert_pem: bytes, key) -> bool:
    return csrs.load_certificate(cert_pem).public_key() == key.public_key()


async def request_certificate(client, key, node_name: str, *, expiration_seconds: int | None = None,
                              timeout: float = 3600.0, poll: float = POLL, kind: Kind = CLIENT) -> bytes:
    """Submit (or find) the node's CSR of `kind` for key and wait for its certificate."""
    name = csr_name(key, node_name, kind.csr_prefix)
    c = kinds.new("CertificateSigningRequest")
    c.metadata.name = name
    c.spec.request = kind.request(key, node_name)
    c.spec.signer_name = kind.signer
    c.spec.usages.extend(kind.usages)
    if expiration_seconds:
        c.spec.expiration_seconds = expiration_seconds
    try:
        await client.create(c)
        log.info("submitted certificate signing request %s", name)
    except errors.AlreadyExists:
        log.info("waiting for the certificate signing request %s submitted earlier", name)
    deadline = time.monotonic() + timeout
    while True:
        got = await client.get("CertificateSigningRequest", name)
        for ctype in (csrs.DENIED, csrs.FAILED):
            cond = csrs.condition(got, ctype)
            if cond is not None:
                raise CertificateNotIssued(f"certificate signing request {name} is {ctype.lower()}, reason: "
                                           f"{cond.reason}, message: {cond.message}")
        if got.status.certificate:
            if not _same_key(got.status.certificate, key):
                raise CertificateNotIssued(f"the certificate of {name} is not for our key")
            return bytes(got.status.certificate)
        if time.monotonic() > deadline:
            raise CertificateNotIssued(f"timed out waiting for the certificate of {name} (is it approved? "
                                       f"kctl certificate approve {name})")
        await asyncio.sleep(poll)


def _pending_key(cert_dir: str):
    path = os.path.join(cert_dir, PENDING_KEY)
    try:
        with open(path, "rb") as f:
            return csrs.load_key(f.read())
    except (OSError, ValueError):
        key = csrs.new_key()
        write_file(path, csrs.key_pem(key))
        return key


async def bootstrap(*, kubeconfig: str, bootstrap_kubeconfig: str, cert_dir: str, node_name: str,
                    make_client, now=time.time, timeout: float = 3600.0, poll: float = POLL,
                    grpc: str | None = None) -> bool:
    """Make sure kubeconfig has a valid client certificate; True if a new one was obtained.
    `grpc` (the agent's --apiserver) goes into the written kubeconfig as its gRPC address."""
    if os.path.exists(kubeconfig):
        creds = load_kubeconfig(kubeconfig)
        current = load_pair(os.path.join(cert_dir, CURRENT))
        if creds.cert_pem and current is not None and valid(current[0], now()):
            log.info("kubeconfig %s has a valid client certificate (until %s)", kubeconfig,
                     current[0].not_valid_after_utc.isoformat())
            return False
    boot = load_kubeconfig(bootstrap_kubeconfig)
    if not boot.token and not boot.cert_pem:
        raise ConfigError(f"bootstrap kubeconfig {bootstrap_kubeconfig} has no token or client certificate")
    key = _pending_key(cert_dir)
    client = make_client(boot)
    try:
        cert_pem = await request_certificate(client, key, node_name, timeout=timeout, poll=poll)
    finally:
        await client.close()
    current = store_pair(cert_dir, cert_pem, csrs.key_pem(key), now())
    os.unlink(os.path.join(cert_dir, PENDING_KEY))
    write_kubeconfig(kubeconfig, boot.server, boot.ca_pem, grpc, **{"client-certificate": os.path.abspath(current),
                                                                    "client-key": os.path.abspath(current)})
    log.info("wrote %s with the client certificate of system:node:%s", kubeconfig, node_name)
    return True


class Renewer:
    """Renews the node's client (or serving: `kind`) certificate before it expires (see the module docstring)."""

    def __init__(self, *, kubeconfig: str, cert_dir: str, node_name: str, make_client, on_rotate=None,
                 clock=time.time, sleep=asyncio.sleep, rand=random.random, poll: float = POLL, kind: Kind = CLIENT):
        self.kubeconfig, self.cert_dir, self.node_name, self.kind = kubeconfig, cert_dir, node_name, kind
        self.make_client, self.on_rotate = make_client, on_rotate
        self.clock, self.sleep, self.rand, self.poll = clock, sleep, rand, poll

    async def renew_once(self) -> str:
        """Request, store and announce a new certificate; the path of the current pair."""
        creds = load_kubeconfig(self.kubeconfig)
        key = csrs.new_key()
        client = self.make_client(creds)
        try:
            cert_pem = await request_certificate(client, key, self.node_name, poll=self.poll, kind=self.kind)
        finally:
            await client.close()
        path = store_pair(self.cert_dir, cert_pem, csrs.key_pem(key), self.clock(), self.kind)
        log.info("rotated the %s certificate of system:node:%s (until %s)", self.kind.prefix, self.node_name,
                 csrs.load_certificate(cert_pem).not_valid_after_utc.isoformat())
        if self.on_rotate is not None:
            await self.on_rotate()
        return path

    async def run(self) -> None:
        backoff = 1.0
        while True:
            current = load_pair(os.path.join(self.cert_dir, self.kind.current))
            if current is None and self.kind.required:
                raise ConfigError(f"no client certificate at {os.path.join(self.cert_dir, self.kind.current)}")
            due = current is None or not self.kind.satisfied_by(current[0])    # none, or for other addresses
            wait = 0 if due else rotation_deadline(current[0], self.rand()) - self.clock()
            if wait > 0:
                log.info("next client certificate rotation in %.0fs", wait)
                await self.sleep(wait)
            try:
                await self.renew_once()
                backoff = 1.0
            except (errors.KctlError, OSError) as exc:
                log.warning("certificate rotation failed (retrying in %.0fs): %s", backoff, exc)
                await self.sleep(backoff)
                backoff = min(backoff * 2, 300.0)
