"""The lab's image pushes (deploy/lab/cluster.py): one tag of each repository
before its other tags, and a failed Debian-package build reported, not raised."""
from __future__ import annotations

import subprocess

import pytest

from deploy import debimages
from deploy.debimages import ImageBuildError
from deploy.lab import cluster


class FakePopen:
    started: list[list[str]] = []
    waves: list[int] = []

    def __init__(self, argv, **kw):
        self.argv, self.returncode = argv, 0
        FakePopen.started.append(argv)

    def communicate(self, timeout=None):
        FakePopen.waves.append(len(FakePopen.started))
        if "broken" in self.argv[-1]:
            self.returncode = 1
            return b"", b"unauthorized"
        return b"", b""


@pytest.fixture
def fake_push(monkeypatch):
    FakePopen.started, FakePopen.waves = [], []
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.setattr(cluster, "_wait", lambda *a, **kw: None)
    return FakePopen


def test_first_tags_go_first(fake_push):
    images = {"redis:7": "library/redis:7", "redis:latest": "library/redis:latest", "python:3": "library/python:3"}
    built = {ref: f"/cache/{ref.split(':')[0]}:{ref.split(':')[1]}" for ref in images}
    cluster._push("10.0.0.1:5000", built, images)
    dests = [argv[-1] for argv in fake_push.started]
    assert dests == ["docker://10.0.0.1:5000/library/redis:7", "docker://10.0.0.1:5000/library/python:3",
                     "docker://10.0.0.1:5000/library/redis:latest"]
    assert fake_push.started[0][-2] == "oci:/cache/redis:7"
    assert fake_push.waves[:2] == [2, 2]        # both first tags were started before any was waited for


def test_a_failed_push_names_the_image(fake_push):
    with pytest.raises(cluster.LabError, match="pushing broken:1 to the lab registry failed: unauthorized"):
        cluster._push("r:5000", {"broken:1": "/c/broken:1"}, {"broken:1": "kctl/broken:1"})


def test_a_failed_debian_build_is_reported_not_raised(monkeypatch):
    def fail(*a, **kw):
        raise ImageBuildError("mmdebstrap bookworm failed: E: no mirror")

    monkeypatch.setattr(debimages, "build_debian_images", fail)
    out: dict = {}
    cluster._debian_images_to_registry("r:5000", out)
    assert isinstance(out["error"], ImageBuildError) and "no mirror" in str(out["error"])
    assert "images" not in out and out["seconds"] >= 0
