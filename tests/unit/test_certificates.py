"""CertificateSigningRequests: validation, the requestor recorded by the
apiserver, kctl certificate approve/deny, and the controller manager's
approver and signer on the FakeClient (cases of Kubernetes'
pkg/apis/certificates/validation, pkg/controller/certificates/approver
and signer tests)."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apiserver import registry
from apiserver.auth.user import UserInfo, acting_as
from controllers import main as cm
from controllers.certificates import CSRApprovingController, CSRSigningController, is_node_client
from kubectlish.certificate import add_condition
from kubectlish.common import Failed
from machinery import kinds
from machinery import tables  # noqa: F401  (machinery.tables loads its printer modules)
from machinery.tables_certificates import csr_condition
from machinery.validation import validate, validate_status_update
from tests.unit.test_controller_helpers import harness

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def request_pem(cn="system:node:n1", orgs=("system:nodes",), dns=()) -> bytes:
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(names + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return b.sign(key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr(name="node-csr-1", pem=None, signer="kubernetes.io/kube-apiserver-client-kubelet",
        usages=("digital signature", "client auth"), user="system:bootstrap:abc123",
        groups=("system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token")):
    o = kinds.new("CertificateSigningRequest")
    o.metadata.name = name
    o.spec.request = pem or request_pem()
    o.spec.signer_name = signer
    o.spec.usages.extend(usages)
    o.spec.username = user
    o.spec.groups.extend(groups)
    return o


@pytest.fixture(scope="module")
def ca():
    k = key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(1).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(k, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))


def test_validation():
    assert validate(csr()) == []
    bad = csr(pem=b"nope", signer="nodomain", usages=("client auth", "flying"))
    bad.spec.expiration_seconds = 60
    assert [str(e) for e in validate(bad)] == [
        'spec.request: Invalid value: "<omitted>": PEM block type must be CERTIFICATE REQUEST',
        "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form "
        "'example.com/signer-name'",
        f'spec.usages[1]: Unsupported value: "flying": supported values: ' + ", ".join(
            f'"{u}"' for u in __import__("machinery.validation.certificates", fromlist=["USAGES"]).USAGES),
        "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)"]
    both = add_condition(csr(), "approve")
    both.status.conditions.add(type="Denied", status="True")
    assert "Approved and Denied conditions are mutually exclusive" in str(validate(both))
    old = add_condition(csr(), "approve")
    assert "may not remove a condition of type \"Approved\"" in str(validate_status_update(csr(), old))


def test_requestor_is_the_user_who_creates_it():
    o = csr(user="forged", groups=("system:masters",))
    with acting_as(UserInfo("system:bootstrap:abc123", groups=("system:bootstrappers", "system:authenticated"))):
        registry.strategy(kinds.BY_KIND["CertificateSigningRequest"]).prepare_for_create(o, "")
    assert (o.spec.username, list(o.spec.groups)) == (
        "system:bootstrap:abc123", ["system:bootstrappers", "system:authenticated"])


def test_kctl_approve_and_deny_conditions():
    approved = add_condition(csr(), "approve")
    [c] = approved.status.conditions
    assert (c.type, c.status, c.reason, c.message) == (
        "Approved", "True", "KubectlApprove", "This CSR was approved by kubectl certificate approve.")
    assert add_condition(approved, "approve") is None
    with pytest.raises(Failed, match='certificate signing request "node-csr-1" is already approved'):
        add_condition(approved, "deny")
    assert csr_condition(approved) == "Approved" and csr_condition(csr()) == "Pending"


def test_node_client_recognition():
    assert is_node_client(csr())
    assert not is_node_client(csr(pem=request_pem(orgs=("system:masters",))))
    assert not is_node_client(csr(pem=request_pem(dns=("evil.example",))))
    assert not is_node_client(csr(usages=("client auth", "server auth")))
    assert not is_node_client(csr(signer="kubernetes.io/kube-apiserver-client"))


async def test_approver_approves_bootstrappers_and_self_renewal_only():
    async with harness(lambda h: CSRApprovingController(h.client, h.factory)) as (h, c):
        await h.client.create(csr("boot"))
        await h.client.create(csr("renew", user="system:node:n1", groups=("system:nodes",)))
        await h.client.create(csr("stranger", user="alice", groups=("system:authenticated",)))
        await h.client.create(csr("other-node", user="system:node:n2", groups=("system:nodes",)))
        await h.settle()
        for name in ("boot", "renew", "stranger", "other-node"):
            await c.sync(name)
        await h.settle()
        got = {n: [(x.type, x.reason) for x in h.client.stored("CertificateSigningRequest", n, "").status.conditions]
               for n in ("boot", "renew", "stranger", "other-node")}
        assert got == {"boot": [("Approved", "AutoApproved")], "renew": [("Approved", "AutoApproved")],
                       "stranger": [], "other-node": []}


async def test_signer_issues_client_certificate_from_the_ca(ca):
    ca_cert, ca_key = ca
    make = lambda h: CSRSigningController(h.client, h.factory, ca_cert=ca_cert, ca_key=ca_key,  # noqa: E731
                                          duration=86400, clock=lambda: NOW)
    async with harness(make) as (h, c):
        ok = add_condition(csr("ok"), "approve")
        ok.spec.expiration_seconds = 3600
        await h.client.create(ok)
        await h.client.create(add_condition(csr("bad", pem=request_pem(orgs=("system:masters",))), "approve"))
        await h.client.create(csr("pending"))
        await h.settle()
        for n in ("ok", "bad", "pending"):
            await c.sync(n)
        await h.settle()
        cert = x509.load_pem_x509_certificate(h.client.stored("CertificateSigningRequest", "ok", "").status.certificate)
        assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
        assert cert.issuer.rfc4514_string() == "CN=kubernetes"
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(minutes=65)
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.CLIENT_AUTH]
        x509.load_pem_x509_certificate(ca_cert).public_key().verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        bad = h.client.stored("CertificateSigningRequest", "bad", "")
        assert [x.reason for x in bad.status.conditions][-1] == "SignerValidationFailure" and not bad.status.certificate
        assert not h.client.stored("CertificateSigningRequest", "pending", "").status.certificate


def test_manager_runs_the_signer_only_with_a_ca(tmp_path, ca):
    (tmp_path / "ca.crt").write_bytes(ca[0])
    (tmp_path / "ca.key").write_bytes(ca[1])
    from machinery.fakeclient import FakeClient
    tasks, ctrls = cm.build(FakeClient(), cm.parse_args(["--cluster-signing-cert-file", str(tmp_path / "ca.crt"),
                                                         "--cluster-signing-key-file", str(tmp_path / "ca.key")]))
    for coro in tasks.values():
        coro.close()
    assert "csrsigning" in ctrls and "csrapproving" in ctrls
