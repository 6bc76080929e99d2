"""ImageStore against a real docker-registry on 127.0.0.1: mirrors, tags, pull policies."""
from __future__ import annotations

import asyncio
import base64
import os
import tempfile

import pytest
from prometheus_client import REGISTRY

from nodeagent.errors import ImagePullError
from nodeagent.images import ImageStore, lowerdirs


def mirror_store(root, registry, skopeo_bin):
    return ImageStore(root, mirrors={"docker.io": registry.url}, skopeo=skopeo_bin)


async def test_plain_name_goes_to_the_docker_io_mirror(registry, store_root, skopeo):
    skopeo_bin, log = skopeo
    count_before = REGISTRY.get_sample_value("kctl_nodeagent_image_pull_duration_seconds_count") or 0
    image = await mirror_store(store_root, registry, skopeo_bin).pull("busybox")

    assert image.ref == "docker.io/library/busybox:latest"
    assert image.repo_digest.startswith("docker.io/library/busybox@sha256:")
    assert image.image_id.startswith("sha256:") and len(image.image_id) == 71
    assert image.config.cmd == ("sh",)
    assert any(e.startswith("PATH=") for e in image.config.env)
    # every skopeo call went to the mirror, as MIRROR/library/busybox
    sources = [a for c in log.calls() for a in c if a.startswith("docker://")]
    assert sources and all(s.startswith(f"docker://{registry.address}/library/busybox") for s in sources)
    # the one layer is unpacked: a real busybox with absolute applet symlinks
    (layer,) = image.layers
    assert os.path.isfile(os.path.join(layer, "bin/busybox"))
    assert os.readlink(os.path.join(layer, "bin/sh")) == "/bin/busybox"
    assert oct(os.stat(os.path.join(layer, "tmp")).st_mode & 0o7777) == "0o1777"
    for mount_point in ("dev", "proc", "sys", "run"):       # as a distribution's image: runc need not make them
        assert os.path.isdir(os.path.join(layer, mount_point)), mount_point
    assert os.readlink(os.path.join(layer, "var/run")) == "/run"
    assert REGISTRY.get_sample_value("kctl_nodeagent_image_pull_duration_seconds_count") == count_before + 1


async def test_tags_and_equivalent_names(registry, store_root, skopeo):
    skopeo_bin, log = skopeo
    store = mirror_store(store_root, registry, skopeo_bin)
    latest = await store.pull("busybox:latest")
    v136 = await store.pull("busybox:1.36")
    assert v136.ref == "docker.io/library/busybox:1.36"
    assert v136.image_id == latest.image_id and v136.layers == latest.layers
    calls = len(log.calls())
    # the same image under other spellings is already present: no skopeo at all
    again = await store.pull("docker.io/library/busybox:1.36")
    assert again == v136 and len(log.calls()) == calls
    assert store.get("index.docker.io/library/busybox") == latest


async def test_two_layer_image_shares_the_base_layer(registry, store_root, skopeo):
    store = ImageStore(store_root, insecure_registries=[registry.address], skopeo=skopeo[0])
    busybox = await store.pull(f"{registry.address}/library/busybox:1.36")
    echo = await store.pull(f"{registry.address}/kctl/echo")
    assert echo.ref == f"{registry.address}/kctl/echo:latest"
    assert len(echo.layers) == 2 and echo.layers[0] == busybox.layers[0]
    assert lowerdirs(echo) == [echo.layers[1], echo.layers[0]]  # top first
    assert os.path.isfile(os.path.join(echo.layers[1], "usr/local/bin/echo-server"))
    assert not os.path.exists(os.path.join(echo.layers[1], "bin/busybox"))
    assert echo.config.exposed_ports == ("8080/tcp",)
    assert echo.config.cmd == ("/usr/local/bin/echo-server",)
    assert store.unpacked == [echo.layers[0].replace(os.path.join(store.root, "layers", "sha256") + "/", "sha256:"),
                              echo.layers[1].replace(os.path.join(store.root, "layers", "sha256") + "/", "sha256:")]


async def test_pull_by_digest(registry, store_root, skopeo):
    store = mirror_store(store_root, registry, skopeo[0])
    tagged = await store.pull("busybox:1.36")
    digest = tagged.repo_digest.split("@", 1)[1]
    pinned = await store.pull(f"busybox@{digest}", "Always")
    assert pinned.ref == f"docker.io/library/busybox@{digest}"
    assert pinned.image_id == tagged.image_id and pinned.repo_digest == tagged.repo_digest
    calls = len(skopeo[1].calls())
    await store.pull(f"busybox@{digest}", "Always")  # a digest cannot move: nothing to ask
    assert len(skopeo[1].calls()) == calls


async def test_if_not_present_pulls_once(registry, store_root, skopeo):
    skopeo_bin, log = skopeo
    store = mirror_store(store_root, registry, skopeo_bin)
    first = await store.pull("busybox:1.36", "IfNotPresent")
    assert log.count("copy") == 1
    second = await store.pull("busybox:1.36", "IfNotPresent")
    # the tag's digest asked in-process, one copy, nothing more
    assert second == first and len(log.calls()) == 1 and store.digest_checks == {"registry": 1}
    # a new store on the same root finds it on disk
    assert await mirror_store(store_root, registry, skopeo_bin).pull("busybox:1.36") == first
    assert len(log.calls()) == 1


async def test_never_uses_only_local_images(registry, store_root, skopeo):
    skopeo_bin, log = skopeo
    store = mirror_store(store_root, registry, skopeo_bin)
    with pytest.raises(ImagePullError) as err:
        await store.pull("busybox:1.36", "Never")
    assert err.value.reason == "ErrImageNeverPull"
    assert "busybox:1.36" in err.value.message and "Never" in err.value.message
    assert log.calls() == []
    pulled = await store.pull("busybox:1.36")
    assert await store.pull("busybox:1.36", "Never") == pulled
    assert len(log.calls()) == 1 and store.digest_checks == {"registry": 1}
    assert store.remove("busybox:1.36") and not store.remove("busybox:1.36")
    with pytest.raises(ImagePullError, match="ErrImageNeverPull"):
        await store.pull("busybox:1.36", "Never")


async def test_always_checks_the_registry_and_follows_a_moved_tag(built, registry, store_root, skopeo, monkeypatch):
    skopeo_bin, log = skopeo
    made = []                                  # the pulls' tmp dirs (an inode made and freed each)
    mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **kw: made.append(kw.get("prefix")) or mkdtemp(*a, **kw))
    store = ImageStore(store_root, insecure_registries=[registry.address], skopeo=skopeo_bin)
    ref = f"{registry.address}/kctl/moving:v1"
    registry.push(built["busybox:latest"], "kctl/moving:v1")
    first = await store.pull(ref, "Always")

    def checks():   # (tag -> digest asks, skopeo copies); the asks are in-process, no skopeo inspect
        assert log.count("inspect") == 0 and store.digest_checks["skopeo"] == 0
        return store.digest_checks["registry"], log.count("copy")
    assert checks() == (1, 1)
    pulls_made = [p for p in made if p and p.startswith("pull-")]
    same = await store.pull(ref, "Always")  # digest unchanged: manifest check only
    assert same == first and checks() == (2, 1)
    assert [p for p in made if p and p.startswith("pull-")] == pulls_made     # and no tmp dir
    registry.push(built["kctl/echo:latest"], "kctl/moving:v1")
    assert (await store.pull(ref, "IfNotPresent")) == first  # IfNotPresent does not look
    moved = await store.pull(ref, "Always")
    assert checks() == (3, 2)
    assert moved.image_id != first.image_id and len(moved.layers) == 2
    assert moved.layers[0] == first.layers[0]  # the shared base layer was not unpacked again
    assert store.get(ref) == moved


async def test_ten_concurrent_pulls_one_copy_each_layer_unpacked_once(registry, store_root, skopeo):
    skopeo_bin, log = skopeo
    store = mirror_store(store_root, registry, skopeo_bin)
    echo = f"{registry.address}/kctl/echo:latest"
    store.registries.insecure.add(registry.address)
    results = await asyncio.gather(*[store.pull(echo, "Always") for _ in range(10)])
    assert all(r == results[0] for r in results)
    assert log.count("copy") == 1
    # ten concurrent uses across refs sharing the busybox layer
    mixed = await asyncio.gather(*[store.pull(r) for r in ["busybox", "busybox:1.36", echo] * 4])
    assert {m.layers[0] for m in mixed} == {results[0].layers[0]}
    assert sorted(store.unpacked) == sorted(set(store.unpacked)) and len(store.unpacked) == 2
    assert os.listdir(os.path.join(store_root, "tmp")) == []
    assert len(os.listdir(os.path.join(store_root, "layers", "sha256"))) == 2


async def test_two_stores_on_one_root_race_safely(registry, store_root, skopeo):
    a = mirror_store(store_root, registry, skopeo[0])
    b = mirror_store(store_root, registry, skopeo[0])
    ia, ib = await asyncio.gather(a.pull("busybox:1.36"), b.pull("busybox:1.36"))
    assert ia == ib
    assert len(os.listdir(os.path.join(store_root, "layers", "sha256"))) == 1
    assert os.listdir(os.path.join(store_root, "tmp")) == []


async def test_unknown_image_carries_the_registry_message(registry, store_root, skopeo):
    store = mirror_store(store_root, registry, skopeo[0])
    with pytest.raises(ImagePullError) as err:
        await store.pull("no-such-image")
    assert err.value.reason == "ErrImagePull"
    assert "manifest unknown" in err.value.message
    assert f"{registry.address}/library/no-such-image" in err.value.message
    assert "\n" not in err.value.message and 'msg="' not in err.value.message
    with pytest.raises(ImagePullError, match="manifest unknown") as err:
        await store.pull("busybox:no-such-tag")
    assert store.get("no-such-image") is None
    assert os.listdir(os.path.join(store_root, "tmp")) == []


async def test_invalid_name_never_reaches_skopeo(registry, store_root, skopeo):
    store = mirror_store(store_root, registry, skopeo[0])
    for bad in ("BusyBox", "busybox:bad tag", "busy..box", "busybox@sha256:xyz"):
        with pytest.raises(ImagePullError) as err:
            await store.pull(bad)
        assert err.value.reason == "InvalidImageName", bad
    assert skopeo[1].calls() == []


async def test_unreachable_registry_is_err_image_pull(store_root, skopeo):
    from deploy.registry import free_port
    store = ImageStore(store_root, insecure_registries=[f"127.0.0.1:{free_port()}"], skopeo=skopeo[0])
    with pytest.raises(ImagePullError) as err:
        await store.pull(f"{store.registries.insecure.copy().pop()}/x/y:1")
    assert err.value.reason == "ErrImagePull" and "connection refused" in err.value.message


async def test_always_fails_when_the_registry_is_gone_even_with_a_local_image(built, store_root, skopeo):
    from deploy.registry import LocalRegistry
    with LocalRegistry() as reg:
        reg.push(built["busybox:1.36"], "library/busybox:1.36")
        store = ImageStore(store_root, mirrors={"docker.io": reg.url}, skopeo=skopeo[0])
        local = await store.pull("busybox:1.36")
    with pytest.raises(ImagePullError) as err:  # kubelet: Always means ask, and a failed ask is ErrImagePull
        await store.pull("busybox:1.36", "Always")
    assert err.value.reason == "ErrImagePull" and "connection refused" in err.value.message
    assert await store.pull("busybox:1.36", "IfNotPresent") == local


async def test_local_oci_layout_and_archive(built, tmp_path, store_root, skopeo):
    import subprocess
    archive = tmp_path / "echo.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{built['kctl/echo:latest']}", f"oci-archive:{archive}:v1"],
                   check=True)
    store = ImageStore(store_root, skopeo=skopeo[0])
    from_layout = await store.pull(f"oci:{built['kctl/echo:latest']}")
    from_archive = await store.pull(f"oci-archive:{archive}:v1")
    assert from_layout.ref == f"oci:{built['kctl/echo:latest']}" and from_layout.repo_digest is None
    assert from_archive.image_id == from_layout.image_id and from_archive.layers == from_layout.layers
    assert len(store.unpacked) == 2


async def test_the_in_process_digest_is_skopeos(registry, built):
    """A tag's digest asked in-process (HEAD, Docker-Content-Digest) is the sha256 of what
    `skopeo inspect --raw` gets, for a one-layer and a two-layer image; a missing tag or
    an unreachable registry is no answer (the store then asks skopeo, whose error a pod
    shows: test_unknown_image_carries_the_registry_message, test_unreachable_registry_...)."""
    import hashlib
    import subprocess

    from deploy.registry import free_port
    from nodeagent.manifestdigest import manifest_digest
    for path, tag in (("library/busybox", "1.36"), ("kctl/echo", "latest")):
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                              f"docker://{registry.address}/{path}:{tag}"], capture_output=True, check=True).stdout
        assert await manifest_digest(registry.address, path, tag, True) == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert await manifest_digest(registry.address, "library/busybox", "no-such-tag", True) is None
    assert await manifest_digest(f"127.0.0.1:{free_port()}", "library/busybox", "1.36", True) is None
    # not insecure: HTTPS with the system's CAs only, so a plain-HTTP registry gives no answer
    assert await manifest_digest(registry.address, "library/busybox", "1.36", False) is None


async def test_a_registry_asking_for_credentials_is_asked_by_skopeo(built, store_root, skopeo):
    """A 401 is no answer in-process: skopeo asks, with the pod's pull credentials."""
    from deploy.registry import LocalRegistry
    skopeo_bin, log = skopeo
    with LocalRegistry(auth=("puller", "pa55")) as reg:
        reg.push(built["busybox:1.36"], "library/busybox:1.36")
        store = ImageStore(store_root, insecure_registries=[reg.address], skopeo=skopeo_bin)
        auth = {"auths": {reg.address: {"auth": base64.b64encode(b"puller:pa55").decode()}}}
        image = await store.pull(f"{reg.address}/library/busybox:1.36", "Always", auth)
        assert image.repo_digest.startswith(f"{reg.address}/library/busybox@sha256:")
        assert store.digest_checks == {"skopeo": 1} and log.count("inspect") == 1
        with pytest.raises(ImagePullError, match="(?i)unauthorized|authentication required"):
            await store.pull(f"{reg.address}/library/busybox:1.36", "Always")


async def test_the_in_process_digest_follows_the_proxy_environment(registry, monkeypatch):
    """HTTP_PROXY / NO_PROXY apply to the in-process ask as they do to skopeo: through a
    proxy that does not answer there is no answer (skopeo asks then), NO_PROXY goes direct."""
    from deploy.registry import free_port
    from nodeagent.manifestdigest import manifest_digest
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert await manifest_digest(registry.address, "library/busybox", "1.36", True) is None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert (await manifest_digest(registry.address, "library/busybox", "1.36", True) or "").startswith("sha256:")
