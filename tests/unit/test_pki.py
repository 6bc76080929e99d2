"""machinery.pki: the cluster CA, serving and client certificates (fields,
SANs, chain verification, expiry), the kubeadm layout, kubeconfigs, the CA hash."""
import datetime
import hashlib
import ipaddress
import os
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from machinery import kubeconfig, pki
from machinery.errors import ConfigError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = pki.PKI(tmp_path_factory.mktemp("pki"), pki.Endpoints(grpc="10.77.0.10:6443",
                                                              https_url="https://10.77.0.10:6444",
                                                              dns=["api.example"], ips=["192.0.2.7"]))
    s.control_plane()
    return s


def cert(store, name):
    return pki.load_cert(store.path(name).read_bytes())


def test_kubeadm_layout_and_private_keys(store):
    for f in ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt",
              "apiserver-kubelet-client.key", "sa.key", "sa.pub", "admin.conf", "scheduler.conf",
              "controller-manager.conf", "dns.conf"):
        assert store.path(f).is_file(), f
    for f in ("ca.key", "apiserver.key", "sa.key", "admin.conf"):
        assert stat.S_IMODE(os.stat(store.path(f)).st_mode) == 0o600, f


def test_ca_is_a_ca_and_self_signed(store):
    ca = cert(store, "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.issuer == ca.subject
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > datetime.timedelta(days=3600)


def test_serving_certificate_sans_cover_every_address(store):
    srv = cert(store, "apiserver.crt")
    dns, ips = pki.sans(srv)
    assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
            "localhost", "api.example"} <= dns
    assert {"127.0.0.1", "10.96.0.1", "10.77.0.10", "192.0.2.7"} <= ips
    eku = srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    for name in ("10.96.0.1", "kubernetes.default.svc", "127.0.0.1"):
        pki.verify_chain(srv, cert(store, "ca.crt"), server_name=name)
    with pytest.raises(ConfigError):
        pki.verify_chain(srv, cert(store, "ca.crt"), server_name="10.1.2.3")


@pytest.mark.parametrize("file,cn,groups", [("admin.conf", "kubernetes-admin", ("system:masters",)),
                                            ("scheduler.conf", "system:kube-scheduler", ()),
                                            ("controller-manager.conf", "system:kube-controller-manager", ())])
def test_component_kubeconfigs_carry_their_identity(store, file, cn, groups):
    sel = kubeconfig.select(store.path(file))
    assert sel.grpc == "10.77.0.10:6443" and sel.https_url == "https://10.77.0.10:6444"
    c = pki.load_cert(sel.credentials.cert_pem)
    assert pki.subject(c) == (cn, groups)
    assert sel.credentials.ca_pem == store.ca_pem()
    pki.verify_chain(c, cert(store, "ca.crt"))
    pub = pki.load_key(sel.credentials.key_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pub == c.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)


def test_node_certificate_is_client_and_serving(store):
    path = store.node("worker1", "10.77.0.11")
    c = pki.load_cert(kubeconfig.select(path).credentials.cert_pem)
    assert pki.subject(c) == ("system:node:worker1", ("system:nodes",))
    pki.verify_chain(c, cert(store, "ca.crt"), server_name="10.77.0.11")
    pki.verify_chain(c, cert(store, "ca.crt"))


def test_another_ca_does_not_verify(store, tmp_path):
    other = pki.CA.create()
    c, _ = other.issue("kubernetes-admin", ("system:masters",))
    with pytest.raises(ConfigError, match="does not verify"):
        pki.verify_chain(c, cert(store, "ca.crt"))


def test_expired_certificate_does_not_verify(store):
    c, _ = store.ca.issue("shortlived", days=1)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
    with pytest.raises(ConfigError):
        pki.verify_chain(c, cert(store, "ca.crt"), when=later)
    pki.verify_chain(c, cert(store, "ca.crt"))


def test_init_keeps_what_exists_and_reissues_serving_for_a_new_address(store):
    before = {f: store.path(f).read_bytes() for f in ("ca.crt", "admin.conf", "apiserver.crt")}
    store.control_plane()
    assert {f: store.path(f).read_bytes() for f in before} == before
    again = pki.PKI(store.dir, pki.Endpoints(grpc="10.77.0.99:6443", https_url="https://10.77.0.99:6444"))
    again.control_plane()
    assert store.path("ca.crt").read_bytes() == before["ca.crt"]
    assert "10.77.0.99" in pki.sans(cert(store, "apiserver.crt"))[1]


def test_ca_hash_is_kubeadms(store):
    """sha256 of the DER SubjectPublicKeyInfo, as
    `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum` computes it."""
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(store.path("ca.crt"))],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    assert pki.ca_hash(cert(store, "ca.crt")) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_user_kubeconfig_has_the_groups(store):
    path = store.user("jane", ("dev", "qa"))
    assert path == store.path("users/jane.conf")
    c = pki.load_cert(kubeconfig.select(path).credentials.cert_pem)
    assert pki.subject(c) == ("jane", ("dev", "qa"))


def test_kubeconfig_file_paths_are_relative_to_the_file(tmp_path, store):
    (tmp_path / "ca.crt").write_bytes(store.ca_pem())
    (tmp_path / "me.crt").write_bytes(b"CERT")
    (tmp_path / "me.key").write_bytes(b"KEY")
    (tmp_path / "config").write_text(
        "clusters: [{name: c, cluster: {server: 'https://h:1', certificate-authority: ca.crt}}]\n"
        "users: [{name: u, user: {client-certificate: me.crt, client-key: me.key, token: T}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    creds = kubeconfig.select(tmp_path / "config").credentials
    assert (creds.ca_pem, creds.cert_pem, creds.key_pem, creds.token) == (store.ca_pem(), b"CERT", b"KEY", "T")
    assert creds.headers() == {"Authorization": "Bearer T"}


def test_kubeconfig_half_a_key_pair_is_refused(tmp_path):
    (tmp_path / "config").write_text(
        "clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
        "users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    with pytest.raises(ConfigError, match="client-certificate and client-key"):
        kubeconfig.select(tmp_path / "config")


def test_ip_sans_are_addresses(store):
    srv = cert(store, "apiserver.crt")
    ext = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.96.0.1") in ext.get_values_for_type(x509.IPAddress)


def _kctl(*args):
    from click.testing import CliRunner

    from kubectlish.main import cli
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_kctl_pki_commands(tmp_path):
    d = str(tmp_path / "pki")
    code, out, _ = _kctl("pki", "init", "--cert-dir", d, "--address", "10.77.0.10", "--grpc-server", "10.77.0.10:6443",
                         "--https-server", "https://10.77.0.10:6444")
    assert code == 0 and f"export KUBECONFIG={d}/admin.conf" in out
    store = pki.PKI(d)
    assert "10.77.0.10" in pki.sans(cert(store, "apiserver.crt"))[1]
    assert out.splitlines()[-1] == f"CA hash: {pki.ca_hash(store.ca.cert)}"
    assert _kctl("pki", "ca-hash", "--cert-dir", d)[1] == pki.ca_hash(store.ca.cert) + "\n"
    code, out, _ = _kctl("pki", "node", "w1", "--ip", "10.77.0.11", "--cert-dir", d)
    assert code == 0
    sel = kubeconfig.select(store.path("nodes/w1.conf"))
    assert sel.grpc == "10.77.0.10:6443"                     # from admin.conf
    code, out, _ = _kctl("pki", "check-expiration", "--cert-dir", d)
    assert code == 0 and out.split("\n")[0].split() == ["CERTIFICATE", "SUBJECT", "EXPIRES", "RESIDUAL", "TIME"]
    assert any(ln.startswith("nodes/w1.crt") and "CN=system:node:w1" in ln for ln in out.splitlines())
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    # the kubeconfigs' embedded client certificates, by the kubeconfig's name, as kubeadm lists them
    assert {"admin.conf", "scheduler.conf", "controller-manager.conf", "dns.conf", "nodes/w1.conf"} <= set(rows)
    assert rows["admin.conf"][1] == "CN=kubernetes-admin,O=system:masters"
    assert _kctl("pki", "renew", "admin.conf", "--days", "30", "--cert-dir", d)[0] == 0
    rows = {ln.split()[0]: ln.split() for ln in _kctl("pki", "check-expiration", "--cert-dir", d)[1].splitlines()[1:]}
    assert rows["admin.conf"][-1] in ("29d", "30d") and rows["scheduler.conf"][-1] in ("364d", "365d")
    code, _, err = _kctl("pki", "user", "x", "--cert-dir", str(tmp_path / "empty"))
    assert code == 1 and "run `kctl pki init` first" in err
    assert _kctl("pki", "user", "x", "--cert-dir", d)[0] == 0
    code, _, err = _kctl("pki", "user", "x", "--cert-dir", d)
    assert code == 1 and "is made once" in err


def test_kctl_config_set_cluster_and_credentials(tmp_path, store):
    import yaml
    cfg = str(tmp_path / "config")
    (tmp_path / "ca.crt").write_bytes(store.ca_pem())
    assert _kctl("--kubeconfig", cfg, "config", "set-cluster", "c", "--server", "https://10.0.0.1:6444",
                 "--grpc-server", "10.0.0.1:6443", "--certificate-authority", str(tmp_path / "ca.crt"),
                 "--embed-certs")[1] == 'Cluster "c" set.\n'
    assert _kctl("--kubeconfig", cfg, "config", "set-credentials", "bob", "--token", "T")[1] == 'User "bob" set.\n'
    code, _, err = _kctl("--kubeconfig", cfg, "config", "set-credentials", "bob", "--client-key", "k")
    assert code == 1 and "must be given together" in err
    _kctl("--kubeconfig", cfg, "config", "set-context", "bob@c", "--cluster", "c", "--user", "bob")
    _kctl("--kubeconfig", cfg, "config", "use-context", "bob@c")
    sel = kubeconfig.select(cfg)
    assert (sel.grpc, sel.https_url, sel.credentials.ca_pem, sel.credentials.token) == \
        ("10.0.0.1:6443", "https://10.0.0.1:6444", store.ca_pem(), "T")
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
    _kctl("--kubeconfig", cfg, "config", "set-cluster", "c", "--certificate-authority", str(tmp_path / "ca.crt"))
    c = yaml.safe_load(open(cfg))["clusters"][0]["cluster"]
    assert c["certificate-authority"] == str(tmp_path / "ca.crt") and "certificate-authority-data" not in c


def test_kctl_config_view_redacts_secrets_unless_raw(store):
    path = str(store.path("admin.conf"))
    out = _kctl("--kubeconfig", path, "config", "view")[1]
    assert "client-key-data: REDACTED" in out and "certificate-authority-data: DATA+OMITTED" in out
    assert "PRIVATE KEY" not in out and kubeconfig.read(path)["users"][0]["user"]["client-key-data"] not in out
    raw = _kctl("--kubeconfig", path, "config", "view", "--raw")[1]
    assert kubeconfig.read(path)["users"][0]["user"]["client-key-data"] in raw


def test_vagrant_bundles_give_each_vm_only_its_own(tmp_path):
    from deploy.vagrant import pki as vagrant_pki
    out = vagrant_pki.make(tmp_path, "192.168.56.10", {"worker1": "192.168.56.11"})
    worker = sorted(p.relative_to(out / "bundles/worker1").as_posix() for p in (out / "bundles/worker1").rglob("*")
                    if p.is_file())
    assert worker == ["ca.crt", "node.conf"]
    c = pki.load_cert(kubeconfig.select(out / "bundles/worker1/node.conf").credentials.cert_pem)
    assert pki.subject(c) == ("system:node:worker1", ("system:nodes",))
    cp = out / "bundles/cp"
    assert (cp / "ca.key").is_file() and not (cp / "nodes").exists()
    etcd_ca = pki.load_cert((cp / "etcd/ca.crt").read_bytes())
    pki.verify_chain(pki.load_cert((cp / "etcd/server.crt").read_bytes()), etcd_ca, server_name="192.168.56.10")
    pki.verify_chain(pki.load_cert((cp / "apiserver-etcd-client.crt").read_bytes()), etcd_ca)
    with pytest.raises(ConfigError):         # a cluster-CA certificate does not open etcd
        pki.verify_chain(c, etcd_ca)
    # The control plane VM's provisioning runs `kctl pki init --etcd` on its bundle, which has no
    # etcd/ca.key: it must find everything made and change nothing (a VM run once failed here).
    import shutil

    from click.testing import CliRunner

    from kubectlish.main import cli
    vm = tmp_path / "vm-pki"
    shutil.copytree(cp, vm)
    files = {f: f.read_bytes() for f in vm.rglob("*") if f.is_file()}
    r = CliRunner().invoke(cli, ["pki", "init", "--cert-dir", str(vm), "--etcd", "--address", "192.168.56.10",
                                 "--grpc-server", "192.168.56.10:6443", "--https-server", "https://192.168.56.10:8080",
                                 "--service-cidr", "10.96.0.0/16"], catch_exceptions=False)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert not (vm / "etcd/ca.key").exists()
    assert {f: f.read_bytes() for f in files} == files
    before = (cp / "ca.crt").read_bytes()
    vagrant_pki.make(tmp_path, "192.168.56.10", {"worker1": "192.168.56.11", "worker2": "192.168.56.12"})
    assert (cp / "ca.crt").read_bytes() == before and (out / "bundles/worker2/node.conf").is_file()
