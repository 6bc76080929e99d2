"""machinery.pkirenew and `kctl pki renew`: a renewed certificate keeps the
subject, SANs and usages, gets a new key and the asked validity; a
kubeconfig is renewed in place; unknown names are refused before anything
is written."""
import datetime

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubectlish.pki_cmd import pki_group
from machinery import kubeconfig, pki, pkirenew
from machinery.errors import ConfigError


@pytest.fixture
def store(tmp_path):
    s = pki.PKI(tmp_path / "pki", pki.Endpoints(grpc="10.77.0.10:6443", https_url="https://10.77.0.10:6444"))
    s.control_plane()
    s.etcd(["10.77.0.10"])
    s.node("n1", "10.77.0.21")
    return s


def usages(cert):
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def client_cert(path):
    return pki.load_cert(kubeconfig.select(path).credentials.cert_pem)


@pytest.mark.parametrize("name,ca_dir", [("apiserver", ""), ("apiserver-kubelet-client", ""),
                                         ("apiserver-etcd-client", "etcd"), ("etcd/server", "etcd")])
def test_pair_keeps_subject_sans_usages_with_a_new_key(store, name, ca_dir):
    old = pki.load_cert(store.path(f"{name}.crt").read_bytes())
    old_key = store.path(f"{name}.key").read_bytes()
    path, new = pkirenew.renew(store.dir, name, datetime.timedelta(hours=2))
    assert path == str(store.path(f"{name}.crt"))
    assert new.subject == old.subject and pki.sans(new) == pki.sans(old) and usages(new) == usages(old)
    assert new.serial_number != old.serial_number and store.path(f"{name}.key").read_bytes() != old_key
    assert new.public_key() == pki.load_key(store.path(f"{name}.key").read_bytes()).public_key()
    left = new.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=1, minutes=59) < left <= datetime.timedelta(hours=2)
    pki.verify_chain(new, pki.CA.load(store.dir / ca_dir if ca_dir else store.dir).cert,
                     server_name="10.77.0.10" if ExtendedKeyUsageOID.SERVER_AUTH in usages(new) else None)


def test_kubeconfig_is_renewed_in_place(store):
    path = store.path("scheduler.conf")
    before = kubeconfig.read(path)
    old = client_cert(path)
    pkirenew.renew(store.dir, "scheduler.conf", datetime.timedelta(days=30))
    after = kubeconfig.read(path)
    new = client_cert(path)
    assert pki.subject(new) == pki.subject(old) == ("system:kube-scheduler", ())
    assert new.serial_number != old.serial_number
    assert after["clusters"] == before["clusters"] and after["contexts"] == before["contexts"]
    creds = kubeconfig.select(path).credentials
    assert pki.load_key(creds.key_pem).public_key() == new.public_key()
    pki.verify_chain(new, store.ca.cert)


def test_node_kubeconfig_renews_its_pair_too(store):
    pkirenew.renew(store.dir, "nodes/n1.conf", datetime.timedelta(days=30))
    new = client_cert(store.path("nodes/n1.conf"))
    assert pki.load_cert(store.path("nodes/n1.crt").read_bytes()) == new
    assert pki.sans(new) == ({"n1"}, {"10.77.0.21"}) and ExtendedKeyUsageOID.SERVER_AUTH in usages(new)


def test_unknown_names_and_bad_lifetimes_are_refused(store):
    with pytest.raises(ConfigError, match='unknown certificate "ca": must be one of admin.conf'):
        pkirenew.renew(store.dir, "ca", datetime.timedelta(days=1))
    with pytest.raises(ConfigError, match="must be positive"):
        pkirenew.renew(store.dir, "apiserver", datetime.timedelta(0))


def test_all_names_what_exists(store):
    assert pkirenew.names(store.dir) == ["admin.conf", "scheduler.conf", "controller-manager.conf", "dns.conf",
                                         "apiserver", "apiserver-kubelet-client", "apiserver-etcd-client",
                                         "etcd/server"]


def test_cli_renews_all(store):
    old = {n: client_cert(store.path(n)).serial_number for n in ("admin.conf", "dns.conf")}
    out = CliRunner().invoke(pki_group, ["renew", "all", "--days", "10", "--cert-dir", str(store.dir)])
    assert out.exit_code == 0, out.output
    assert "[renew] dns.conf:" in out.output and "[renew] etcd/server:" in out.output
    assert all(client_cert(store.path(n)).serial_number != s for n, s in old.items())


def test_cli_checks_every_name_before_writing(store):
    before = store.path("apiserver.crt").read_bytes()
    out = CliRunner().invoke(pki_group, ["renew", "apiserver", "bogus", "--cert-dir", str(store.dir)])
    assert out.exit_code == 2 and 'unknown certificate "bogus"' in out.output
    assert store.path("apiserver.crt").read_bytes() == before
