"""The real kubectl with an expired client certificate: Kubernetes' answer is
401 Unauthorized (the TLS handshake checks the chain, the authenticator the
validity period, on every request; the reason goes to the apiserver's log),
which kubectl (its discovery first) prints as "You must be logged in to the
server (the server has asked for the client to provide credentials)", as
against Kubernetes' apiserver; the same subject with a current certificate is served.
Before, the handshake refused the certificate and kubectl retried a reset
connection for 40 s."""
from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import pki as harness_pki
from machinery import kubeconfig, pki


def _kubeconfig(kube, path, not_before, not_after):
    ca = harness_pki.session().store.ca
    key = pki.new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "jane")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    doc = kubeconfig.document("kctl-test", "jane", https_url=kube.url, ca_pem=pki.cert_pem(ca.cert),
                              cert_pem=pki.cert_pem(cert), key_pem=pki.key_pem(key), context="kctl-test")
    path.write_bytes(kubeconfig.dump(doc))
    return str(path)


def test_an_expired_client_certificate_is_unauthorized_for_kubectl(kube, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = _kubeconfig(kube, tmp_path / "expired.conf", now - datetime.timedelta(days=2),
                          now - datetime.timedelta(days=1))
    current = _kubeconfig(kube, tmp_path / "current.conf", now - datetime.timedelta(minutes=5),
                          now + datetime.timedelta(days=1))
    refused = kube.kubectl("--kubeconfig", expired, "get", "namespace", "default")
    assert refused.returncode == 1, refused
    assert refused.stderr.strip().endswith(      # what kubectl says against Kubernetes' apiserver, too
        "error: You must be logged in to the server (the server has asked for the client to provide credentials)"), \
        refused.stderr
    served = kube.kubectl("--kubeconfig", current, "get", "namespace", "default", "-o", "name")
    assert (served.returncode, served.stdout) == (0, "namespace/default\n"), served.stderr
