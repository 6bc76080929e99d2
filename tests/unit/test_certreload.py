"""machinery.certreload: a component's client follows its kubeconfig (rotated
when the credentials there change and are usable, kept otherwise), a gRPC
server's certificate follows its files (fetched only when they change), the
HTTPS context is loaded again on change. Fake clock, fake client, real files."""
import datetime
import logging
import os
import time

import pytest

from machinery import certreload, kubeconfig, pki, pkirenew
from machinery.errors import ConfigError


@pytest.fixture(scope="module")
def ca():
    return pki.CA.create()


def write_kubeconfig(path, ca, cn="system:kube-scheduler", days=1.0, key=None, cert=None):
    if cert is None:
        cert, key = ca.issue(cn, days=days)
    doc = kubeconfig.document("c", cn, https_url="https://127.0.0.1:6444", grpc="127.0.0.1:6443",
                              ca_pem=pki.cert_pem(ca.cert), cert_pem=pki.cert_pem(cert), key_pem=pki.key_pem(key))
    path.write_bytes(kubeconfig.dump(doc))
    return kubeconfig.select(path).credentials


class FakeClient:
    def __init__(self, credentials):
        self.credentials = credentials
        self.rotated = []

    async def rotate(self, credentials):
        self.rotated.append(credentials)
        self.credentials = credentials


async def test_unchanged_kubeconfig_is_not_rotated(tmp_path, ca):
    path = tmp_path / "scheduler.conf"
    client = FakeClient(write_kubeconfig(path, ca))
    assert not await certreload.KubeconfigReloader(str(path), client).check()
    assert client.rotated == []


async def test_renewed_kubeconfig_rotates_the_client(tmp_path, ca):
    path = tmp_path / "scheduler.conf"
    client = FakeClient(write_kubeconfig(path, ca, days=0.001))
    reloader = certreload.KubeconfigReloader(str(path), client)
    pkirenew.renew_kubeconfig(path, ca, datetime.timedelta(days=1))
    assert await reloader.check()
    assert client.rotated == [kubeconfig.select(path).credentials]
    assert pki.subject(pki.load_cert(client.credentials.cert_pem))[0] == "system:kube-scheduler"
    assert not await reloader.check()                      # once per change


@pytest.mark.parametrize("breakage", ["garbage", "foreign key", "expired"])
async def test_unusable_kubeconfig_keeps_the_current_credentials(tmp_path, ca, breakage, caplog):
    path = tmp_path / "scheduler.conf"
    client = FakeClient(write_kubeconfig(path, ca))
    if breakage == "garbage":
        path.write_text("clusters: [")
    elif breakage == "foreign key":
        cert, _ = ca.issue("system:kube-scheduler")
        write_kubeconfig(path, ca, cert=cert, key=pki.new_key())
    else:
        write_kubeconfig(path, ca, days=1.0)
    clock = time.time if breakage != "expired" else (lambda: time.time() + 2 * 86400)
    with caplog.at_level(logging.WARNING, "kctl.certreload"):
        assert not await certreload.KubeconfigReloader(str(path), client, clock=clock).check()
    assert client.rotated == []
    assert "keeping the current ones" in caplog.text


async def test_run_checks_every_interval_until_cancelled(tmp_path, ca):
    path = tmp_path / "dns.conf"
    client = FakeClient(write_kubeconfig(path, ca, cn="system:kube-dns"))
    sleeps = []

    async def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            pkirenew.renew_kubeconfig(path, ca, datetime.timedelta(days=1))
        if len(sleeps) == 4:
            raise RuntimeError("stop")
    with pytest.raises(RuntimeError):
        await certreload.KubeconfigReloader(str(path), client, interval=7, sleep=sleep).run()
    assert sleeps == [7, 7, 7, 7] and len(client.rotated) == 1


async def test_old_certificate_is_warned_about_once(tmp_path, ca, caplog):
    path = tmp_path / "controller-manager.conf"
    client = FakeClient(write_kubeconfig(path, ca, cn="system:kube-controller-manager", days=1.0))
    later = time.time() + 0.95 * 86400            # the 5-minute backdating makes the lifetime a bit longer
    reloader = certreload.KubeconfigReloader(str(path), client, clock=lambda: later)
    with caplog.at_level(logging.WARNING, "kctl.certreload"):
        await reloader.check()
        await reloader.check()
    assert caplog.text.count("no renewed one is there: renew it (kctl pki renew)") == 1


def test_reload_tasks_only_with_a_kubeconfig():
    assert certreload.reload_tasks(object(), None) == {}
    assert certreload.reload_tasks(object(), "/x.conf", interval=0) == {}
    tasks = certreload.reload_tasks(FakeClient(None), "/x.conf")
    assert list(tasks) == ["credentials-reload"]
    tasks["credentials-reload"].close()


# ------------------------------------------------------------------ serving

def serving_files(tmp_path, ca, days=1.0):
    cert, key = ca.issue("system:node:n1", server=True, ips=["127.0.0.1"], days=days)
    pki.write_pair(tmp_path, "serving", cert, key)
    (tmp_path / "ca.crt").write_bytes(pki.cert_pem(ca.cert))
    return [str(tmp_path / n) for n in ("serving.crt", "serving.key", "ca.crt")]


def loader(paths):
    def load():
        return tuple(open(p, "rb").read() for p in paths)
    return load


def test_serving_certificate_is_fetched_only_after_a_change(tmp_path, ca):
    paths = serving_files(tmp_path, ca)
    serving = certreload.ServingCertificate(loader(paths), paths)
    first = serving.cert_pem
    assert serving.fetch() is None                         # nothing changed: keep
    serving_files(tmp_path, ca)
    assert serving.fetch() is not None
    assert serving.cert_pem != first and serving.cert_pem == open(paths[0], "rb").read()
    assert serving.fetch() is None


def test_serving_certificate_keeps_the_pair_while_files_disagree(tmp_path, ca):
    paths = serving_files(tmp_path, ca)
    serving = certreload.ServingCertificate(loader(paths), paths)
    first = serving.cert_pem
    (tmp_path / "serving.key").write_bytes(pki.key_pem(pki.new_key()))   # renewal half done: key first
    assert serving.fetch() is None and serving.cert_pem == first
    serving_files(tmp_path, ca)                                            # then the matching pair
    assert serving.fetch() is not None and serving.cert_pem != first


def test_serving_certificate_refuses_an_unusable_start(tmp_path, ca):
    paths = serving_files(tmp_path, ca)
    (tmp_path / "serving.key").write_bytes(pki.key_pem(pki.new_key()))
    with pytest.raises(ConfigError, match="does not belong"):
        certreload.ServingCertificate(loader(paths), paths)


def test_fingerprint_sees_a_missing_file(tmp_path):
    (tmp_path / "a").write_text("x")
    before = certreload._fingerprint([str(tmp_path / "a")], os.stat)
    os.unlink(tmp_path / "a")
    assert certreload._fingerprint([str(tmp_path / "a")], os.stat) != before


def test_kubeconfig_files_names_the_referenced_files(tmp_path):
    (tmp_path / "k.conf").write_text(
        "clusters: [{name: c, cluster: {server: 'x:1', certificate-authority: ca.crt}}]\n"
        "users: [{name: u, user: {client-certificate: /abs/cur.pem, client-key: /abs/cur.pem}}]\n")
    assert certreload.kubeconfig_files(str(tmp_path / "k.conf")) == [
        str(tmp_path / "k.conf"), str(tmp_path / "ca.crt"), "/abs/cur.pem"]


async def test_ssl_context_is_loaded_again_on_change(tmp_path, ca):
    paths = serving_files(tmp_path, ca)
    loads = []

    class Ctx:
        def load_cert_chain(self, cert, key):
            loads.append((cert, key))
    rounds = []

    async def sleep(_):
        rounds.append(1)
        if len(rounds) == 2:
            serving_files(tmp_path, ca)
        if len(rounds) == 4:
            raise RuntimeError("stop")
    with pytest.raises(RuntimeError):
        await certreload.reload_ssl_context(Ctx(), paths[0], paths[1], sleep=sleep)
    assert loads == [(paths[0], paths[1])]
