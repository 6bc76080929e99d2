"""The apiserver's transport security, end to end: TLS only on gRPC and
HTTPS, client certificates as identities, 401 without credentials, another
CA's certificate refused, TLS below 1.2 refused, and zero configuration (a
cert dir of its own, created once and reused)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import urllib.error
import urllib.request

import grpc
import pytest

from harness.control_plane import ApiServer
from harness.process import free_port
from machinery import errors, kubeconfig, pki
from machinery.client import Client
from machinery.pb import api_pb2, api_pb2_grpc


@pytest.fixture(scope="module")
def own(shared_etcd, tmp_path_factory):
    """An apiserver started with no certificate flags at all (zero configuration)."""
    port = free_port()
    api = ApiServer(shared_etcd, tmp_path_factory.mktemp("zero"), own_pki=True,
                    extra_args=["--http-listen", f"127.0.0.1:{port}"])
    with api:
        yield api


def https(api: ApiServer, path: str, context: ssl.SSLContext, headers=None):
    req = urllib.request.Request(api.http_url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def version(api: ApiServer, creds: kubeconfig.Credentials):
    with grpc.secure_channel(api.target, creds.grpc()) as ch:
        return api_pb2_grpc.ApiStub(ch).Version(api_pb2.VersionRequest(), timeout=10)


def test_zero_config_makes_a_pki_and_an_admin_kubeconfig(own):
    for f in ("ca.crt", "ca.key", "apiserver.crt", "apiserver-kubelet-client.crt", "sa.key", "sa.pub",
              "admin.conf", "scheduler.conf", "controller-manager.conf"):
        assert (own.cert_dir / f).is_file(), f
    assert f"export KUBECONFIG={own.cert_dir / 'admin.conf'}" in own.log_tail(200)
    sel = kubeconfig.select(own.cert_dir / "admin.conf")
    assert sel.grpc == own.target and sel.https_url == own.http_url
    ca = pki.load_cert((own.cert_dir / "ca.crt").read_bytes())
    srv = pki.load_cert((own.cert_dir / "apiserver.crt").read_bytes())
    pki.verify_chain(srv, ca, server_name="127.0.0.1")
    pki.verify_chain(srv, ca, server_name="kubernetes.default.svc")

    async def go():
        async with Client.from_kubeconfig(str(own.cert_dir / "admin.conf")) as c:
            return [n.metadata.name for n in (await c.list("Namespace"))[0]]
    assert "kube-system" in asyncio.run(go())


def test_zero_config_reuses_its_pki_after_a_restart(own):
    before = {f: (own.cert_dir / f).read_bytes() for f in ("ca.crt", "apiserver.crt", "admin.conf", "sa.key")}
    own.restart()
    assert {f: (own.cert_dir / f).read_bytes() for f in before} == before
    assert version(own, kubeconfig.select(own.cert_dir / "admin.conf").credentials).git_version


def test_https_without_credentials_is_401_status(own):
    ca_only = kubeconfig.Credentials(ca_pem=(own.cert_dir / "ca.crt").read_bytes())
    code, body = https(own, "/api/v1/namespaces", ca_only.ssl_context())
    assert code == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    code, _ = https(own, "/api/v1/namespaces", ca_only.ssl_context(), {"Authorization": "Bearer not-a-token"})
    assert code == 401


def test_https_with_the_admin_certificate_works(own):
    admin = kubeconfig.select(own.cert_dir / "admin.conf").credentials
    code, body = https(own, "/api/v1/namespaces/default", admin.ssl_context())
    assert (code, body["metadata"]["name"]) == (200, "default")


def test_grpc_without_a_certificate_is_refused_in_the_handshake(own):
    ca_only = kubeconfig.Credentials(ca_pem=(own.cert_dir / "ca.crt").read_bytes())
    with pytest.raises(grpc.RpcError) as exc:
        version(own, ca_only)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE

    async def go():
        async with Client(own.target, credentials=ca_only) as c:
            await c.version()
    with pytest.raises(errors.Unauthorized, match="client certificate"):
        asyncio.run(go())


def test_another_cas_certificate_is_refused_on_both(own):
    other = pki.CA.create()
    cert, key = other.issue("kubernetes-admin", ("system:masters",))
    forged = kubeconfig.Credentials((own.cert_dir / "ca.crt").read_bytes(), pki.cert_pem(cert), pki.key_pem(key))
    with pytest.raises(grpc.RpcError) as exc:
        version(own, forged)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        https(own, "/api/v1/namespaces", forged.ssl_context())


def test_a_client_checks_the_server_against_its_ca(own):
    """A kubeconfig with another CA does not trust this apiserver."""
    admin = kubeconfig.select(own.cert_dir / "admin.conf").credentials
    wrong = kubeconfig.Credentials(pki.cert_pem(pki.CA.create().cert), admin.cert_pem, admin.key_pem)
    with pytest.raises(grpc.RpcError):
        version(own, wrong)
    with pytest.raises(urllib.error.URLError):
        https(own, "/version", wrong.ssl_context())


def test_tls_below_1_2_is_refused(own):
    """A client that offers only TLS 1.0/1.1 (allowed on its side: SECLEVEL=0)
    gets no connection on either port."""
    import warnings
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    http_addr = own.http_url.split("://")[1]
    for addr in (http_addr, own.target):
        host, port = addr.rsplit(":", 1)
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                with ctx.wrap_socket(raw):
                    pass
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2           # the same client with 1.2 gets through
    with socket.create_connection(http_addr.rsplit(":", 1), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            assert tls.version() == "TLSv1.2"


def test_plaintext_is_not_served(own):
    host, port = own.http_url.split("://")[1].rsplit(":", 1)
    with pytest.raises((urllib.error.URLError, ConnectionResetError, http_errors())):
        urllib.request.urlopen(f"http://{host}:{port}/version", timeout=5)
    with grpc.insecure_channel(own.target) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            api_pb2_grpc.ApiStub(ch).Version(api_pb2.VersionRequest(), timeout=5)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def http_errors():
    import http.client
    return http.client.HTTPException


def test_a_user_certificate_is_that_user(own, tmp_path):
    """`kctl pki user` material: CN and O reach the apiserver as name and groups
    (the in-cluster identity is checked by RBAC's whoami; here: it authenticates)."""
    store = pki.PKI(own.cert_dir)
    path = store.user("jane", ("dev",))
    sel = kubeconfig.select(path)
    assert version(own, sel.credentials).git_version
    os.unlink(path)


def test_add_a_user_with_kctl_pki_and_kctl_config(own, tmp_path):
    """The README's walk-through: make jane's certificate, add it to a kubeconfig, use it:
    authenticated but with no rights yet (403), then granted `view` by the admin."""
    import shutil

    from click.testing import CliRunner

    from kubectlish.main import cli

    def kctl(*args):
        r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert r.exit_code == 0, (args, r.stdout, r.stderr)
        return r.stdout
    d = str(own.cert_dir)
    out = kctl("pki", "user", "jane-tls", "--group", "dev", "--cert-dir", d)
    assert "kctl config set-credentials jane-tls" in out
    cfg = tmp_path / "config"
    shutil.copy(own.cert_dir / "admin.conf", cfg)
    cluster = kubeconfig.read(cfg)["clusters"][0]["name"]
    assert kctl("--kubeconfig", str(cfg), "config", "set-credentials", "jane-tls",
                f"--client-certificate={d}/users/jane-tls.crt", f"--client-key={d}/users/jane-tls.key",
                "--embed-certs") == 'User "jane-tls" set.\n'
    kctl("--kubeconfig", str(cfg), "config", "set-context", "jane", f"--cluster={cluster}", "--user=jane-tls")
    kctl("--kubeconfig", str(cfg), "config", "use-context", "jane")
    sel = kubeconfig.select(cfg)
    assert pki.subject(pki.load_cert(sel.credentials.cert_pem)) == ("jane-tls", ("dev",))
    assert "jane-tls" in kctl("--kubeconfig", str(cfg), "auth", "whoami")      # authenticated as jane-tls,
    r = CliRunner().invoke(cli, ["--kubeconfig", str(cfg), "get", "ns"], catch_exceptions=False)
    assert r.exit_code == 1 and ('namespaces is forbidden: User "jane-tls" cannot list resource "namespaces" '
                                 'in API group "" at the cluster scope') in r.stderr     # with no rights yet
    admin = str(own.cert_dir / "admin.conf")
    kctl("--kubeconfig", admin, "create", "clusterrolebinding", "jane-tls-view", "--clusterrole=view",
         "--user=jane-tls")
    assert "default" in kctl("--kubeconfig", str(cfg), "get", "ns")
    for f in ("crt", "key", "conf"):
        os.unlink(own.cert_dir / "users" / f"jane-tls.{f}")


class TlsEtcd:
    """etcd serving https with client-certificate auth (the Vagrant set-up's etcd)."""

    def __init__(self, workdir, store: pki.PKI):
        from harness.control_plane import Etcd
        d = store.dir / "etcd"
        self.store = store
        tls = ["--cert-file", str(d / "server.crt"), "--key-file", str(d / "server.key"),
               "--client-cert-auth", "--trusted-ca-file", str(d / "ca.crt")]
        self.etcd = Etcd(workdir, extra_args=tls)
        url = f"https://127.0.0.1:{self.etcd.client_port}"
        self.url = url
        base = self.etcd.command

        def command():
            argv = base()
            for flag in ("--listen-client-urls", "--advertise-client-urls"):
                argv[argv.index(flag) + 1] = url
            return argv
        self.etcd.command = command
        ctx = kubeconfig.Credentials((d / "ca.crt").read_bytes(),
                                     (store.dir / "apiserver-etcd-client.crt").read_bytes(),
                                     (store.dir / "apiserver-etcd-client.key").read_bytes()).ssl_context()

        def ready():
            with urllib.request.urlopen(url + "/health", timeout=1, context=ctx) as r:
                return json.loads(r.read()).get("health") == "true"
        self.etcd.ready = ready


def test_etcd_over_tls_with_a_client_certificate(tmp_path):
    """The Vagrant set-up's etcd: https, client certificates of etcd's own CA only."""
    store = pki.PKI(tmp_path / "pki")
    store.control_plane()
    store.etcd()
    d = store.dir
    e = TlsEtcd(tmp_path, store)
    with e.etcd:
        # without a client certificate (or with the cluster CA's admin one) etcd refuses
        admin = kubeconfig.select(d / "admin.conf").credentials
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
            urllib.request.urlopen(e.url + "/health", timeout=5, context=kubeconfig.Credentials(
                (d / "etcd" / "ca.crt").read_bytes(), admin.cert_pem, admin.key_pem).ssl_context())
        api = ApiServer(e.url, tmp_path / "api", own_pki=True,
                        extra_args=["--cert-dir", str(d), "--etcd-cafile", str(d / "etcd" / "ca.crt"),
                                    "--etcd-certfile", str(d / "apiserver-etcd-client.crt"),
                                    "--etcd-keyfile", str(d / "apiserver-etcd-client.key"), "--http-listen", "off"])
        api.cert_dir = d
        with api:
            async def go():
                async with Client.from_kubeconfig(str(d / "admin.conf"), api.target) as c:
                    return [n.metadata.name for n in (await c.list("Namespace"))[0]]
            assert "kube-system" in asyncio.run(go())
