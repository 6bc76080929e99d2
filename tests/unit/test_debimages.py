"""deploy/debimages.py: layers as the difference of two root trees, whiteouts,
the parent-directory rule, and the cache (mmdebstrap replaced by a fake that
writes small trees; the real one runs in the e2e tests)."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from deploy import debimages
from deploy.debimages import (ImageBuildError, build_debian_images, diff_paths, layers_index, layout_layers,
                              tree_index, tree_layer)


def make_tree(root: Path, extra: dict[str, str] | None = None) -> Path:
    """A small root filesystem: dirs, files, a symlink, a hard link, /dev and /etc/resolv.conf."""
    for d in ("bin", "etc", "usr/lib", "dev", "tmp", "var/lib/old/deep"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "bin/sh").write_text("#!shell\n")
    (root / "bin/sh").chmod(0o755)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    (root / "etc/hostname").write_text("buildhost\n")
    (root / "dev/null").write_text("not a device in a test\n")
    (root / "var/lib/old/deep/file").write_text("old\n")
    os.symlink("/bin/sh", root / "bin/bash")
    os.link(root / "bin/sh", root / "bin/sh2")
    for path, text in (extra or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def full_layer(root: Path, out: Path) -> str:
    paths, whiteouts = diff_paths(tree_index(str(root)), {})
    assert whiteouts == []
    return tree_layer(str(root), paths, whiteouts, str(out))


def test_a_full_layer_indexes_like_its_tree(tmp_path):
    root = make_tree(tmp_path / "root")
    full_layer(root, tmp_path / "base.tar.gz")
    assert layers_index([str(tmp_path / "base.tar.gz")]) == tree_index(str(root))


def test_emptied_files_and_dirs(tmp_path):
    root = make_tree(tmp_path / "root")
    full_layer(root, tmp_path / "base.tar.gz")
    with tarfile.open(tmp_path / "base.tar.gz") as tar:
        names = tar.getnames()
        assert tar.getmember("etc/resolv.conf").size == 0
        assert tar.extractfile("etc/hostname").read() == b""
        assert tar.getmember("tmp").mode == 0o1777
        assert tar.getmember("bin/sh2").islnk() or tar.getmember("bin/sh").islnk()
        assert tar.getmember("bin/bash").linkname == "/bin/sh"
    assert "dev" in names and "dev/null" not in names


def test_diff_layer_holds_changes_parents_and_topmost_whiteouts(tmp_path):
    base = make_tree(tmp_path / "base")
    app = make_tree(tmp_path / "app", {"usr/lib/redis/redis-server": "binary\n"})
    (app / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nredis:x:100:100::/var/lib/redis:/bin/false\n")
    (app / "bin/sh").chmod(0o700)
    subprocess.run(["rm", "-r", str(app / "var/lib/old")], check=True)
    paths, whiteouts = diff_paths(tree_index(str(app)), tree_index(str(base)))
    # bin/sh2 is the same inode as bin/sh, so its mode changed too
    assert paths == ["bin", "bin/sh", "bin/sh2", "etc", "etc/passwd", "usr", "usr/lib", "usr/lib/redis",
                     "usr/lib/redis/redis-server"]
    assert whiteouts == ["var/lib/old"]


def test_base_plus_diff_layer_adds_up_to_the_app_tree(tmp_path):
    base = make_tree(tmp_path / "base")
    app = make_tree(tmp_path / "app", {"data/.keep": ""})
    subprocess.run(["rm", "-r", str(app / "var/lib/old")], check=True)
    (app / "etc/passwd").write_text("changed\n")
    full_layer(base, tmp_path / "base.tar.gz")
    paths, whiteouts = diff_paths(tree_index(str(app)), layers_index([str(tmp_path / "base.tar.gz")]))
    tree_layer(str(app), paths, whiteouts, str(tmp_path / "app.tar.gz"))
    with tarfile.open(tmp_path / "app.tar.gz") as tar:
        assert "var/lib/.wh.old" in tar.getnames()
        assert "bin/sh" not in tar.getnames()
    stacked = layers_index([str(tmp_path / "base.tar.gz"), str(tmp_path / "app.tar.gz")])
    assert stacked == tree_index(str(app))


# ------------------------------------------------------------------ builds

@pytest.fixture
def fake_mmdebstrap(monkeypatch):
    calls: list[tuple[str, ...]] = []

    def fake(dest, packages=()):
        calls.append(tuple(packages))
        make_tree(Path(dest), {f"usr/bin/{p}": f"{p} binary\n" for p in packages})

    monkeypatch.setattr(debimages, "mmdebstrap", fake)
    return calls


def test_build_layers_share_the_base_and_the_cache_skips_rebuilds(tmp_path, fake_mmdebstrap):
    log: list[str] = []
    built = build_debian_images(str(tmp_path / "cache"), log=log.append)
    assert fake_mmdebstrap == [(), ("redis-server",), ("python3", "python3-redis")]
    assert [line.split()[1] for line in log] == ["debian", "redis", "python", "kctl-guestbook"]
    assert built["redis:7"] == f"{tmp_path / 'cache' / 'redis'}:7"
    assert set(built) == set(debimages.IMAGES)
    debian, _ = layout_layers(str(tmp_path / "cache/debian"), "bookworm")
    redis, _ = layout_layers(str(tmp_path / "cache/redis"), "7")
    python, _ = layout_layers(str(tmp_path / "cache/python"), "3")
    guestbook, _ = layout_layers(str(tmp_path / "cache/kctl-guestbook"), "v1")
    names = lambda blobs: [os.path.basename(b) for b in blobs]  # noqa: E731
    assert names(redis)[:1] == names(python)[:1] == names(debian) and len(redis) == 2
    assert names(guestbook)[:2] == names(python) and len(guestbook) == 3
    with tarfile.open(redis[1]) as tar:
        assert "usr/bin/redis-server" in tar.getnames() and "etc/passwd" not in tar.getnames()
        assert "data" in tar.getnames()
    with tarfile.open(guestbook[2]) as tar:
        assert tar.getnames() == ["app", "app/guestbook.py"]
    config = json.loads(Path(tmp_path / "cache/redis/index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in config["manifests"]] == [
        "7", "7.0", "latest"]

    log.clear()
    fake_mmdebstrap.clear()
    assert build_debian_images(str(tmp_path / "cache"), log=log.append) == built
    assert (log, fake_mmdebstrap) == ([], [])


def test_a_changed_spec_rebuilds_it_and_what_is_built_on_it(tmp_path, fake_mmdebstrap, monkeypatch):
    build_debian_images(str(tmp_path / "cache"))
    specs = [replace(s, packages=("python3", "python3-redis", "python3-flask")) if s.repo == "python" else s
             for s in debimages.SPECS]
    monkeypatch.setattr(debimages, "SPECS", specs)
    monkeypatch.setattr(debimages, "SPECS_BY_REPO", {s.repo: s for s in specs})
    fake_mmdebstrap.clear()
    log: list[str] = []
    build_debian_images(str(tmp_path / "cache"), log=log.append)
    assert fake_mmdebstrap == [("python3", "python3-redis", "python3-flask")]
    assert [line.split()[1] for line in log] == ["python", "kctl-guestbook"]


def test_mmdebstrap_failure_is_an_image_build_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mmdebstrap").write_text("#!/bin/sh\necho 'E: cannot reach the mirror' >&2\nexit 1\n")
    (bin_dir / "mmdebstrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(ImageBuildError, match="mmdebstrap bookworm redis-server failed: E: cannot reach the mirror"):
        debimages.mmdebstrap(str(tmp_path / "root"), ("redis-server",))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ImageBuildError, match="apt-get install mmdebstrap"):
        debimages.mmdebstrap(str(tmp_path / "root"))
    assert not (tmp_path / "cache").exists()


def test_a_failed_base_fails_the_build_and_leaves_no_layout(tmp_path, monkeypatch):
    def broken(dest, packages=()):
        raise ImageBuildError("mmdebstrap bookworm failed: E: no mirror")

    monkeypatch.setattr(debimages, "mmdebstrap", broken)
    with pytest.raises(ImageBuildError, match="no mirror"):
        build_debian_images(str(tmp_path / "cache"))
    assert sorted(os.listdir(tmp_path / "cache")) == [".lock"]
