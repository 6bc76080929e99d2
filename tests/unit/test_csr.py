"""CertificateSigningRequests: validation (Kubernetes' messages), the
strategy of the status and approval subresources, the approver's rules,
the signer's output (subject, usages, validity, chain), and the bootstrap
controllers (token cleaner, bootstrap signer) on the FakeClient."""
from __future__ import annotations

import datetime
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from apiserver import registry
from controllers import csrapproving as approving, csrsigning as signing
from controllers.bootstrap import BootstrapSigner, TokenCleaner
from machinery import bootstraptoken as bt, clusterinfo, csr as csrs, errors, kinds, tables, validation
from tests.unit.certs import make_ca
from tests.unit.test_controller_helpers import eventually, harness

NOW = time.time()


def new_csr(name="node-csr-1", cn="system:node:n1", orgs=("system:nodes",), signer=csrs.KUBE_APISERVER_CLIENT_KUBELET,
            usages=csrs.NODE_CLIENT_USAGES, user="system:bootstrap:abcdef", groups=("system:bootstrappers",),
            expiration=None, key=None):
    c = kinds.new("CertificateSigningRequest")
    c.metadata.name = name
    c.spec.request = csrs.make_request(key or csrs.new_key(), cn, orgs)
    c.spec.signer_name = signer
    c.spec.usages.extend(usages)
    c.spec.username = user
    c.spec.groups.extend(groups)
    if expiration is not None:
        c.spec.expiration_seconds = expiration
    return c


def messages(obj, old=None):
    return [str(e) for e in validation.validate(obj, old)]


# ----------------------------------------------------------------- validation

def test_valid_csr_passes():
    assert messages(new_csr()) == []


def test_request_must_be_a_pem_certificate_request():
    c = new_csr()
    c.spec.request = b"hello"
    assert messages(c) == ['spec.request: Invalid value: "<request data>": PEM block type must be CERTIFICATE REQUEST']


def test_usages_signer_and_expiration_rules():
    c = new_csr(usages=["client auth", "client auth", "root"], signer="example", expiration=60)
    got = messages(c)
    assert 'spec.usages[1]: Duplicate value: "client auth"' in got
    assert any(m.startswith('spec.usages[2]: Unsupported value: "root": supported values:') for m in got)
    assert ("spec.signerName: Invalid value: \"example\": must be a fully qualified domain and path of the form "
            "'example.com/signer-name'") in got
    assert 'spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)' \
        in got
    c = new_csr(usages=[], signer="")
    assert set(messages(c)) == {"spec.usages: Required value", "spec.signerName: Required value"}
    assert messages(new_csr(signer="kubernetes.io/legacy-unknown")) == [
        'spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy signerName is not allowed '
        'via this API version']


def test_conditions_rules():
    both = new_csr()
    csrs.set_condition(both, "Approved", "r", "m")
    csrs.set_condition(both, "Denied", "r", "m")
    both.status.conditions.add(type="Approved", status="False")
    both.status.conditions.add(type="Custom")
    assert messages(both) == [
        'status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are mutually exclusive',
        'status.conditions[2].status: Unsupported value: "False": supported values: "True"',
        'status.conditions[2].type: Invalid value: "Approved": Approved and Denied conditions are mutually exclusive',
        'status.conditions[2].type: Duplicate value: "Approved"',
        "status.conditions[3].status: Required value"]


def test_names_are_free_but_path_segments():
    assert messages(new_csr(name="node-csr-ABC_def")) == []
    assert messages(new_csr(name="a/b")) == ['metadata.name: Invalid value: "a/b": may not contain \'/\'']


def test_signer_name_rules():
    from machinery.validation.certificates import validate_signer_name
    assert validate_signer_name("example.com/my-signer") == []
    assert [str(e) for e in validate_signer_name("example/signer")] == [
        'spec.signerName: Invalid value: "example": should be a domain with at least two segments separated by dots']
    [e] = validate_signer_name("Example.com/x")
    assert str(e).startswith('spec.signerName: Invalid value: "Example.com": validating label "Example": a lowercase')


def update_errors(new, old, sub):
    strat = registry.strategy(kinds.resolve("csr"))
    return [str(e) for e in strat.validate_status(new, old, sub)]


def test_certificate_only_through_status_and_never_changed():
    ca, _ = make_ca()
    old = new_csr()
    csrs.set_condition(old, "Approved", "r", "m")
    new = kinds.new("CertificateSigningRequest")
    new.CopyFrom(old)
    new.status.certificate = ca
    assert update_errors(new, old, "status") == []
    assert update_errors(new, old, "approval") == ["status.certificate: Forbidden: updates may not set certificate content"]
    new.status.certificate = b"junk"
    assert update_errors(new, old, "status") == [
        'status.certificate: Invalid value: "<certificate data>": must contain at least one CERTIFICATE PEM block']
    old.status.certificate = ca
    new.status.certificate = make_ca()[0]
    assert update_errors(new, old, "status") == [
        "status.certificate: Forbidden: updates may not modify existing certificate content"]
    new.CopyFrom(old)
    del new.status.conditions[:]
    assert update_errors(new, old, "approval") == [
        'status.conditions: Forbidden: updates may not remove a condition of type "Approved"']


# ------------------------------------------------------------------- strategy

def test_spec_updates_change_only_metadata():
    strat = registry.strategy(kinds.resolve("csr"))
    old = new_csr()
    new = new_csr()
    new.metadata.labels["a"] = "b"
    strat.prepare_for_update(new, old)
    assert new.spec == old.spec and new.metadata.labels["a"] == "b"


def test_status_subresource_cannot_approve_and_approval_cannot_issue():
    strat = registry.strategy(kinds.resolve("csr"))
    old = new_csr()
    sent = kinds.new("CertificateSigningRequest")
    sent.CopyFrom(old)
    csrs.set_condition(sent, "Approved", "r", "m")
    sent.status.certificate = b"cert"
    sent.spec.username = "mallory"
    via_status = kinds.new("CertificateSigningRequest")
    via_status.CopyFrom(sent)
    strat.prepare_for_status_update(via_status, old, "status")
    assert via_status.status.certificate == b"cert" and via_status.spec.username == old.spec.username
    assert 'status.conditions: Forbidden: updates may not add a condition of type "Approved"' in \
        update_errors(via_status, old, "status")
    via_approval = kinds.new("CertificateSigningRequest")
    via_approval.CopyFrom(sent)
    strat.prepare_for_status_update(via_approval, old, "approval")
    assert csrs.is_approved(via_approval) and via_approval.status.certificate == b""
    assert update_errors(via_approval, old, "approval") == []
    # an approved CSR: a status write that leaves the conditions out keeps them
    approved = kinds.new("CertificateSigningRequest")
    approved.CopyFrom(via_approval)
    signed = kinds.new("CertificateSigningRequest")
    signed.CopyFrom(approved)
    signed.status.conditions[0].message = "changed"
    strat.prepare_for_status_update(signed, approved, "status")
    assert signed.status.conditions[0].message == "m"


def test_table_columns():
    c = new_csr(expiration=3600)
    c.metadata.creation_timestamp.seconds = int(NOW) - 30
    csrs.set_condition(c, "Approved", "r", "m")
    c.status.certificate = b"x"
    p = tables.PRINTERS["CertificateSigningRequest"]
    assert [col.name for col in p.columns] == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION",
                                               "CONDITION"]
    assert p.cells(c, NOW) == ["node-csr-1", "30s", csrs.KUBE_APISERVER_CLIENT_KUBELET, "system:bootstrap:abcdef",
                               "60m", "Approved,Issued"]
    assert csrs.condition_summary(new_csr()) == "Pending"


# ------------------------------------------------------------------- approver

async def kubeadm_grants(csr, subresource: str) -> bool:
    """The SubjectAccessReview answers under kubeadm's bindings (apiserver/auth/joinpolicy.py)."""
    return {"nodeclient": bt.DEFAULT_EXTRA_GROUP, "selfnodeclient": "system:nodes"}[subresource] in csr.spec.groups


class Decider:
    """CSRApprovingController.decide without informers (it only uses self.allowed)."""
    decide = approving.CSRApprovingController.decide

    def __init__(self, allowed=kubeadm_grants):
        self.allowed = allowed


def approver() -> Decider:
    return Decider()


BOOTSTRAPPER = ("system:bootstrappers", bt.DEFAULT_EXTRA_GROUP, "system:authenticated")


async def test_bootstrapper_node_client_request_is_approved():
    assert await approver().decide(new_csr(groups=BOOTSTRAPPER)) == approving.MESSAGE


async def test_node_renewing_its_own_certificate_is_approved():
    c = new_csr(user="system:node:n1", groups=("system:nodes", "system:authenticated"))
    assert approving.recognizers(c) == [("selfnodeclient", approving.SELF_MESSAGE),
                                        ("nodeclient", approving.MESSAGE)]
    assert await approver().decide(c) == approving.SELF_MESSAGE


def test_the_review_asks_for_the_requestor_and_the_subresource():
    c = new_csr(groups=BOOTSTRAPPER)
    c.spec.uid = "u1"
    c.spec.extra["scopes"].items.extend(["a"])
    r = approving.access_review(c, "nodeclient")
    assert (r.spec.user, list(r.spec.groups), r.spec.uid, dict(r.spec.extra)) == (
        "system:bootstrap:abcdef", list(BOOTSTRAPPER), "u1", {"scopes": ["a"]})
    a = r.spec.resource_attributes
    assert (a.group, a.resource, a.subresource, a.verb) == (
        "certificates.k8s.io", "certificatesigningrequests", "nodeclient", "create")


@pytest.mark.parametrize("kw", [
    {"user": "system:node:n2", "groups": ("system:nodes",)},                     # another node's name
    {"user": "jane", "groups": ("system:authenticated",)},                       # not a bootstrapper
    {"groups": ("system:bootstrappers",)},                 # a token without the kubeadm group: no nodeclient
    {"orgs": ("system:masters",)},
    {"orgs": ("system:nodes", "extra")},
    {"cn": "jane"},
    {"usages": ("digital signature", "client auth", "server auth")},
    {"signer": csrs.KUBE_APISERVER_CLIENT},
])
async def test_other_requests_stay_pending(kw):
    assert await approver().decide(new_csr(**{"groups": BOOTSTRAPPER, **kw})) == ""


async def test_decided_requests_are_left_alone():
    c = new_csr(groups=BOOTSTRAPPER)
    csrs.set_condition(c, "Denied", "r", "m")
    assert approving.recognizers(c) == [] and await approver().decide(c) == ""


def test_sans_are_refused():
    key = csrs.new_key()
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    req = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                                    x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n1")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil")]), critical=False)
           .sign(key, hashes.SHA256()))
    c = new_csr()
    c.spec.request = req.public_bytes(serialization.Encoding.PEM)
    assert approving.kubelet_client_problem(c) == "DNS subjectAltNames are not allowed"


# --------------------------------------------------------------------- signer

def signed(c, duration=signing.DEFAULT_DURATION, ca=None):
    ca = ca or signing.CA(*make_ca())
    return ca, x509.load_pem_x509_certificate(signing.sign(ca, c, signing.duration_of(c, duration), NOW))


def test_signed_certificate_subject_usages_validity_and_chain():
    key = csrs.new_key()
    ca, cert = signed(new_csr(key=key))
    assert csrs.subject(cert) == ("system:node:n1", ["system:nodes"])
    assert cert.public_key() == key.public_key()
    assert cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)
    assert csrs.usage_names(cert) == ["digital signature", "client auth"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    start = datetime.datetime.fromtimestamp(int(NOW), datetime.timezone.utc)
    assert abs((cert.not_valid_before_utc - start).total_seconds() + signing.BACKDATE) <= 1
    assert abs((cert.not_valid_after_utc - start).total_seconds() - (365 * 86400 - signing.BACKDATE)) <= 1


def test_expiration_seconds_shortens_and_the_flag_caps():
    _, cert = signed(new_csr(expiration=3600))
    assert abs((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() - 3600 - 300) <= 1
    _, cert = signed(new_csr(expiration=10**7), duration=7200)
    assert abs((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() - 7200 - 300) <= 1


def test_never_past_the_cas_expiry():
    ca = signing.CA(*make_ca(days=2))
    _, cert = signed(new_csr(), ca=ca)
    assert cert.not_valid_after_utc == ca.cert.not_valid_after_utc
    with pytest.raises(errors.ConfigError, match="refusing to sign a certificate that expired in the past"):
        signing.sign(ca, new_csr(), 3600, NOW + 3 * 86400)


def test_signer_rules():
    assert signing.signer_problem(new_csr(signer=csrs.KUBE_APISERVER_CLIENT, cn="jane", orgs=())) == ""
    assert signing.signer_problem(new_csr(signer=csrs.KUBE_APISERVER_CLIENT, usages=("server auth",))) == \
        "invalid usage for client certificate: server auth"
    assert signing.signer_problem(new_csr(orgs=("admins",))) == "subject organization is not system:nodes"


# ---------------------------------------------------------- controllers (fake)

async def test_approver_and_signer_issue_a_node_certificate():
    ca = signing.CA(*make_ca())
    async with harness(lambda h: approving.CSRApprovingController(h.client, h.factory, allowed=kubeadm_grants),
                       lambda h: signing.CSRSigningController(h.client, h.factory, ca=ca),
                       workers=True) as (h, _, _s):
        h.client.seed(new_csr(groups=BOOTSTRAPPER), new_csr(name="jane", user="jane", groups=()))

        def issued():
            c = h.client.stored("CertificateSigningRequest", "node-csr-1", "")
            return c if c.status.certificate else None
        c = await eventually(issued, what="certificate issued")
        assert csrs.condition(c, "Approved").reason == "AutoApproved"
        cert = x509.load_pem_x509_certificate(c.status.certificate)
        cert.verify_directly_issued_by(ca.cert)
        jane = h.client.stored("CertificateSigningRequest", "jane", "")
        assert csrs.condition_summary(jane) == "Pending"


async def test_signer_fails_an_approved_bad_request():
    ca = signing.CA(*make_ca())
    bad = new_csr(orgs=("system:masters",))
    csrs.set_condition(bad, "Approved", "Admin", "ok")
    async with harness(lambda h: signing.CSRSigningController(h.client, h.factory, ca=ca), workers=True) as (h, _):
        h.client.seed(bad)
        c = await eventually(lambda: csrs.condition(h.client.stored("CertificateSigningRequest", "node-csr-1", ""),
                                                    "Failed"), what="Failed")
        assert c.reason == "SignerValidationFailure" and c.message == "subject organization is not system:nodes"


def token_secret(token, ttl, now, **kw):
    s = kinds.new("Secret")
    bt.fill_secret(s, token, ttl=ttl, now=now, **kw)
    return s


async def test_token_cleaner_deletes_expired_tokens_only():
    now = time.time()
    async with harness(lambda h: TokenCleaner(h.client, h.factory), workers=True) as (h, _):
        opaque = token_secret("dddddd.0123456789abcdef", 1, now - 10)     # expired data, but not a token
        opaque.type = "Opaque"
        h.client.seed(token_secret("aaaaaa.0123456789abcdef", 1, now - 10),
                      token_secret("bbbbbb.0123456789abcdef", 3600, now),
                      token_secret("cccccc.0123456789abcdef", 0.3, now),
                      token_secret("eeeeee.0123456789abcdef", None, now), opaque)
        await eventually(lambda: {s.metadata.name for s in h.objs("Secret", "kube-system")}
                         == {"bootstrap-token-bbbbbb", "bootstrap-token-eeeeee", "bootstrap-token-dddddd"},
                         what="expired tokens deleted")


async def test_bootstrap_signer_publishes_and_signs_cluster_info():
    ca, _ = make_ca()
    async with harness(lambda h: BootstrapSigner(h.client, h.factory, ca_pem=ca, server="https://10.0.0.1:6443"),
                       workers=True) as (h, signer):
        h.client.seed(token_secret("abcdef.0123456789abcdef", 3600, time.time()),
                      token_secret("nosign.0123456789abcdef", 3600, time.time(), usages=["authentication"]))

        def data():
            cm = h.client.stored("ConfigMap", "cluster-info", "kube-public")
            return dict(cm.data) if cm is not None and "jws-kubeconfig-abcdef" in cm.data else None
        d = await eventually(data, what="cluster-info signed")
        assert set(d) == {"kubeconfig", "jws-kubeconfig-abcdef"}
        assert clusterinfo.verify(d, "abcdef.0123456789abcdef", [bt.ca_hash(ca)]) == ("https://10.0.0.1:6443", ca)
        await h.client.delete("Secret", "bootstrap-token-abcdef", "kube-system")
        await eventually(lambda: "jws-kubeconfig-abcdef" not in
                         h.client.stored("ConfigMap", "cluster-info", "kube-public").data, what="signature removed")


def test_ecdsa_keys():
    assert isinstance(csrs.new_key(), ec.EllipticCurvePrivateKey)


def test_approval_is_its_own_subresource_for_authorization():
    from apiserver.auth import LOOPBACK, gate, requestinfo
    from machinery import codec
    from machinery.pb import api_pb2
    req = api_pb2.UpdateRequest(object=codec.pack(new_csr(name="x")), subresource="approval")
    [a] = gate.grpc_attributes(LOOPBACK, "UpdateStatus", req)
    assert (a.verb, a.api_group, a.resource, a.subresource, a.name, a.namespace) == \
        ("update", "certificates.k8s.io", "certificatesigningrequests", "approval", "x", "")
    [a] = gate.grpc_attributes(LOOPBACK, "UpdateStatus", api_pb2.UpdateRequest(object=req.object))
    assert a.subresource == "status"
    path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/x/approval"
    a = requestinfo.attributes(LOOPBACK, "PUT", path, "")
    assert (a.verb, a.resource, a.subresource, a.name) == ("update", "certificatesigningrequests", "approval", "x")


def test_describe_csr():
    from kubectlish.certificates import describe_csr
    from kubectlish.describe import render
    c = new_csr(cn="jane", orgs=("devs",), user="system:unsecured", expiration=86400)
    text = render(describe_csr(c, []))
    for line in ("Requesting User:     system:unsecured", "Signer:              " + csrs.KUBE_APISERVER_CLIENT_KUBELET,
                 "Requested Duration:  24h", "Status:              Pending", "  Common Name:    jane",
                 "  Organization:   devs"):
        assert line in text.splitlines(), text


def test_csr_cleaner_deadlines():
    from controllers.csrcleaner import due_at
    c = new_csr()
    c.metadata.creation_timestamp.seconds = 1000
    assert due_at(c) == 1000 + 24 * 3600                                   # pending: a day
    csrs.set_condition(c, "Approved", "r", "m", now=2000)
    assert due_at(c) == 2000 + 3600                                        # approved: an hour
    d = new_csr()
    d.metadata.creation_timestamp.seconds = 1000
    csrs.set_condition(d, "Denied", "r", "m", now=1500)
    assert due_at(d) == 1500 + 3600


async def test_csr_cleaner_deletes_due_requests_only():
    from controllers.csrcleaner import CSRCleaner
    now = time.time()
    old = new_csr(name="old")
    old.metadata.creation_timestamp.seconds = int(now) - 2 * 3600
    csrs.set_condition(old, "Approved", "r", "m", now=now - 2 * 3600)
    fresh = new_csr(name="fresh")
    fresh.metadata.creation_timestamp.seconds = int(now)
    async with harness(lambda h: CSRCleaner(h.client, h.factory), workers=True) as (h, _):
        h.client.seed(old, fresh)
        await eventually(lambda: [c.metadata.name for c in h.client.objects("CertificateSigningRequest")] == ["fresh"],
                         what="old approved CSR deleted")


def test_certificate_pem_rules():
    ca, key = make_ca()
    assert csrs.validate_certificate_pem(b"issued for n1\n" + ca + ca) == ""       # text around blocks is allowed
    assert csrs.validate_certificate_pem(ca + key) == 'only CERTIFICATE PEM blocks are allowed, found "PRIVATE KEY"'
    with_header = ca.replace(b"-----\n", b"-----\nProc-Type: 4,ENCRYPTED\n\n", 1)
    assert csrs.validate_certificate_pem(with_header) == "no PEM block headers are permitted"
    assert csrs.validate_certificate_pem(b"nothing") == "must contain at least one CERTIFICATE PEM block"
