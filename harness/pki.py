"""The harness's PKI: one cluster CA per harness process, every cluster the
harness starts uses it.

Every apiserver the harness starts serves TLS and authenticates clients
like a real cluster (machinery.pki). One CA for the whole process (a test
session, a benchmark) means one admin credential works against every
cluster it starts: `session().admin` is an admin kubeconfig (CN
kubernetes-admin, O=system:masters) whose context's credentials
`Client(target)` and `kctl --server TARGET` use when $KUBECONFIG names it
(tests/conftest.py sets it). Each apiserver gets its own serving
certificate for its own address (`serving_args`); components and node
agents get a kubeconfig with their own identity (`kubeconfig_for`,
`node_kubeconfig`).

The directory is a fresh temporary one removed at exit, or
$KCTL_HARNESS_PKI when set (kept: a child process of a test reuses the
parent's CA that way).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from machinery import kubeconfig, pki

ENV = "KCTL_HARNESS_PKI"


class SessionPKI:
    def __init__(self, directory: Path):
        self.store = pki.PKI(directory, pki.Endpoints(grpc="127.0.0.1:6443", https_url="https://127.0.0.1:8080",
                                                      cluster_name="kctl-test"))
        self.store.control_plane()
        self.dir = directory

    @property
    def admin(self) -> Path:
        return self.store.path("admin.conf")

    @property
    def ca_file(self) -> Path:
        return self.store.path("ca.crt")

    def credentials(self, file: str = "admin.conf") -> kubeconfig.Credentials:
        return kubeconfig.select(self.store.path(file)).credentials

    def kubelet_client(self) -> kubeconfig.Credentials:
        """The apiserver's credentials towards node agents (the only client they accept)."""
        return kubeconfig.Credentials(self.store.ca_pem(), self.store.path("apiserver-kubelet-client.crt").read_bytes(),
                                      self.store.path("apiserver-kubelet-client.key").read_bytes())

    def serving_args(self, workdir: str | os.PathLike, host: str) -> list[str]:
        """apiserver flags for a serving certificate of `host` (+ loopback,
        the kubernetes Service names) issued into workdir, and the session CA."""
        d = Path(workdir) / "pki"
        dns, ips = pki.Endpoints(grpc=f"{host}:0", https_url=f"https://{host}:0").serving_sans()
        cert, key = self.store.ca.issue("kube-apiserver", client=False, server=True, dns=dns, ips=ips)
        pki.write_pair(d, "apiserver", cert, key)
        shutil.copy(self.store.path("sa.key"), d / "sa.key")
        shutil.copy(self.store.path("sa.pub"), d / "sa.pub")
        return ["--cert-dir", str(d), "--tls-cert-file", str(d / "apiserver.crt"),
                "--tls-private-key-file", str(d / "apiserver.key"), "--client-ca-file", str(self.ca_file),
                "--kubelet-client-certificate", str(self.store.path("apiserver-kubelet-client.crt")),
                "--kubelet-client-key", str(self.store.path("apiserver-kubelet-client.key"))]

    def kubeconfig_for(self, file: str) -> Path:
        """A component kubeconfig of the session (admin.conf, scheduler.conf, ...);
        pass --apiserver with it, its server is a placeholder."""
        return self.store.path(file)

    def node_kubeconfig(self, name: str, ip: str) -> Path:
        return self.store.node(name, ip)

    def node_serving(self, name: str, ip: str):
        """nodeagent.server.ServingTLS for an in-process agent (its node certificate)."""
        from nodeagent.server import ServingTLS
        self.store.node(name, ip)
        return ServingTLS(self.store.path(f"nodes/{name}.crt").read_bytes(),
                          self.store.path(f"nodes/{name}.key").read_bytes(), self.store.ca_pem())

    def user_kubeconfig(self, name: str, groups=()) -> Path:
        return self.store.user(name, groups)

    def write_kubeconfig(self, path: str | os.PathLike, *, grpc: str, https_url: str,
                         file: str = "admin.conf") -> Path:
        """A copy of a session kubeconfig pointing at one cluster (gRPC address and HTTPS URL)."""
        creds = self.credentials(file)
        cn, _ = pki.subject(pki.load_cert(creds.cert_pem))
        doc = kubeconfig.document("kctl-test", cn, https_url=https_url, grpc=grpc, ca_pem=creds.ca_pem,
                                  cert_pem=creds.cert_pem, key_pem=creds.key_pem, context="kctl-test")
        Path(path).write_bytes(kubeconfig.dump(doc))
        os.chmod(path, 0o600)
        return Path(path)


@lru_cache(maxsize=1)
def session() -> SessionPKI:
    given = os.environ.get(ENV)
    if given:
        return SessionPKI(Path(given))
    d = Path(tempfile.mkdtemp(prefix="kctl-harness-pki-"))
    atexit.register(shutil.rmtree, d, True)
    os.environ[ENV] = str(d)            # children (kctl, components started by tests) reuse it
    return SessionPKI(d)
