"""Certificates that follow their files: long-running clients and servers
pick up a renewed certificate without a restart.

Who renews what (issue 14):
- node agents renew their own client certificate with a CSR
  (machinery/certmanager.py, kubelet's way);
- everything else is files renewed by the operator, `kctl pki renew NAME|all`
  (machinery/pkirenew.py, what `kubeadm certs renew` does): the scheduler's,
  controller manager's and kctl-dns's kubeconfigs (certificate embedded),
  the apiserver's serving certificate, its client certificate towards the
  node agents.

How a running process notices, and why this way. client-go rotates a
client certificate held in files by polling: transport/cert_rotation.go
reloads the cert/key every 5 minutes and, when they changed, closes every
connection (util/connrotation's Dialer.CloseAll), so new connections present
the new certificate. It reloads only file *paths*; a kubeconfig with
embedded `client-certificate-data` (the kubeadm layout) is read once, and
kubeadm's answer is "restart the control plane components" after
`kubeadm certs renew`. kctl does what client-go does and extends it to the
whole kubeconfig, so renewal needs no restart at all:

- `KubeconfigReloader` (the scheduler, the controller manager, kctl-dns,
  every component given --kubeconfig): every `interval` seconds (10 s,
  --credentials-reload-interval) read the kubeconfig's current context again
  (embedded data and referenced files alike); when its credentials differ
  from the client's, check them (the certificate parses, the key is its key,
  it is not expired) and `Client.rotate` to them: new channels to every
  apiserver present the new certificate from then on; the old ones close
  after Client.rotate's grace, and the watches still open on them resume on
  the new ones (machinery/endpoints.py). A half-written or broken file
  is logged and the old credentials stay; the next period tries again.
  Polling rather than inotify: the files are replaced by rename (an inotify
  watch on the old inode would go quiet), they may sit on any file system,
  and one small read every 10 s costs nothing. It also warns, once per
  certificate, when the one in use has passed 80% of its lifetime and no
  renewed one has appeared (`kctl pki renew` is overdue).
- `ServingCertificate` (gRPC servers: the apiserver, the node agent's
  logs/exec port): gRPC's dynamic server credentials call a fetcher at every
  TLS handshake; ours stats the certificate's files (a few stat calls) and
  re-reads them only when one changed (inode, size or mtime), so new
  connections get the renewed certificate and established ones go on (what
  the apiserver's dynamiccertificates controller does with fsnotify plus a
  one-minute resync). A file that fails to load keeps the previous pair.
- `reload_ssl_context` is the same for an ssl.SSLContext (the apiserver's
  HTTPS port): a polling task calls `load_cert_chain` again on change, which
  the next handshakes use.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable, Sequence

import grpc

from machinery import kubeconfig
from machinery.errors import ConfigError

log = logging.getLogger("kctl.certreload")

RELOAD_INTERVAL = 10.0      # seconds between two reads of a kubeconfig / certificate files
WARN_AT = 0.8               # of a certificate's lifetime: warn that it was not renewed


def add_arguments(parser) -> None:
    """The components' --credentials-reload-interval."""
    parser.add_argument("--credentials-reload-interval", type=float, default=RELOAD_INTERVAL, metavar="SECONDS",
                        help="how often --kubeconfig is read again; a renewed client certificate there "
                             "(kctl pki renew) is used from then on, without a restart")


def check_pair(cert_pem: bytes | None, key_pem: bytes | None, now: float) -> None:
    """ConfigError unless cert_pem is a certificate valid at `now` and key_pem its private key."""
    from machinery import pki
    if not cert_pem or not key_pem:
        raise ConfigError("no client certificate and key")
    cert = pki.load_cert(cert_pem)
    key = pki.load_key(key_pem)
    if cert.public_key() != key.public_key():
        raise ConfigError(f"the key does not belong to the certificate {cert.subject.rfc4514_string()}")
    if not cert.not_valid_before_utc.timestamp() <= now < cert.not_valid_after_utc.timestamp():
        raise ConfigError(f"the certificate {cert.subject.rfc4514_string()} is not valid now "
                          f"(until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})")


def _lifetime_used(cert_pem: bytes, now: float) -> tuple[float, str]:
    from machinery import pki
    cert = pki.load_cert(cert_pem)
    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    return (now - start) / max(end - start, 1.0), f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"


class KubeconfigReloader:
    """Keeps `client` on the credentials of the kubeconfig at `path` (see the module docstring)."""

    def __init__(self, path: str, client, *, interval: float = RELOAD_INTERVAL, clock=time.time,
                 sleep=asyncio.sleep, load=None):
        self.path, self.client, self.interval = path, client, interval
        self.clock, self.sleep = clock, sleep
        self.load = load or (lambda p: kubeconfig.select(p).credentials)
        self._warned: bytes | None = None

    async def check(self) -> bool:
        """Read the kubeconfig once; True when the client was rotated to new credentials."""
        try:
            creds = self.load(self.path)
            if creds == self.client.credentials:
                self._warn_if_old()
                return False
            check_pair(creds.cert_pem, creds.key_pem, self.clock())
        except ConfigError as exc:
            log.warning("kubeconfig %s: not using its credentials (keeping the current ones): %s", self.path, exc)
            self._warn_if_old()
            return False
        await self.client.rotate(creds)
        _, until = _lifetime_used(creds.cert_pem, self.clock())
        log.info("kubeconfig %s changed: using its client certificate (valid until %s)", self.path, until)
        return True

    def _warn_if_old(self) -> None:
        cert = self.client.credentials.cert_pem
        if not cert or cert == self._warned:
            return
        used, until = _lifetime_used(cert, self.clock())
        if used >= WARN_AT:
            self._warned = cert
            log.warning("the client certificate of %s expires at %s (%.0f%% of its lifetime used) and no renewed "
                        "one is there: renew it (kctl pki renew)", self.path, until, used * 100)

    async def run(self) -> None:
        while True:
            await self.sleep(self.interval)
            await self.check()


def reload_tasks(client, kubeconfig_path: str | None, interval: float = RELOAD_INTERVAL) -> dict:
    """{"credentials-reload": coroutine} for a component's run_tasks, {} without a kubeconfig
    (or a non-positive interval: reloading off)."""
    if not kubeconfig_path or interval <= 0:
        return {}
    return {"credentials-reload": KubeconfigReloader(kubeconfig_path, client, interval=interval).run()}


# ------------------------------------------------------------------ servers

def _fingerprint(paths: Sequence[str], stat) -> tuple:
    out = []
    for p in paths:
        try:
            st = stat(p)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class ServingCertificate:
    """A gRPC server's certificate, key and client CA, re-read from `paths`
    when they change. `load()` returns (cert PEM, key PEM, client CA PEM)
    from those files (or from a kubeconfig they include)."""

    def __init__(self, load: Callable[[], tuple[bytes, bytes, bytes]], paths: Sequence[str], *,
                 require_client_auth: bool = True, stat=os.stat, clock=time.time):
        self.load, self.paths, self.require_client_auth = load, list(paths), require_client_auth
        self.stat, self.clock = stat, clock
        self._seen = _fingerprint(self.paths, stat)
        self.cert_pem, self.key_pem, self.client_ca_pem = self._checked()

    def _checked(self) -> tuple[bytes, bytes, bytes]:
        cert, key, ca = self.load()
        check_pair(cert, key, self.clock())
        if not ca:
            raise ConfigError("no client CA")
        return cert, key, ca

    def _config(self):
        return grpc.ssl_server_certificate_configuration([(self.key_pem, self.cert_pem)],
                                                         root_certificates=self.client_ca_pem)

    def fetch(self):
        """gRPC's certificate_configuration_fetcher: a new configuration when the
        files changed and load well, else None (keep the current one)."""
        seen = _fingerprint(self.paths, self.stat)
        if seen == self._seen:
            return None
        self._seen = seen
        try:
            pem = self._checked()
        except (ConfigError, OSError) as exc:
            log.warning("serving certificate (%s) changed but cannot be used, keeping the current one: %s",
                        ", ".join(self.paths), exc)
            return None
        if pem == (self.cert_pem, self.key_pem, self.client_ca_pem):
            return None
        self.cert_pem, self.key_pem, self.client_ca_pem = pem
        log.info("serving certificate (%s) renewed: new connections use it (valid until %s)",
                 ", ".join(self.paths), _lifetime_used(pem[0], self.clock())[1])
        return self._config()

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._config(), self.fetch,
                                                   require_client_authentication=self.require_client_auth)


def kubeconfig_files(path: str) -> list[str]:
    """The kubeconfig and every file its entries name (certificate-authority,
    client-certificate, client-key): what to watch for a change."""
    base = os.path.dirname(os.path.abspath(path))
    data = kubeconfig.read(path)
    out = [path]
    for section, kind in (("clusters", "cluster"), ("users", "user")):
        for entry in data.get(section) or []:
            body = (entry or {}).get(kind) or {}
            for field in ("certificate-authority", "client-certificate", "client-key"):
                if isinstance(body.get(field), str):
                    out.append(os.path.join(base, os.path.expanduser(body[field])))
    return list(dict.fromkeys(out))


async def reload_ssl_context(ctx, cert_file: str, key_file: str, *, interval: float = RELOAD_INTERVAL,
                             sleep=asyncio.sleep, stat=os.stat) -> None:
    """Poll cert_file/key_file; load them into ctx again when they change (new handshakes use them)."""
    seen = _fingerprint([cert_file, key_file], stat)
    while True:
        await sleep(interval)
        now = _fingerprint([cert_file, key_file], stat)
        if now == seen:
            continue
        seen = now
        try:
            ctx.load_cert_chain(cert_file, key_file)
            log.info("HTTPS serving certificate %s renewed: new connections use it", cert_file)
        except (OSError, ValueError) as exc:      # ssl.SSLError is an OSError
            log.warning("HTTPS serving certificate %s changed but cannot be loaded, keeping the current one: %s",
                        cert_file, exc)
