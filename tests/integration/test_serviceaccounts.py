"""ServiceAccounts end to end on real processes: etcd, an apiserver with the
ServiceAccount admission plugin and its HTTP API, a controller manager
running the serviceaccount and root-ca-cert-publisher controllers.

The default account and kube-root-ca.crt appear in a new namespace; pods
get the kube-api-access-* volume (or are refused for a missing account);
`kctl create token` (gRPC) and the real `kubectl create token` (HTTPS)
issue JWTs that authenticate as bearer tokens; a tampered token, a token
bound to a deleted pod, or a too short duration are refused."""
from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request

import jwt
import pytest
import yaml

from harness import pki as harness_pki
from machinery import errors, kinds, kubeconfig
from machinery.client import Client
from tests.cluster import Cluster, free_port
from tests.integration.http.conftest import KUBECTL
from tests.integration.kctl_helpers import kctl_subprocess, whoami

NS = "team"


@pytest.fixture(scope="module")
def sa_cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("sa")
    port = free_port()
    cluster = Cluster(work, apiserver_args=["--http-listen", f"127.0.0.1:{port}"], controller_manager=True,
                      controller_args=["--controllers", "serviceaccount,root-ca-cert-publisher,namespace"],
                      service_accounts=True)
    cluster.http_url = f"https://127.0.0.1:{port}"
    with cluster:
        yield cluster


def kctl(server: str, *args: str):
    return kctl_subprocess("--server", server, *args)


def make_pod(name: str, namespace: str, service_account: str = ""):
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace = name, namespace
    p.spec.service_account_name = service_account
    p.spec.containers.add(name="app", image="busybox")
    return p


def http(cluster, path: str, token: str | None = None) -> int:
    """The status of an HTTPS GET with a bearer token (trusting the cluster CA, no client certificate)."""
    req = urllib.request.Request(cluster.http_url + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = kubeconfig.Credentials(harness_pki.session().store.ca_pem()).ssl_context()
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def eventually(fn, what: str, timeout: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await fn()
        if got:
            return got
        if loop.time() > deadline:
            pytest.fail(f"never: {what}")
        await asyncio.sleep(0.2)


async def _get_or_none(c, kind, name, ns):
    try:
        return await c.get(kind, name, ns)
    except errors.NotFound:
        return None


@pytest.fixture(scope="module")
def namespace(sa_cluster):
    async def go():
        async with Client(sa_cluster.target) as c:
            ns = kinds.new("Namespace")
            ns.metadata.name = NS
            await c.create(ns)
            await eventually(lambda: _get_or_none(c, "ServiceAccount", "default", NS), "default account")
            await eventually(lambda: _get_or_none(c, "ConfigMap", "kube-root-ca.crt", NS), "kube-root-ca.crt")
    asyncio.run(go())
    return NS


async def test_pods_get_the_api_access_volume_or_are_refused(sa_cluster, namespace):
    async with Client(sa_cluster.target) as c:
        p = await c.create(make_pod("web", namespace=namespace))
        assert p.spec.service_account_name == "default"
        [vol] = [v for v in p.spec.volumes if v.name.startswith("kube-api-access-")]
        assert [s.ListFields()[0][0].name for s in vol.projected.sources] == [
            "service_account_token", "config_map", "downward_api"]
        assert p.spec.containers[0].volume_mounts[-1].mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"
        off = make_pod("quiet", namespace=namespace)
        off.spec.automount_service_account_token = False
        assert not (await c.create(off)).spec.volumes
        with pytest.raises(errors.Forbidden) as exc:
            await c.create(make_pod("lost", namespace=namespace, service_account="robot"))
        assert exc.value.message == ('pods "lost" is forbidden: error looking up service account team/robot: '
                                     'serviceaccount "robot" not found')
    out = kctl(sa_cluster.target, "get", "sa", "-n", namespace)
    assert out.code == 0 and out.out.split()[:4] == ["NAME", "SECRETS", "AGE", "default"]


async def test_kctl_token_authenticates_and_bad_tokens_get_401(sa_cluster, namespace):
    out = kctl(sa_cluster.target, "create", "token", "default", "-n", namespace, "--duration", "15m")
    assert out.code == 0, out.err
    token = out.out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:team:default" and claims["exp"] - claims["iat"] == 900
    assert whoami(sa_cluster.http_url, token) == (201, "system:serviceaccount:team:default")
    assert http(sa_cluster, "/api/v1/namespaces/team/pods", token) == 403      # authenticated; RBAC grants nothing
    head, body, sig = token.split(".")
    assert http(sa_cluster, "/api/v1/namespaces/team/pods", f"{head}.{body}.{sig[:-4]}AAAA") == 401
    short = kctl(sa_cluster.target, "create", "token", "default", "-n", namespace, "--duration", "5m")
    assert short.code == 1
    assert "spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes" in short.err


async def test_kubectl_token_bound_to_a_pod_dies_with_it(sa_cluster, namespace, tmp_path):
    admin = yaml.safe_load(sa_cluster.apiserver.kubeconfig.read_text())      # the admin's certificate, HTTPS
    admin["contexts"][0]["context"]["namespace"] = namespace
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump(admin))
    async with Client(sa_cluster.target) as c:
        p = await c.create(make_pod("bound", namespace=namespace))
    r = subprocess.run([str(KUBECTL), "--kubeconfig", str(config), "--cache-dir", str(tmp_path / "cache"),
                        "create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "bound",
                        "--audience", sa_cluster_issuer()], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "bound", "uid": p.metadata.uid}
    assert whoami(sa_cluster.http_url, token) == (201, "system:serviceaccount:team:default")
    async with Client(sa_cluster.target) as c:
        await c.delete("Pod", "bound", namespace, grace_period=0)
        await eventually(lambda: _gone(c, "bound"), "pod deleted")
    assert whoami(sa_cluster.http_url, token) == (401, "")
    assert http(sa_cluster, "/api/v1/namespaces/team/pods", token) == 401


async def _gone(c, name):
    return await _get_or_none(c, "Pod", name, NS) is None


def sa_cluster_issuer() -> str:
    from apiserver.serviceaccount.tokens import DEFAULT_ISSUER
    return DEFAULT_ISSUER


async def test_bootstrap_token_authenticates_until_its_secret_goes(sa_cluster):
    s = kinds.new("Secret")
    s.metadata.name, s.metadata.namespace, s.type = "bootstrap-token-07401b", "kube-system", \
        "bootstrap.kubernetes.io/token"
    for k, v in {"token-id": "07401b", "token-secret": "f395accd246ae52d", "usage-bootstrap-authentication": "true",
                 "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}.items():
        s.data[k] = v.encode()
    async with Client(sa_cluster.target) as c:
        await c.create(s)
        assert whoami(sa_cluster.http_url, "07401b.f395accd246ae52d") == (201, "system:bootstrap:07401b")
        assert http(sa_cluster, "/api/v1/nodes", "07401b.0000000000000000") == 401
        await c.delete("Secret", s.metadata.name, "kube-system")
        assert http(sa_cluster, "/api/v1/nodes", "07401b.f395accd246ae52d") == 401


async def test_a_deleted_service_account_token_is_refused_at_once(sa_cluster, namespace):
    """Token objects are read from the watch cache (apiserver/auth/tokencache.py);
    a deletion this apiserver made is seen by the very next request."""
    async with Client(sa_cluster.target) as c:
        robot = kinds.new("ServiceAccount")
        robot.metadata.name, robot.metadata.namespace = "robot", namespace
        await c.create(robot)
        out = kctl(sa_cluster.target, "create", "token", "robot", "-n", namespace)
        assert out.code == 0, out.err
        token = out.out.strip()
        for _ in range(3):           # a fresh account, then from the index
            assert whoami(sa_cluster.http_url, token) == (201, "system:serviceaccount:team:robot")
        await c.delete("ServiceAccount", "robot", namespace)
        assert whoami(sa_cluster.http_url, token) == (401, "")
        await c.create(robot)        # the same name again: a new uid, the old token stays dead
        assert whoami(sa_cluster.http_url, token) == (401, "")
