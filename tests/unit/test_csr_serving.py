"""Node serving certificates (kubernetes.io/kubelet-serving): the request the
agent builds, Kubernetes' shape rules, kctl's approval rule (the node itself,
for its own addresses), the signer's certificate, the Renewer getting one when
there is none, the agent's flags, and the RBAC grants."""
from __future__ import annotations

import asyncio
import ipaddress
import os

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from apiserver.auth import joinpolicy
from apiserver.auth.authz import Attributes
from controllers import csrapproving as approving, csrserving as serving, csrsigning as signing
from machinery import certmanager as cm, csr as csrs, kinds
from tests.unit.certs import make_ca
from tests.unit.test_certmanager import Requestor
from tests.unit.test_controller_helpers import eventually, harness
from tests.unit.test_csr import kubeadm_grants
from tests.unit.test_rbac import _as, _rbac, allowed

NODE_USER, NODE_GROUPS = "system:node:n1", ("system:nodes", "system:authenticated")


def serving_csr(name="serving-1", cn="system:node:n1", orgs=("system:nodes",), ips=("10.0.0.11",), dns=("n1",),
                usages=csrs.NODE_SERVING_USAGES, user=NODE_USER, groups=NODE_GROUPS, key=None):
    c = kinds.new("CertificateSigningRequest")
    c.metadata.name = name
    c.spec.request = csrs.make_request(key or csrs.new_key(), cn, orgs, ips, dns)
    c.spec.signer_name = csrs.KUBELET_SERVING
    c.spec.usages.extend(usages)
    c.spec.username = user
    c.spec.groups.extend(groups)
    return c


def node(name="n1", ip="10.0.0.11", extra=()):
    n = kinds.new("Node")
    n.metadata.name = name
    n.status.addresses.add(type="InternalIP", address=ip)
    n.status.addresses.add(type="Hostname", address=name)
    for t, a in extra:
        n.status.addresses.add(type=t, address=a)
    return n


def test_the_agents_request_names_the_node_and_its_addresses():
    key = csrs.new_key()
    req = x509.load_pem_x509_csr(csrs.node_serving_request(key, "n1", ["10.0.0.11"], ["n1"]))
    assert csrs.subject(req) == ("system:node:n1", ["system:nodes"]) and req.is_signature_valid
    assert csrs.sans(req) == {"DNS": ["n1"], "IP": ["10.0.0.11"], "email": [], "URI": []}
    kind = cm.serving(["10.0.0.11"], ["n1"])
    assert (kind.signer, kind.usages, kind.current) == (
        "kubernetes.io/kubelet-serving", ("digital signature", "key encipherment", "server auth"),
        "kubelet-server-current.pem")
    assert cm.csr_name(key, "n1", kind.csr_prefix).startswith("node-serving-csr-")
    assert cm.csr_name(key, "n1") != cm.csr_name(key, "n1", kind.csr_prefix)


@pytest.mark.parametrize("kw, problem", [
    ({}, ""),
    ({"usages": ("digital signature", "server auth")}, ""),                       # ECDSA: no key encipherment
    ({"ips": (), "dns": ("n1",)}, ""),
    ({"orgs": ("system:nodes", "x")}, "subject organization is not system:nodes"),
    ({"orgs": ()}, "subject organization is not system:nodes"),
    ({"ips": (), "dns": ()}, "DNS or IP subjectAltName is required"),
    ({"usages": ("digital signature", "server auth", "client auth")},
     "usages did not match [digital signature key encipherment server auth]"),
    ({"usages": ("digital signature", "client auth")},
     "usages did not match [digital signature key encipherment server auth]"),
    ({"cn": "n1"}, "subject common name does not begin with system:node:"),
])
def test_shape_rules_are_kubernetes(kw, problem):
    assert serving.kubelet_serving_problem(serving_csr(**kw)) == problem


def test_email_uri_sans_and_other_signers_are_refused():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    for san, problem in ((x509.RFC822Name("a@b.c"), "Email subjectAltNames are not allowed"),
                         (x509.UniformResourceIdentifier("spiffe://x"), "URI subjectAltNames are not allowed")):
        req = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                                        x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n1")]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("n1"), san]), critical=False)
               .sign(csrs.new_key(), hashes.SHA256()))
        c = serving_csr()
        c.spec.request = req.public_bytes(serialization.Encoding.PEM)
        assert serving.kubelet_serving_problem(c) == problem
    c = serving_csr()
    c.spec.signer_name = csrs.KUBE_APISERVER_CLIENT_KUBELET
    assert serving.kubelet_serving_problem(c) == "signerName must be kubernetes.io/kubelet-serving"


@pytest.mark.parametrize("kw, the_node, problem", [
    ({}, node(), ""),
    ({"dns": ("N1",)}, node(), ""),
    ({"ips": ("10.0.0.99",), "dns": ()}, node(extra=[("ExternalIP", "10.0.0.99")]), ""),
    ({"dns": ("n1.example",)}, node(extra=[("InternalDNS", "n1.example")]), ""),
    ({"user": "system:node:n2"}, node(), "requested by 'system:node:n2', not by the node 'system:node:n1' itself"),
    ({"user": "system:bootstrap:abcdef", "groups": ("system:bootstrappers",)}, node(),
     "requested by 'system:bootstrap:abcdef', not by the node 'system:node:n1' itself"),
    ({"groups": ("system:authenticated",)}, node(),
     "requested by 'system:node:n1', not by the node 'system:node:n1' itself"),
    ({}, None, 'node "n1" not found'),
    ({"ips": ("10.0.0.12",)}, node(), 'IP subjectAltName 10.0.0.12 is not an address of node "n1"'),
    ({"ips": ("127.0.0.1",)}, node(), 'IP subjectAltName 127.0.0.1 is not an address of node "n1"'),
    ({"dns": ("kubernetes.default",)}, node(), 'DNS subjectAltName kubernetes.default is not a name of node "n1"'),
    ({"ips": ("10.0.0.11",), "dns": ()}, node(extra=[("Hostname", "10.0.0.11")]), ""),
    ({"ips": (), "dns": ("10.0.0.11",)}, node(), 'DNS subjectAltName 10.0.0.11 is not a name of node "n1"'),
    ({"cn": "system:node:n1", "orgs": ("system:masters",)}, node(), "subject organization is not system:nodes"),
])
def test_approval_rule(kw, the_node, problem):
    assert serving.approval_problem(serving_csr(**kw), the_node) == problem


def test_an_address_another_node_reports_is_refused():
    others = [node(), node("n2", ip="10.0.0.11")]
    assert serving.approval_problem(serving_csr(), node(), others) == \
        "IP subjectAltName 10.0.0.11 is also the address of another node"
    assert serving.approval_problem(serving_csr(), node(), [node(), node("n2", ip="10.0.0.12")]) == ""


def test_signed_certificate_serves_its_addresses():
    ca = signing.CA(*make_ca())
    c = serving_csr()
    assert signing.signer_problem(c) == ""
    cert = x509.load_pem_x509_certificate(signing.sign(ca, c, 3600, 1e9 * 1.8))
    cert.verify_directly_issued_by(ca.cert)
    assert csrs.usage_names(cert) == ["digital signature", "key encipherment", "server auth"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.11")]
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert signing.signer_problem(serving_csr(orgs=("x",))) == "subject organization is not system:nodes"


async def test_approver_waits_for_the_node_then_the_signer_issues():
    """A request that came before its Node is approved when the Node (with the address) appears;
    another node's request for the same address and a bootstrap token's request stay Pending."""
    ca = signing.CA(*make_ca())
    async with harness(lambda h: approving.CSRApprovingController(h.client, h.factory, allowed=kubeadm_grants),
                       lambda h: signing.CSRSigningController(h.client, h.factory, ca=ca),
                       workers=True) as (h, approver, _s):
        h.client.seed(serving_csr(), serving_csr("token", user="system:bootstrap:abcdef",
                                                 groups=("system:bootstrappers",)))
        await eventually(lambda: approver.csr_inf.get_by_key("serving-1"), what="seen")
        await asyncio.sleep(0.1)
        assert not h.client.stored("CertificateSigningRequest", "serving-1", "").status.conditions
        await h.client.create(node())

        def issued(name):
            c = h.client.stored("CertificateSigningRequest", name, "")
            return c if c.status.certificate else None
        c = await eventually(lambda: issued("serving-1"), what="serving certificate issued")
        assert csrs.condition(c, "Approved").message == serving.MESSAGE
        cert = x509.load_pem_x509_certificate(c.status.certificate)
        cert.verify_directly_issued_by(ca.cert)
        assert csrs.usage_names(cert)[-1] == "server auth"
        assert csrs.condition_summary(h.client.stored("CertificateSigningRequest", "token", "")) == "Pending"


async def test_renewer_requests_a_serving_certificate_when_there_is_none(tmp_path, monkeypatch):
    ca = signing.CA(*make_ca())
    async with harness(lambda h: approving.CSRApprovingController(h.client, h.factory, allowed=kubeadm_grants),
                       lambda h: signing.CSRSigningController(h.client, h.factory, ca=ca),
                       workers=True) as (h, _a, _s):
        await h.client.create(node())
        cert_dir = str(tmp_path / "pki")
        slept = []

        async def sleep(s):
            slept.append(s)
            raise asyncio.CancelledError       # the renewer's next wait: stop there
        r = cm.Renewer(kubeconfig=str(tmp_path / "none"), cert_dir=cert_dir, node_name="n1", poll=0.01,
                       sleep=sleep, kind=cm.serving(["10.0.0.11"], ["n1"]),
                       make_client=lambda creds: Requestor(h.client, NODE_USER, list(NODE_GROUPS)))
        monkeypatch.setattr(cm, "load_kubeconfig", lambda path: cm.Credentials("https://10.0.0.1:6443"))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(r.run(), 10)
        cert, _, key_pem = cm.load_pair(os.path.join(cert_dir, cm.SERVING_CURRENT))
        assert csrs.load_key(key_pem).public_key() == cert.public_key()
        assert csrs.usage_names(cert) == ["digital signature", "key encipherment", "server auth"]
        assert len(slept) == 1 and slept[0] > 3000          # next: at 70-90% of its life (the signer's 1 year)
        assert not os.path.exists(os.path.join(cert_dir, cm.CURRENT))


def test_agent_flags():
    from nodeagent import certbootstrap, main
    base = ["--node-name", "n2", "--node-ip", "10.0.0.12", "--root-dir", "/var/lib/kctl/n2", "--kubeconfig", "/k"]
    args = main.parse_args(base + ["--bootstrap-kubeconfig", "/b"])
    assert certbootstrap.serving_file(args) == "/var/lib/kctl/n2/pki/kubelet-server-current.pem"
    r = certbootstrap.serving_renewer(args)
    assert r.kind.signer == csrs.KUBELET_SERVING and r.node_name == "n2"
    req = x509.load_pem_x509_csr(r.kind.request(csrs.new_key(), "n2"))
    assert csrs.sans(req)["IP"] == ["10.0.0.12"] and csrs.sans(req)["DNS"] == ["n2"]
    for extra in (["--bootstrap-kubeconfig", "/b", "--no-rotate-server-certificates"],
                  ["--bootstrap-kubeconfig", "/b", "--tls-cert-file", "/c"], []):
        args = main.parse_args(base + extra)
        assert certbootstrap.serving_file(args) == "" and certbootstrap.serving_renewer(args) is None


CM = _as("system:kube-controller-manager")


@pytest.mark.parametrize("user, signer, ok", [
    (CM, csrs.KUBELET_SERVING, True),
    (CM, csrs.KUBE_APISERVER_CLIENT, False),
    (_as("system:node:n1", "system:nodes"), csrs.KUBELET_SERVING, False),
    (_as("jane"), csrs.KUBELET_SERVING, False),
])
def test_the_controller_manager_may_approve_serving_requests(user, signer, ok):
    a = Attributes(user, "approve", api_group="certificates.k8s.io", api_version="*", resource="signers", name=signer)
    assert allowed(_rbac(*joinpolicy.objects()), a) is ok


def test_kubernetes_approver_roles():
    roles = {r.metadata.name: r for r in joinpolicy.cluster_roles()}
    for signer in joinpolicy.APPROVER_SIGNERS:
        rule = roles[joinpolicy.approver_role(signer)].rules[0]
        assert (list(rule.verbs), list(rule.resources), list(rule.resource_names)) == (["approve"], ["signers"],
                                                                                      [signer])
    assert "system:certificates.k8s.io:kubelet-serving-approver" in roles


async def test_a_serving_certificate_for_other_addresses_is_replaced_at_once(tmp_path):
    """A restarted agent with a new --node-ip does not wait for the old certificate's rotation deadline."""
    ca = signing.CA(*make_ca())
    cert_dir = str(tmp_path / "pki")
    old = signing.sign(ca, serving_csr(ips=("10.0.0.11",)), 86400 * 30, __import__("time").time())
    cm.store_pair(cert_dir, old, csrs.key_pem(csrs.new_key()), kind=cm.serving(["10.0.0.11"], ["n1"]))
    for ips, due in ((["10.0.0.11"], False), (["10.0.0.12"], True)):
        slept, renewed = [], []

        async def sleep(s):
            slept.append(s)
            raise asyncio.CancelledError

        class Once(cm.Renewer):
            async def renew_once(self):
                renewed.append(True)
                raise asyncio.CancelledError
        r = Once(kubeconfig="", cert_dir=cert_dir, node_name="n1", make_client=None, sleep=sleep,
                 kind=cm.serving(ips, ["n1"]))
        with pytest.raises(asyncio.CancelledError):
            await r.run()
        assert (renewed == [True]) is due and (slept == []) is due
        if not due:
            assert slept[0] > 86400 * 20
