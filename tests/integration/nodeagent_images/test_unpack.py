"""Layer unpacking: whiteouts as overlayfs expects them, and hostile tar members refused."""
from __future__ import annotations

import os

import pytest

from nodeagent.errors import ImagePullError
from nodeagent.images import ImageStore, lowerdirs

from .conftest import is_whiteout, make_layout

BASE = [
    ("a", "dir", None), ("a/x", "file", "x\n"), ("a/y", "file", "y\n"),
    ("b", "file", "b\n"),
    ("c", "dir", None), ("c/old", "file", "old\n"), ("c/sub", "dir", None), ("c/sub/deep", "file", "deep\n"),
    ("d", "dir", None), ("d/keep", "file", "keep\n"),
    ("f", "file", "f\n"), ("hl", "hardlink", "f"),
]
TOP = [
    ("a/.wh.x", "file", ""),  # delete a/x
    (".wh.b", "file", ""),  # delete b
    ("./.wh.d", "file", ""),  # delete the whole directory d
    ("c", "dir", None), ("c/.wh..wh..opq", "file", ""), ("c/new", "file", "new\n"),  # replace c's contents
    ("e/.wh..wh..opq", "file", ""),  # opaque dir with no explicit dir entry
]


@pytest.mark.root  # mknod 0:0, trusted.* xattrs, mount
async def test_whiteouts_and_opaque_dirs(tmp_path, store_root, overlay):
    store = ImageStore(store_root)
    image = await store.pull(make_layout(str(tmp_path / "wh"), [BASE, TOP]))
    base, top = image.layers
    assert is_whiteout(os.path.join(top, "a/x"))
    assert is_whiteout(os.path.join(top, "b"))
    assert is_whiteout(os.path.join(top, "d"))
    assert os.getxattr(os.path.join(top, "c"), "trusted.overlay.opaque") == b"y"
    assert os.getxattr(os.path.join(top, "e"), "trusted.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(os.path.join(top, "a"), "trusted.overlay.opaque")
    assert not [n for _d, ds, fs in os.walk(top) for n in ds + fs if n.startswith(".wh.")]
    assert os.stat(os.path.join(base, "hl")).st_ino == os.stat(os.path.join(base, "f")).st_ino

    # and the kernel agrees: the merged view is what the layers mean
    merged = overlay(lowerdirs(image))
    listing = {os.path.relpath(os.path.join(d, n), merged)
               for d, ds, fs in os.walk(merged) for n in ds + fs}
    assert listing == {"a", "a/y", "c", "c/new", "e", "f", "hl"}
    assert open(os.path.join(merged, "c/new")).read() == "new\n"


@pytest.mark.parametrize("members, why", [
    ([("../evil", "file", "x")], "'..'"),
    ([("ok/../../evil", "file", "x")], "'..'"),
    ([("/abs-evil", "file", "x")], "absolute"),
    ([("lnk", "symlink", "{outside}"), ("lnk/evil", "file", "x")], "symlink"),
    ([("hl", "hardlink", "/etc/hostname")], "absolute"),
    ([("hl", "hardlink", "../outside/f")], "'..'"),
    ([("lnk", "symlink", "{outside}"), ("hl", "hardlink", "lnk/f")], "symlink"),
])
async def test_path_traversal_is_refused(tmp_path, store_root, members, why):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("host file\n")
    members = [(n, k, a.format(outside=outside) if isinstance(a, str) else a) for n, k, a in members]
    store = ImageStore(store_root)
    ref = make_layout(str(tmp_path / "evil"), [[("ok", "dir", None), ("ok/f", "file", "f")] + members])
    with pytest.raises(ImagePullError) as err:
        await store.pull(ref)
    assert err.value.reason == "ErrImagePull"
    assert "refusing layer member" in err.value.message and why in err.value.message
    assert sorted(os.listdir(outside)) == ["f"] and (outside / "f").read_text() == "host file\n"
    assert not (tmp_path / "evil-file").exists() and not os.path.exists("/abs-evil")
    assert os.listdir(os.path.join(store_root, "layers", "sha256")) == []  # nothing half-unpacked kept
    assert os.listdir(os.path.join(store_root, "tmp")) == []
    assert store.get(ref) is None


async def test_replacing_a_symlink_does_not_write_through_it(tmp_path, store_root):
    """A later member with the same name replaces a symlink instead of following it."""
    target = tmp_path / "victim"
    target.write_text("untouched\n")
    store = ImageStore(store_root)
    image = await store.pull(make_layout(str(tmp_path / "l"), [[
        ("p", "symlink", str(target)), ("p", "file", "layer content\n"),
        ("q", "symlink", str(tmp_path)), ("q", "dir", None),
    ]]))
    (layer,) = image.layers
    assert target.read_text() == "untouched\n"
    assert open(os.path.join(layer, "p")).read() == "layer content\n"
    assert os.path.isdir(os.path.join(layer, "q")) and not os.path.islink(os.path.join(layer, "q"))


async def test_stale_temp_dirs_of_dead_processes_are_removed(store_root):
    ImageStore(store_root)
    dead = os.path.join(store_root, "tmp", "unpack-999999999-abc")
    mine = os.path.join(store_root, "tmp", f"unpack-{os.getpid()}-abc")
    os.makedirs(dead)
    os.makedirs(mine)
    ImageStore(store_root)
    assert not os.path.exists(dead) and os.path.exists(mine)


async def test_layer_not_matching_its_diff_id_is_refused(tmp_path, store_root):
    from deploy.images import write_layout

    from .conftest import tar_layer
    blob, _diff_id = tar_layer([("f", "file", "real\n")])
    wrong = "sha256:" + "0" * 64
    write_layout(str(tmp_path / "l"), [(blob, wrong)], {"Cmd": ["sh"]}, ["t"], ["one"])
    store = ImageStore(store_root)
    with pytest.raises(ImagePullError, match="does not match diff_id") as err:
        await store.pull(f"oci:{tmp_path / 'l'}:t")
    assert err.value.reason == "ErrImagePull"
    assert os.listdir(os.path.join(store_root, "layers", "sha256")) == []
    assert os.listdir(os.path.join(store_root, "tmp")) == []
