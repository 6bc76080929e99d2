"""deploy/images.py builds reproducible layouts; deploy/registry.py runs and stops a real registry."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from deploy.images import build_images
from deploy.registry import LocalRegistry, RegistryError, free_port


def manifest(layout_ref: str) -> dict:
    path, tag = layout_ref.rsplit(":", 1)
    with open(os.path.join(path, "index.json")) as f:
        desc = next(m for m in json.load(f)["manifests"]
                    if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    with open(os.path.join(path, "blobs", "sha256", desc["digest"].split(":")[1])) as f:
        return json.load(f)


def blob_json(layout_ref: str, digest: str) -> dict:
    with open(os.path.join(layout_ref.rsplit(":", 1)[0], "blobs", "sha256", digest.split(":")[1])) as f:
        return json.load(f)


def test_images_are_built_reproducibly_and_cached(tmp_path):
    a = build_images(str(tmp_path / "a"))
    assert set(a) == {"busybox:latest", "busybox:1.36", "kctl/echo:latest"}
    started = time.monotonic()
    again = build_images(str(tmp_path / "a"))
    assert again == a and time.monotonic() - started < 0.5  # cached by content
    b = build_images(str(tmp_path / "b"))
    assert manifest(b["kctl/echo:latest"]) == manifest(a["kctl/echo:latest"])  # same bytes, same digests

    bb, echo = manifest(a["busybox:latest"]), manifest(a["kctl/echo:latest"])
    assert manifest(a["busybox:1.36"]) == bb
    assert len(bb["layers"]) == 1 and len(echo["layers"]) == 2
    assert echo["layers"][0] == bb["layers"][0]  # echo is built on the busybox layer
    cfg = blob_json(a["kctl/echo:latest"], echo["config"]["digest"])
    assert cfg["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert cfg["config"]["Cmd"] == ["/usr/local/bin/echo-server"]
    assert any(e.startswith("PATH=") for e in cfg["config"]["Env"])
    assert blob_json(a["busybox:latest"], bb["config"]["digest"])["config"]["Cmd"] == ["sh"]
    # skopeo reads the layouts we wrote
    out = subprocess.run(["skopeo", "inspect", f"oci:{a['kctl/echo:latest']}"], check=True,
                         capture_output=True, text=True).stdout
    assert len(json.loads(out)["Layers"]) == 2


def test_the_busybox_layouts_version_rebuilds_busybox_and_not_the_debian_images(tmp_path, monkeypatch):
    """BUSYBOX_LAYOUT keys the busybox and echo layouts only; BUILDER_VERSION is in every key,
    deploy/debimages.py's too (a change there rebuilds the Debian images with mmdebstrap)."""
    from deploy import debimages, images

    def debian_keys():
        keys = {}
        for spec in debimages.SPECS:
            keys[spec.repo] = debimages._spec_key(spec, keys)
        return keys

    def build_key(ref):
        with open(os.path.join(ref.rsplit(":", 1)[0], ".kctl-build-key")) as f:
            return f.read()
    first, debian = build_images(str(tmp_path)), debian_keys()
    before = {ref: build_key(where) for ref, where in first.items()}
    monkeypatch.setattr(images, "BUSYBOX_LAYOUT", images.BUSYBOX_LAYOUT + "-next")
    again = build_images(str(tmp_path))
    assert all(build_key(again[ref]) != before[ref] for ref in first)       # rebuilt
    assert debian_keys() == debian                                          # untouched


def test_cli_builds_all_images(tmp_path):
    res = subprocess.run([sys.executable, "-m", "deploy.images", str(tmp_path)], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert res.returncode == 0, res.stderr
    assert f"kctl/echo:latest -> {tmp_path}/kctl-echo:latest" in res.stdout.splitlines()
    assert len(res.stdout.splitlines()) == 3


def test_registry_on_a_given_port_without_auth_stops_by_pid(built, tmp_path):
    port = free_port()
    storage = tmp_path / "storage"
    reg = LocalRegistry(port=port, storage_dir=str(storage))
    with reg:
        assert reg.address == f"127.0.0.1:{port}"
        with urllib.request.urlopen(f"{reg.url}/v2/", timeout=5) as resp:
            assert resp.status == 200  # no htpasswd challenge
        assert reg.push(built["busybox:1.36"], "library/busybox:1.36") == f"127.0.0.1:{port}/library/busybox:1.36"
        with urllib.request.urlopen(f"{reg.url}/v2/library/busybox/tags/list", timeout=5) as resp:
            assert json.load(resp)["tags"] == ["1.36"]
        pid = reg.pid
        workdir = os.path.dirname(reg.log_path)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not os.path.exists(workdir)
    assert (storage / "docker").is_dir()  # a storage dir we were given is kept


def test_registry_port_in_use_is_a_clear_error(registry):
    with pytest.raises(RegistryError, match="did not start"):
        LocalRegistry(port=registry.port, storage_dir=None).start(timeout=5)


def test_registry_binds_the_address_it_is_given(built):
    with LocalRegistry(host="127.0.0.2") as reg:  # any local address, like the lab's segment IP
        assert reg.address.startswith("127.0.0.2:")
        reg.push(f"oci:{built['busybox:latest']}", "library/busybox:latest")
        with urllib.request.urlopen(f"{reg.url}/v2/_catalog", timeout=5) as resp:
            assert json.load(resp)["repositories"] == ["library/busybox"]
