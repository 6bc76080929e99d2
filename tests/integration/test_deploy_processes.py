"""deploy/'s rendered units run: etcd with the flags of etcd.env, the registry
with registry.yml and registry.env, push-images.sh filling a registry — each
on loopback ports in a temporary directory (ports and paths moved there),
started and stopped by PID through harness.process.Command.

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
from tests.deploy_units import SYSTEMD, expand_exec, installed, rendered  # noqa: F401 - installed: fixture


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
            with urllib.request.urlopen(url, timeout=1, context=apiserver) as r:
                return json.load(r)["health"] == "true"
    with TlsCommand("etcd", tmp_path, argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}):
        nobody = Credentials((pki / "etcd/ca.crt").read_bytes()).ssl_context()
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
            urllib.request.urlopen(url, timeout=5, context=nobody)


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
