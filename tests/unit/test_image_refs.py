"""Image reference normalisation (docker/containerd rules) and pull-source selection."""
from __future__ import annotations

import os

import pytest

from nodeagent.errors import ContainerConfigError, ImagePullError, SkopeoError
from nodeagent.imageref import ImageRef, default_pull_policy, parse_reference
from nodeagent.images import ImageStore
from nodeagent.skopeo import Registries, Skopeo, endpoint, error_line

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("ref, want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("kctl/echo", "docker.io/kctl/echo:latest"),
    ("localhost/echo", "localhost/echo:latest"),
    ("localhost:5000/echo:v1", "localhost:5000/echo:v1"),
    ("127.0.0.1:5000/kctl/echo:latest", "127.0.0.1:5000/kctl/echo:latest"),
    ("registry.example.com/a/b/c:1.0-rc_1", "registry.example.com/a/b/c:1.0-rc_1"),
    ("Registry.Example.com/a", "Registry.Example.com/a:latest"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox:1.36@{DIGEST}"),
    (f"10.1.2.3:5000/x@{DIGEST}", f"10.1.2.3:5000/x@{DIGEST}"),
    ("my-app__x/web.front-end", "docker.io/my-app__x/web.front-end:latest"),
])
def test_normalises_like_docker(ref, want):
    assert str(parse_reference(ref)) == want


def test_parts():
    r = parse_reference("127.0.0.1:5000/kctl/echo:v2")
    assert (r.transport, r.domain, r.path, r.tag, r.digest) == ("docker", "127.0.0.1:5000", "kctl/echo", "v2", None)
    assert r.name == "127.0.0.1:5000/kctl/echo"
    d = parse_reference(f"busybox@{DIGEST}")
    assert d.tag is None and d.digest == DIGEST


@pytest.mark.parametrize("ref, want", [
    ("oci:/var/lib/images/busybox:1.36", ImageRef("oci", path="/var/lib/images/busybox", tag="1.36")),
    ("oci:/var/lib/images/busybox", ImageRef("oci", path="/var/lib/images/busybox")),
    ("oci-archive:/tmp/echo.tar:latest", ImageRef("oci-archive", path="/tmp/echo.tar", tag="latest")),
])
def test_local_oci_references(ref, want):
    assert parse_reference(ref) == want
    assert str(parse_reference(ref)) == ref


def test_relative_oci_path_becomes_absolute():
    assert parse_reference("oci:images/busybox:1").path == os.path.abspath("images/busybox")


@pytest.mark.parametrize("ref", [
    "", " busybox", "BusyBox", "busybox:", "busybox:bad tag", "busybox:" + "x" * 129, "busy..box",
    "busybox@sha256:xyz", "busybox@", "-busybox", "busybox/", "a//b", "UPPER.example.com/Repo",
    "host_name.com/x", "oci:", "oci:/p:bad tag",
])
def test_invalid_names(ref):
    with pytest.raises(ImagePullError) as err:
        parse_reference(ref)
    assert err.value.reason == "InvalidImageName"


@pytest.mark.parametrize("ref, policy", [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"),
    (f"busybox@{DIGEST}", "IfNotPresent"), ("oci:/x:latest", "IfNotPresent"),
])
def test_default_pull_policy(ref, policy):
    assert default_pull_policy(ref) == policy


def test_endpoints():
    assert endpoint("http://10.1.2.3:5000") == ("10.1.2.3:5000", True)
    assert endpoint("http://10.1.2.3:5000/v2/") == ("10.1.2.3:5000", True)
    assert endpoint("https://mirror.example.com") == ("mirror.example.com", False)
    assert endpoint("mirror.example.com:443") == ("mirror.example.com:443", False)


def test_sources_mirror_then_optional_upstream():
    regs = Registries.of({"docker.io": ["http://10.1.2.3:5000", "https://m2"]}, ["m2", "reg.local:5000"])
    assert regs.sources(parse_reference("busybox")) == [("10.1.2.3:5000", True), ("m2", True)]
    assert regs.sources(parse_reference("reg.local:5000/x")) == [("reg.local:5000", True)]
    assert regs.sources(parse_reference("quay.io/x")) == [("quay.io", False)]
    regs.mirror_fallback = True
    assert regs.sources(parse_reference("busybox"))[-1] == ("docker.io", False)


def test_store_takes_its_registries_from_its_arguments(tmp_path):
    store = ImageStore(str(tmp_path), mirrors={"docker.io": "http://10.1.2.3:5000"}, insecure_registries=["m2"],
                       mirror_fallback=True, skopeo="/opt/skopeo", pull_timeout=5)
    assert store.registries == Registries({"docker.io": ["http://10.1.2.3:5000"]}, {"m2"}, True)
    assert (store.skopeo.binary, store.skopeo.timeout) == ("/opt/skopeo", 5)
    assert os.path.exists(store.skopeo.policy) and os.path.exists(store.skopeo.registries_conf)


def test_skopeo_stderr_becomes_one_readable_line():
    stderr = ('time="2026-11-23T01:36:25Z" level=fatal msg="Error parsing image name '
              '\\"docker://127.0.0.1:5000/library/nope:latest\\": reading manifest latest in '
              '127.0.0.1:5000/library/nope: manifest unknown: manifest unknown"\n')
    assert error_line(stderr) == ("reading manifest latest in 127.0.0.1:5000/library/nope: "
                                 "manifest unknown: manifest unknown")
    assert error_line("plain\nmulti line\n") == "plain multi line"
    assert error_line("") == "skopeo failed without a message"


async def test_skopeo_that_cannot_run_is_a_skopeo_error(tmp_path):
    sk = Skopeo(str(tmp_path / "no-skopeo"), str(tmp_path / "p.json"), str(tmp_path / "r.conf"), str(tmp_path))
    with pytest.raises(SkopeoError, match="cannot run .*no-skopeo"):
        await sk.run("inspect", "docker://x/y")


async def test_unknown_pull_policy_is_a_container_config_error(tmp_path):
    with pytest.raises(ContainerConfigError, match="unknown imagePullPolicy 'Sometimes'"):
        await ImageStore(str(tmp_path)).pull("busybox", "Sometimes")
