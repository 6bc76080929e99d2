"""deploy/'s rendered units run: etcd with the flags of etcd.env, the registry
with registry.yml and registry.env, push-images.sh filling a registry — each
on loopback ports in a temporary directory (ports and paths moved there),
started and stopped by PID through harness.process.Command. And an HA
control plane's etcd: the three members install-units.sh renders for
--control-plane-hosts cp1=127.0.0.11,... with deploy/vagrant/pki.py's
certificates form one cluster over TLS.

The files themselves are checked in tests/unit/test_deploy_files.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.process import Command, free_port
from tests.deploy_units import (SYSTEMD, expand_exec, installed, rendered,  # noqa: F401 - installed: fixture
                                run_install_units)


def _health(url: str, context) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=2, context=context) as r:
        return json.load(r)["health"] == "true"


def test_etcd_starts_with_our_flags(installed, tmp_path):
    """etcd with the rendered flags (loopback ports, data dir and cert dir moved to a temp dir) serves
    /health over TLS to the apiserver's etcd client certificate, and refuses a client without one."""
    import ssl

    from machinery.kubeconfig import Credentials
    etcd = shutil.which("etcd")
    if not etcd:
        pytest.skip("etcd is not installed: etcd NOT started with our flags")
    unit, env = rendered(installed, "etcd")
    text = env["KCTL_ETCD_ARGS"]
    assert "https://127.0.0.1:2379" in text and "/var/lib/kctl/etcd" in text and "--client-cert-auth" in text
    pki = installed / "etc/kctl/pki"
    client, peer = free_port(), free_port()
    text = (text.replace(",https://10.77.0.10:2379", "").replace(":2379", f":{client}").replace(":2380", f":{peer}")
            .replace("/var/lib/kctl/etcd", str(tmp_path / "etcd")).replace("/etc/kctl/pki", str(pki)))
    argv = expand_exec(unit["Service"]["ExecStart"][0], {"KCTL_ETCD_ARGS": text})
    apiserver = Credentials((pki / "etcd/ca.crt").read_bytes(), (pki / "apiserver-etcd-client.crt").read_bytes(),
                            (pki / "apiserver-etcd-client.key").read_bytes()).ssl_context()
    url = f"https://127.0.0.1:{client}/health"

    class TlsCommand(Command):
        def ready(self) -> bool:
            return _health(f"https://127.0.0.1:{client}", apiserver)
    with TlsCommand("etcd", tmp_path, argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}):
        nobody = Credentials((pki / "etcd/ca.crt").read_bytes()).ssl_context()
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
            urllib.request.urlopen(url, timeout=5, context=nobody)


HA_MEMBERS = {"cp1": "127.0.0.11", "cp2": "127.0.0.12", "cp3": "127.0.0.13"}


def _etcd_v3(url: str, path: str, body: dict, context) -> dict:
    req = urllib.request.Request(f"{url}/v3/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5, context=context) as r:
        return json.load(r)


def _moved(text: str, root: Path, client: int, peer: int) -> str:
    """A rendered flag string with etcd's ports and the machine's paths moved into the test's."""
    return (text.replace(":2379", f":{client}").replace(":2380", f":{peer}")
            .replace("/var/lib/kctl/etcd", str(root / "etcd")).replace("/etc/kctl/pki", str(root / "etc/kctl/pki")))


@pytest.fixture
def ha_etcd(tmp_path):
    """An HA control plane's etcd: each cpI's rendered etcd (install-units.sh --control-plane-hosts, its own
    member certificate from deploy/vagrant/pki.py) started for real on 127.0.0.1I, all running and healthy."""
    from deploy.vagrant import pki as vagrant_pki
    from machinery.kubeconfig import Credentials
    etcd = shutil.which("etcd")
    if not etcd:
        pytest.skip("etcd is not installed: the HA etcd members NOT started")
    vagrant_pki.make(tmp_path / "pki", HA_MEMBERS, {})
    hosts = ",".join(f"{m}={ip}" for m, ip in HA_MEMBERS.items())
    client, peer = free_port(), free_port()     # the same ports on each member's own address
    procs, roots = {}, {}
    for m, ip in HA_MEMBERS.items():
        roots[m] = root = tmp_path / m
        shutil.copytree(tmp_path / "pki/bundles" / m, root / "etc/kctl/pki")
        run_install_units(root, "controlplane", "--prefix", "/opt/kctl", "--advertise-ip", ip,
                          "--control-plane-hosts", hosts)
        unit, env = rendered(root, "etcd")
        text = env["KCTL_ETCD_ARGS"]
        assert f"--listen-client-urls https://127.0.0.1:2379,https://{ip}:2379" in text
        text = _moved(text.replace("https://127.0.0.1:2379,", ""), root, client, peer)   # loopback: one machine's
        procs[m] = Command(f"etcd-{m}", root, expand_exec(unit["Service"]["ExecStart"][0], {"KCTL_ETCD_ARGS": text}),
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    pki_dir = tmp_path / "pki/pki"
    tls = Credentials((pki_dir / "etcd/ca.crt").read_bytes(), (pki_dir / "apiserver-etcd-client.crt").read_bytes(),
                      (pki_dir / "apiserver-etcd-client.key").read_bytes()).ssl_context()
    urls = {m: f"https://{ip}:{client}" for m, ip in HA_MEMBERS.items()}
    try:
        for proc in procs.values():      # a member is ready only once a quorum is up: start all, then wait
            proc.spawn()
        for m, proc in procs.items():
            proc.ready = lambda url=urls[m]: _health(url, tls)     # true only with a leader (a quorum)
            proc.wait_ready(60)
        yield {"procs": procs, "roots": roots, "urls": urls, "tls": tls, "client": client, "peer": peer,
               "pki": pki_dir}
    finally:
        for proc in procs.values():
            proc.stop()


def test_ha_etcd_members_form_one_cluster(ha_etcd):
    """The three agree on one 3-member cluster of the rendered names and URLs, a key written through
    one member is read through another, and each apiserver's --etcd-servers are exactly the members'
    client URLs (its own first)."""
    import base64
    urls, tls, client, peer = ha_etcd["urls"], ha_etcd["tls"], ha_etcd["client"], ha_etcd["peer"]
    lists = {m: _etcd_v3(url, "cluster/member/list", {}, tls) for m, url in urls.items()}
    ids = {m: lst["header"]["cluster_id"] for m, lst in lists.items()}
    assert len(set(ids.values())) == 1, ids
    members = {x["name"]: (x["peerURLs"], x["clientURLs"]) for x in lists["cp1"]["members"]}
    assert members == {m: ([f"https://{ip}:{peer}"], [f"https://{ip}:{client}"]) for m, ip in HA_MEMBERS.items()}
    for m, root in ha_etcd["roots"].items():
        _, env = rendered(root, "apiserver")
        args = env["KCTL_APISERVER_ARGS"].split()
        servers = args[args.index("--etcd-servers") + 1].replace(":2379", f":{client}").split(",")
        assert servers[0] == urls[m] and sorted(servers) == sorted(urls.values())
    b64 = lambda v: base64.b64encode(v.encode()).decode()   # noqa: E731
    _etcd_v3(urls["cp1"], "kv/put", {"key": b64("/kctl/ha"), "value": b64("one cluster")}, tls)
    got = _etcd_v3(urls["cp3"], "kv/range", {"key": b64("/kctl/ha")}, tls)
    assert base64.b64decode(got["kvs"][0]["value"]).decode() == "one cluster"


def test_ha_apiserver_outlives_its_own_etcd_member(ha_etcd):
    """cp2's rendered apiserver (its --etcd-servers: cp2's member first, then cp1's and cp3's, over TLS
    with the bundle's etcd client certificate) serves kctl; with cp2's member stopped it still reads
    and writes through the other two."""
    import subprocess
    import sys

    from harness.process import python_env
    root, client = ha_etcd["roots"]["cp2"], ha_etcd["client"]
    unit, env = rendered(root, "apiserver")
    argv = expand_exec(unit["Service"]["ExecStart"][0],
                       {"KCTL_APISERVER_ARGS": _moved(env["KCTL_APISERVER_ARGS"], root, client, 0)})
    assert argv[0] == "/opt/kctl/.venv/bin/kctl-apiserver"
    grpc_port, https_port, metrics_port = free_port(), free_port(), free_port()
    moved = {"--listen": f"127.0.0.12:{grpc_port}", "--http-listen": f"127.0.0.12:{https_port}",
             "--metrics-listen": f"127.0.0.1:{metrics_port}"}
    assert argv[argv.index("--listen") + 1] == "127.0.0.12:6443"
    args = [moved.get(prev, a) for prev, a in zip([""] + argv[1:], argv[1:])]
    apiserver = Command("apiserver-cp2", root, [sys.executable, "-m", "apiserver.main", *args],
                        ready_url=f"http://127.0.0.1:{metrics_port}/metrics", env=python_env())
    admin = root / "etc/kctl/pki/admin.conf"

    def kctl(*words: str) -> str:
        res = subprocess.run([sys.executable, "-m", "kubectlish.main", "--kubeconfig", str(admin), "--server",
                              f"127.0.0.12:{grpc_port}", *words], capture_output=True, text=True, timeout=60,
                             env=python_env())
        assert res.returncode == 0, res.stderr + res.stdout
        return res.stdout
    with apiserver.start(60):
        kctl("create", "namespace", "before")
        ha_etcd["procs"]["cp2"].stop()                  # this machine's own member, first in --etcd-servers
        assert "before" in kctl("get", "namespaces")
        kctl("create", "namespace", "after")
        assert {"before", "after"} <= set(kctl("get", "namespaces", "-o", "name").replace("namespace/", "").split())
        # ... through another member: the apiserver left its own (apiserver.etcdendpoints says so).
        assert f"etcd member 127.0.0.12:{client} failed" in apiserver.log_path.read_text()


def registry(installed: Path, tmp_path: Path, program: str) -> tuple[Command, int]:
    """`program serve registry.yml` with registry.env, moved to a free loopback port and tmp_path."""
    _, env = rendered(installed, "registry")
    port = free_port()
    env = {**env, "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
           "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "storage")}
    return Command("registry", tmp_path, [program, "serve", str(installed / "etc/kctl/registry.yml")],
                   ready_url=f"http://127.0.0.1:{port}/v2/", env=env), port


def test_registry_serves_with_rendered_config(installed, tmp_path):
    unit, env = rendered(installed, "registry")
    argv = expand_exec(unit["Service"]["ExecStart"][0], env)
    if not Path(argv[0]).exists():
        pytest.skip(f"{argv[0]} is not installed (package docker-registry): registry NOT started")
    assert argv[1:] == ["serve", "/etc/kctl/registry.yml"]
    with registry(installed, tmp_path, argv[0])[0]:
        pass


def test_push_images_fills_a_registry(installed, tmp_path):
    """push-images.sh: kctl's images under docker.io names in a (throwaway, loopback) registry."""
    missing = [p for p in ("/usr/bin/docker-registry", shutil.which("skopeo") or "skopeo", "/bin/busybox")
               if not Path(p).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: push-images.sh NOT run")
    proc, port = registry(installed, tmp_path, "/usr/bin/docker-registry")
    with proc:
        res = subprocess.run(["bash", str(SYSTEMD / "push-images.sh"), f"127.0.0.1:{port}", str(tmp_path / "img")],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr + res.stdout

        def get(path):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/{path}", timeout=5) as r:
                return json.load(r)
        assert sorted(get("_catalog")["repositories"]) == ["kctl/echo", "library/busybox"]
        assert sorted(get("library/busybox/tags/list")["tags"]) == ["1.36", "latest"]
        assert get("kctl/echo/tags/list")["tags"] == ["latest"]
