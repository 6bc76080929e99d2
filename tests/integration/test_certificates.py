"""Node client certificates the Kubernetes way, on real processes: a
bootstrap token's holder posts a CertificateSigningRequest (HTTP, bearer
token), the controller manager approves it (csrapproving) and signs it with
the cluster CA (csrsigning); `kctl get csr` shows Approved,Issued; a
request the approver does not know waits until `kctl certificate approve`."""
from __future__ import annotations

import asyncio
import base64
import json
import urllib.request

import pytest
from cryptography import x509

from machinery import kinds
from machinery.client import Client
from tests.cluster import Cluster, free_port
from tests.integration.kctl_helpers import kctl_subprocess
from tests.unit.test_certificates import ca as _ca_fixture, request_pem  # noqa: F401

ca = _ca_fixture
TOKEN = "07401b.f395accd246ae52d"


@pytest.fixture(scope="module")
def csr_cluster(tmp_path_factory, ca):
    work = tmp_path_factory.mktemp("csr")
    (work / "ca.crt").write_bytes(ca[0])
    (work / "ca.key").write_bytes(ca[1])
    port = free_port()
    cluster = Cluster(work, apiserver_args=["--http-listen", f"127.0.0.1:{port}"], controller_manager=True,
                      controller_args=["--controllers", "csrapproving,csrsigning",
                                       "--cluster-signing-cert-file", str(work / "ca.crt"),
                                       "--cluster-signing-key-file", str(work / "ca.key")])
    cluster.http_url = f"http://127.0.0.1:{port}"
    with cluster:
        yield cluster


def post_csr(cluster, name: str, pem: bytes, signer: str, usages, token: str | None = None) -> dict:
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer, "usages": usages}}
    req = urllib.request.Request(cluster.http_url + "/apis/certificates.k8s.io/v1/certificatesigningrequests",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def issued(cluster, name: str, timeout: float = 30.0) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with Client(cluster.target) as c:
        while True:
            csr = await c.get("CertificateSigningRequest", name)
            if csr.status.certificate:
                return csr.status.certificate
            if loop.time() > deadline:
                pytest.fail(f"{name} never issued: {csr.status}")
            await asyncio.sleep(0.2)


async def test_bootstrapper_gets_a_node_client_certificate(csr_cluster):
    s = kinds.new("Secret")
    s.metadata.name, s.metadata.namespace, s.type = "bootstrap-token-07401b", "kube-system", \
        "bootstrap.kubernetes.io/token"
    for k, v in {"token-id": "07401b", "token-secret": "f395accd246ae52d",
                 "usage-bootstrap-authentication": "true",
                 "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}.items():
        s.data[k] = v.encode()
    async with Client(csr_cluster.target) as c:
        await c.create(s)
    made = post_csr(csr_cluster, "node-csr-n1", request_pem("system:node:n1"),
                    "kubernetes.io/kube-apiserver-client-kubelet", ["digital signature", "client auth"], TOKEN)
    assert made["spec"]["username"] == "system:bootstrap:07401b"
    assert "system:bootstrappers:kubeadm:default-node-token" in made["spec"]["groups"]
    cert = x509.load_pem_x509_certificate(await issued(csr_cluster, "node-csr-n1"))
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    out = kctl_subprocess("--server", csr_cluster.target, "get", "csr")
    row = [line.split() for line in out.out.splitlines() if line.startswith("node-csr-n1")][0]
    assert row[2:] == ["kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:07401b", "<none>",
                       "Approved,Issued"]


async def test_other_requests_wait_for_kctl_certificate_approve(csr_cluster):
    post_csr(csr_cluster, "alice", request_pem("alice", orgs=("devs",)), "kubernetes.io/kube-apiserver-client",
             ["client auth"])
    out = kctl_subprocess("--server", csr_cluster.target, "certificate", "approve", "alice")
    assert out.code == 0 and out.out == "certificatesigningrequest.certificates.k8s.io/alice approved\n"
    cert = x509.load_pem_x509_certificate(await issued(csr_cluster, "alice"))
    assert cert.subject.rfc4514_string() == "CN=alice,O=devs"
    denied = kctl_subprocess("--server", csr_cluster.target, "certificate", "deny", "alice")
    assert denied.code == 1 and 'certificate signing request "alice" is already approved' in denied.err
