"""The node's client certificate: bootstrap (token -> CSR -> certificate
-> kubeconfig), rotation deadlines, renewal as the node, the agent's flags
and client, the anonymous cluster-info endpoint."""
from __future__ import annotations

import asyncio
import datetime
import os
from types import SimpleNamespace

import pytest
import yaml
from cryptography import x509

from apiserver.auth.anonymous import CLUSTER_INFO_PATH, AnonymousEndpoints
from controllers import csrapproving as approving, csrsigning as signing
from machinery import certmanager as cm, csr as csrs
from machinery.errors import ConfigError
from machinery import bootstraptoken as bt
from tests.unit.certs import make_ca
from tests.unit.test_csr import kubeadm_grants
from tests.unit.test_controller_helpers import harness

NODE = "n1"


class Requestor:
    """A FakeClient seen through the apiserver: CSRs get the requestor's name and groups."""

    def __init__(self, client, user, groups):
        self.client, self.user, self.groups = client, user, groups
        self.closed = False

    async def create(self, obj):
        obj.spec.username = self.user
        obj.spec.groups[:] = self.groups
        return await self.client.create(obj)

    async def get(self, kind, name, namespace=""):
        return await self.client.get(kind, name, namespace)

    async def close(self):
        self.closed = True


def bootstrap_kubeconfig(tmp_path, ca):
    path = str(tmp_path / "bootstrap-kubeconfig")
    cm.write_kubeconfig(path, "https://10.0.0.1:6443", ca, token="abcdef.0123456789abcdef")
    return path


async def test_bootstrap_writes_a_kubeconfig_with_the_signed_certificate(tmp_path):
    ca_cert_pem, ca_key_pem = make_ca()
    ca = signing.CA(ca_cert_pem, ca_key_pem)
    boot = bootstrap_kubeconfig(tmp_path, ca_cert_pem)
    async with harness(lambda h: approving.CSRApprovingController(h.client, h.factory, allowed=kubeadm_grants),
                       lambda h: signing.CSRSigningController(h.client, h.factory, ca=ca),
                       workers=True) as (h, _, _s):
        seen = []

        def make_client(creds):
            seen.append(creds)
            return Requestor(h.client, "system:bootstrap:abcdef", ["system:bootstrappers", bt.DEFAULT_EXTRA_GROUP])
        kubeconfig, cert_dir = str(tmp_path / "agent.kubeconfig"), str(tmp_path / "pki")
        got = await cm.bootstrap(kubeconfig=kubeconfig, bootstrap_kubeconfig=boot, cert_dir=cert_dir,
                                 node_name=NODE, make_client=make_client, poll=0.01, timeout=10)
        assert got is True and seen[0].token == "abcdef.0123456789abcdef" and seen[0].ca_pem == ca_cert_pem
        creds = cm.load_kubeconfig(kubeconfig)
        assert creds.server == "https://10.0.0.1:6443" and creds.ca_pem == ca_cert_pem and creds.token is None
        cert = x509.load_pem_x509_certificate(creds.cert_pem)
        assert csrs.subject(cert) == ("system:node:n1", ["system:nodes"])
        cert.verify_directly_issued_by(ca.cert)
        assert csrs.load_key(creds.key_pem).public_key() == cert.public_key()
        assert os.path.islink(os.path.join(cert_dir, cm.CURRENT))
        assert oct(os.stat(kubeconfig).st_mode & 0o777) == "0o600"
        assert not os.path.exists(os.path.join(cert_dir, cm.PENDING_KEY))
        # a valid certificate: nothing to do the next time
        assert await cm.bootstrap(kubeconfig=kubeconfig, bootstrap_kubeconfig=boot, cert_dir=cert_dir,
                                  node_name=NODE, make_client=make_client) is False
        assert len(seen) == 1

        # renewal: a new key, requested as the node itself, approved as a self renewal
        rotated = []

        async def on_rotate():
            rotated.append(True)
        r = cm.Renewer(kubeconfig=kubeconfig, cert_dir=cert_dir, node_name=NODE, poll=0.01, on_rotate=on_rotate,
                       make_client=lambda creds: Requestor(h.client, "system:node:n1", ["system:nodes"]))
        await asyncio.wait_for(r.renew_once(), 10)
        new = cm.load_pair(os.path.join(cert_dir, cm.CURRENT))
        assert new[0].serial_number != cert.serial_number and new[0].public_key() != cert.public_key()
        assert rotated == [True]
        renewals = [c for c in h.client.objects("CertificateSigningRequest") if c.spec.username == "system:node:n1"]
        assert csrs.condition(renewals[0], "Approved").message == approving.SELF_MESSAGE


async def test_denied_request_is_an_error(tmp_path):
    ca, _ = make_ca()
    boot = bootstrap_kubeconfig(tmp_path, ca)
    async with harness(workers=False) as (h,):
        async def deny():
            while not h.client.objects("CertificateSigningRequest"):
                await asyncio.sleep(0.01)
            c = h.client.objects("CertificateSigningRequest")[0]
            csrs.set_condition(c, "Denied", "Nope", "not this node")
            await h.client.update_status(c, subresource="approval")
        task = asyncio.create_task(deny())
        with pytest.raises(cm.CertificateNotIssued, match=r"is denied, reason: Nope, message: not this node"):
            await cm.bootstrap(kubeconfig=str(tmp_path / "k"), bootstrap_kubeconfig=boot,
                               cert_dir=str(tmp_path / "pki"), node_name=NODE, poll=0.01, timeout=10,
                               make_client=lambda creds: Requestor(h.client, "x", []))
        await task
        # the key is kept: a restarted agent waits for the same CSR instead of sending another
        assert os.path.exists(tmp_path / "pki" / cm.PENDING_KEY)


def cert_with(start: datetime.datetime, days: float):
    ca = signing.CA(*make_ca())
    c = csrs.make_request(csrs.new_key(), "system:node:n1", ["system:nodes"])
    obj = SimpleNamespace(spec=SimpleNamespace(request=c, usages=["client auth"]))
    pem = signing.sign(ca, obj, days * 86400, start.timestamp() + signing.BACKDATE)
    return x509.load_pem_x509_certificate(pem)


def test_rotation_deadline_is_70_to_90_percent_of_the_lifetime():
    start = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
    cert = cert_with(start, 10)
    life = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
    assert cm.rotation_deadline(cert, 0.0) == start.timestamp() + 0.7 * life
    assert cm.rotation_deadline(cert, 1.0) == start.timestamp() + 0.9 * life


async def test_renewer_sleeps_until_the_deadline_then_renews(tmp_path):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    cert = cert_with(start, 10)
    key = csrs.new_key()
    cert_dir = str(tmp_path / "pki")
    from cryptography.hazmat.primitives import serialization
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cm.store_pair(cert_dir, pem, csrs.key_pem(key))
    slept = []

    async def sleep(s):
        slept.append(s)
        if len(slept) > 1:
            raise asyncio.CancelledError

    class Once(cm.Renewer):
        async def renew_once(self):
            return "renewed"
    r = Once(kubeconfig="", cert_dir=cert_dir, node_name=NODE, make_client=None, sleep=sleep, rand=lambda: 0.5)
    with pytest.raises(asyncio.CancelledError):
        await r.run()
    life = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
    assert abs(slept[0] - (cert.not_valid_before_utc.timestamp() + 0.8 * life - r.clock())) < 5


def test_kubeconfig_errors_name_the_file(tmp_path):
    p = tmp_path / "k"
    p.write_text("clusters: []\n")
    with pytest.raises(ConfigError, match=f"cannot use kubeconfig {p}"):
        cm.load_kubeconfig(str(p))


def test_kubeconfig_reads_files_relative_to_itself(tmp_path):
    ca, _ = make_ca()
    (tmp_path / "ca.crt").write_bytes(ca)
    (tmp_path / "k").write_text(yaml.safe_dump(cm.kubeconfig_doc("h:1", None, {"token": "t"}) | {
        "clusters": [{"name": "default-cluster", "cluster": {"server": "h:1", "certificate-authority": "ca.crt"}}]}))
    assert cm.load_kubeconfig(str(tmp_path / "k")).ca_pem == ca


async def test_nodeagent_flags_and_clients():
    """A token goes over HTTPS (the gRPC port requires a client certificate), a certificate over gRPC."""
    from machinery.client import Client
    from machinery.restclient import RestClient
    from nodeagent import certbootstrap, main
    args = main.parse_args(["--node-name", "n2", "--node-ip", "10.0.0.12", "--root-dir", "/var/lib/kctl/n2",
                            "--bootstrap-kubeconfig", "/etc/kctl/b", "--kubeconfig", "/etc/kctl/k"])
    assert certbootstrap.cert_dir(args) == "/var/lib/kctl/n2/pki" and not args.apiserver
    ca, key = make_ca()
    c = certbootstrap.client_for(cm.Credentials("https://127.0.0.1:8080", ca_pem=ca, token="abcdef.0123456789abcdef"))
    assert isinstance(c, RestClient) and c.url == "https://127.0.0.1:8080"
    assert c.credentials.headers() == {"Authorization": "Bearer abcdef.0123456789abcdef"}
    await c.close()
    with pytest.raises(ConfigError, match="a bearer token authenticates only over HTTPS: .* not '127.0.0.1:6443'"):
        certbootstrap.client_for(cm.Credentials("127.0.0.1:6443", token="abcdef.0123456789abcdef"))
    g = certbootstrap.client_for(cm.Credentials("https://127.0.0.1:8080", ca_pem=ca, cert_pem=ca, key_pem=key))
    assert isinstance(g, Client) and g.target == "127.0.0.1:6443"
    await g.close()


async def test_grpc_client_refuses_a_token_alone():
    from machinery import kubeconfig
    from machinery.client import Client
    with pytest.raises(ConfigError) as exc:
        Client("127.0.0.1:6443", credentials=kubeconfig.Credentials(token="abcdef.0123456789abcdef"))
    assert str(exc.value) == ("a bearer token cannot authenticate over gRPC: the apiserver's gRPC port "
                              "(127.0.0.1:6443) requires a client certificate of the cluster CA; use the token "
                              "over HTTPS (the HTTP API, e.g. kubectl)")


async def test_anonymous_only_for_cluster_info():
    a = AnonymousEndpoints()

    def req(method, path, auth=None):
        return SimpleNamespace(method=method, path=path, headers={"Authorization": auth} if auth else {})
    assert (await a.http(req("GET", CLUSTER_INFO_PATH))).name == "system:anonymous"
    assert await a.http(req("GET", "/api/v1/namespaces/kube-public/configmaps")) is None
    assert await a.http(req("PUT", CLUSTER_INFO_PATH)) is None
    assert await a.http(req("GET", CLUSTER_INFO_PATH, "Bearer x")) is None
    assert await a.grpc(None) is None
