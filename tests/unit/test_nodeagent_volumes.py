"""The node agent's volume payloads and the atomic writer (no root, no runc)."""
from __future__ import annotations

import os
import threading

import pytest

from machinery import codec
from machinery.pb import core_pb2, storage_pb2
from nodeagent import atomicwriter, volumes
from nodeagent.atomicwriter import FileProjection
from nodeagent.configwatch import references
from nodeagent.envvars import Sources
from nodeagent.errors import ContainerConfigError, VolumeSetupError
from nodeagent.pullsecrets import auths_of, pull_auth


def pod(volumes_=(), containers=None, **spec) -> core_pb2.Pod:
    return codec.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "labels": {"app": "w", "tier": "front"}},
        "spec": {"containers": containers or [{"name": "c", "image": "x",
                                               "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}],
                 "volumes": list(volumes_), **spec}})


def cm(name="cfg", data=None, binary=None) -> storage_pb2.ConfigMap:
    m = storage_pb2.ConfigMap(data=data or {}, binary_data=binary or {})
    m.metadata.name, m.metadata.namespace = name, "prod"
    return m


def secret(name="db", data=None, type_="Opaque") -> storage_pb2.Secret:
    s = storage_pb2.Secret(data=data or {}, type=type_)
    s.metadata.name, s.metadata.namespace = name, "prod"
    return s


# ------------------------------------------------------------ atomic writer

def _tree(d) -> dict:
    out = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        out[name] = os.readlink(p) if os.path.islink(p) else "dir" if os.path.isdir(p) else "file"
    return out


def test_atomic_writer_layout_and_modes(tmp_path):
    d = str(tmp_path / "v")
    assert atomicwriter.write(d, {"a": FileProjection(b"1"), "sub/b": FileProjection(b"2", 0o400)})
    tree = _tree(d)
    ts = [n for n in tree if n.startswith("..20")]
    assert len(ts) == 1 and tree["..data"] == ts[0]
    assert tree["a"] == "..data/a" and tree["sub"] == "..data/sub"
    assert open(os.path.join(d, "sub", "b")).read() == "2"
    assert os.stat(os.path.join(d, "sub", "b")).st_mode & 0o777 == 0o400
    assert os.stat(os.path.join(d, "a")).st_mode & 0o777 == 0o644


def test_atomic_writer_update_removes_old_keys_and_old_dir(tmp_path):
    d = str(tmp_path / "v")
    atomicwriter.write(d, {"a": FileProjection(b"1"), "b": FileProjection(b"2")})
    first = os.readlink(os.path.join(d, "..data"))
    assert not atomicwriter.write(d, {"a": FileProjection(b"1"), "b": FileProjection(b"2")})   # unchanged
    assert os.readlink(os.path.join(d, "..data")) == first
    assert atomicwriter.write(d, {"a": FileProjection(b"new"), "c": FileProjection(b"3")})
    tree = _tree(d)
    assert "b" not in tree and tree["c"] == "..data/c" and first not in tree
    assert open(os.path.join(d, "a")).read() == "new"
    assert atomicwriter.write(d, {"a": FileProjection(b"new", 0o600), "c": FileProjection(b"3")})   # mode only


@pytest.mark.parametrize("path, why", [("/abs", "must be relative"), ("a/../b", "must not contain '..'"),
                                       ("..x", "must not start with '..'"), ("", "must not be empty")])
def test_atomic_writer_refuses_bad_paths(tmp_path, path, why):
    with pytest.raises(ValueError, match=why):
        atomicwriter.write(str(tmp_path), {path: FileProjection(b"")})
    assert not os.path.exists(tmp_path / "..data")


def _read_at(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    try:
        return os.read(fd, 1000)
    finally:
        os.close(fd)


def test_atomic_writer_readers_never_see_a_mix(tmp_path):
    """Two keys always written together: a reader going through one ..data sees one version of both."""
    d = str(tmp_path / "v")
    atomicwriter.write(d, {"a": FileProjection(b"0"), "b": FileProjection(b"0")})
    stop, seen, bad = threading.Event(), set(), []

    def reader():
        while not stop.is_set():
            try:
                fd = os.open(os.path.join(d, "..data"), os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
            try:
                a, b = _read_at(fd, "a"), _read_at(fd, "b")
            except FileNotFoundError:          # the old version was removed after we opened it
                continue
            finally:
                os.close(fd)
            seen.add(a)
            if a != b or not a:
                bad.append((a, b))
            try:                        # the user-visible symlink: whole contents (or, in the instant the
                with open(os.path.join(d, "a"), "rb") as f:     # old dir is removed, ENOENT, as in Kubernetes)
                    if not f.read():
                        bad.append("empty")
            except FileNotFoundError:
                pass
    t = threading.Thread(target=reader)
    t.start()
    for i in range(1, 300):
        v = str(i).encode() * 50
        atomicwriter.write(d, {"a": FileProjection(v), "b": FileProjection(v)})
    stop.set()
    t.join()
    assert not bad and len(seen) > 1


# ------------------------------------------------------------ payloads

def test_config_map_volume_all_keys_binary_and_default_mode():
    p = pod([{"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o440}}])
    files, tmpfs = volumes.payload(p, p.spec.volumes[0], Sources(config_maps={"cfg": cm(
        data={"a.conf": "x=1"}, binary={"blob": b"\x00\x01"})}), "", "")
    assert files == {"a.conf": FileProjection(b"x=1", 0o440), "blob": FileProjection(b"\x00\x01", 0o440)}
    assert not tmpfs


def test_items_map_keys_to_paths_with_modes():
    p = pod([{"name": "v", "secret": {"secretName": "db", "items": [
        {"key": "pw", "path": "creds/password", "mode": 0o400}, {"key": "user", "path": "user"}]}}])
    files, tmpfs = volumes.payload(p, p.spec.volumes[0], Sources(secrets={"db": secret(
        data={"pw": b"s3", "user": b"root", "other": b"-"})}), "", "")
    assert files == {"creds/password": FileProjection(b"s3", 0o400), "user": FileProjection(b"root", 0o644)}
    assert tmpfs


@pytest.mark.parametrize("volume, sources, message", [
    ({"configMap": {"name": "cfg"}}, Sources(), 'configmap "cfg" not found'),
    ({"secret": {"secretName": "db"}}, Sources(), 'secret "db" not found'),
    ({"configMap": {"name": "cfg", "items": [{"key": "k", "path": "k"}]}}, Sources(config_maps={"cfg": cm()}),
     "configmap references non-existent config key: k"),
])
def test_missing_objects_and_keys(volume, sources, message):
    p = pod([{"name": "v", **volume}])
    with pytest.raises(VolumeSetupError, match=message):
        volumes.payload(p, p.spec.volumes[0], sources, "", "")


def test_optional_sources_give_no_files():
    p = pod([{"name": "v", "configMap": {"name": "cfg", "optional": True}},
             {"name": "w", "secret": {"secretName": "db", "optional": True,
                                      "items": [{"key": "k", "path": "k"}]}}])
    assert volumes.payload(p, p.spec.volumes[0], Sources(), "", "")[0] == {}
    assert volumes.payload(p, p.spec.volumes[1], Sources(secrets={"db": secret()}), "", "")[0] == {}


def test_downward_api_volume():
    p = pod([{"name": "v", "downwardAPI": {"defaultMode": 0o600, "items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}, "mode": 0o444},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                             "divisor": "1Mi"}}]}}])
    files, _ = volumes.payload(p, p.spec.volumes[0], Sources(), "", "10.0.0.1")
    assert files == {"name": FileProjection(b"web", 0o600),
                     "labels": FileProjection(b'app="w"\ntier="front"', 0o444),
                     "mem": FileProjection(b"64", 0o600)}


def test_projected_volume_merges_sources_with_its_default_mode():
    p = pod([{"name": "v", "projected": {"defaultMode": 0o400, "sources": [
        {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "conf/a"}]}},
        {"secret": {"name": "db", "items": [{"key": "pw", "path": "pw", "mode": 0o440}]}},
        {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}])
    files, tmpfs = volumes.payload(p, p.spec.volumes[0], Sources(
        config_maps={"cfg": cm(data={"a": "1"})}, secrets={"db": secret(data={"pw": b"2"})}), "", "")
    assert files == {"conf/a": FileProjection(b"1", 0o400), "pw": FileProjection(b"2", 0o440),
                     "ns": FileProjection(b"prod", 0o400)}
    assert tmpfs                      # it holds a secret


def test_memory_emptydir_size():
    p = pod([{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
             {"name": "n", "emptyDir": {"medium": "Memory"}}])
    assert volumes.memory_size(p, p.spec.volumes[0]) == 16 << 20
    assert volumes.memory_size(p, p.spec.volumes[1]) == 64 << 20        # the containers' memory limits


def test_setup_writes_configmap_files_and_follows_updates(tmp_path):
    p = pod([{"name": "v", "configMap": {"name": "cfg"}}])
    assert volumes.setup_volumes(p, str(tmp_path), Sources(config_maps={"cfg": cm(data={"k": "1"})}), "", "") == ["v"]
    f = tmp_path / "volumes" / "v" / "k"
    assert f.read_text() == "1"
    assert volumes.setup_volumes(p, str(tmp_path), Sources(config_maps={"cfg": cm(data={"k": "1"})}), "", "") == []
    volumes.setup_volumes(p, str(tmp_path), Sources(config_maps={"cfg": cm(data={"k": "2"})}), "", "")
    assert f.read_text() == "2"
    with pytest.raises(VolumeSetupError) as exc:
        volumes.setup_volumes(p, str(tmp_path), Sources(), "", "")
    assert exc.value.volume == "v" and str(exc.value) == 'configmap "cfg" not found'
    assert f.read_text() == "2"                     # the last content stays, as the kubelet leaves it


def test_sub_path_and_sub_path_expr(tmp_path):
    p = pod([{"name": "v", "configMap": {"name": "cfg"}}, {"name": "e", "emptyDir": {}}])
    volumes.setup_volumes(p, str(tmp_path), Sources(config_maps={"cfg": cm(data={"k": "1"})}), "", "")
    vm = core_pb2.VolumeMount(name="v", mount_path="/etc/k", sub_path="k")
    src = volumes.mount_source(p, p.spec.volumes[0], vm, str(tmp_path), None, {})
    assert src.endswith("/k") and "..20" in src and open(src).read() == "1"     # the file itself, not the link
    vm = core_pb2.VolumeMount(name="e", mount_path="/data", sub_path_expr="$(POD)/logs")
    src = volumes.mount_source(p, p.spec.volumes[1], vm, str(tmp_path), None, {"POD": "web"})
    assert src == str(tmp_path / "volumes" / "e" / "web" / "logs") and os.path.isdir(src)
    os.symlink("/etc", tmp_path / "volumes" / "e" / "out")
    with pytest.raises(ContainerConfigError, match="outside the volume"):
        volumes.mount_source(p, p.spec.volumes[1], core_pb2.VolumeMount(name="e", mount_path="/x", sub_path="out"),
                             str(tmp_path), None, {})


def test_references_name_every_object():
    p = pod([{"name": "v", "configMap": {"name": "vol-cm"}}, {"name": "s", "secret": {"secretName": "vol-s"}},
             {"name": "p", "projected": {"sources": [{"configMap": {"name": "p-cm"}}, {"secret": {"name": "p-s"}}]}}],
            containers=[{"name": "c", "image": "x",
                         "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                                 {"name": "B", "valueFrom": {"secretKeyRef": {"name": "env-s", "key": "k"}}}],
                         "envFrom": [{"configMapRef": {"name": "from-cm"}}, {"secretRef": {"name": "from-s"}}]}],
            imagePullSecrets=[{"name": "regcred"}])
    assert references(p) == {("ConfigMap", n) for n in ("vol-cm", "p-cm", "env-cm", "from-cm")} | \
        {("Secret", n) for n in ("vol-s", "p-s", "env-s", "from-s", "regcred")}


def test_pull_secrets_become_one_auth_document():
    cfg = b'{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}, "reg:5000": {"username": "a", "password": "b"}}}'
    assert auths_of(secret(data={".dockerconfigjson": cfg}, type_="kubernetes.io/dockerconfigjson")) == {
        "docker.io": {"auth": "dTpw"}, "reg:5000": {"auth": "YTpi"}}
    assert auths_of(secret(data={".dockercfg": b'{"old:1": {"auth": "eDp5"}}'})) == {"old:1": {"auth": "eDp5"}}
    p = pod(imagePullSecrets=[{"name": "regcred"}, {"name": "gone"}])
    events = []
    doc = pull_auth(p, Sources(secrets={"regcred": secret(data={".dockerconfigjson": cfg})}),
                    lambda *e: events.append(e))
    assert doc == {"auths": {"docker.io": {"auth": "dTpw"}, "reg:5000": {"auth": "YTpi"}}}
    assert events == [("Warning", "FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull secrets "
                       "(gone); attempting to pull the image may not succeed.")]
    assert pull_auth(pod(), Sources(), lambda *e: None) is None


def test_api_data_volumes_and_read_only_claims_mount_read_only():
    p = pod([{"name": "c", "configMap": {"name": "x"}}, {"name": "s", "secret": {"secretName": "x"}},
             {"name": "d", "downwardAPI": {"items": []}}, {"name": "p", "projected": {"sources": []}},
             {"name": "ro", "persistentVolumeClaim": {"claimName": "x", "readOnly": True}},
             {"name": "rw", "persistentVolumeClaim": {"claimName": "x"}}, {"name": "e", "emptyDir": {}}])
    assert [v.name for v in p.spec.volumes if volumes.read_only(v)] == ["c", "s", "d", "p", "ro"]


async def test_config_watch_wakes_the_pods_of_a_changed_object_and_stops_unused_watches():
    import asyncio

    from machinery.fakeclient import FakeClient
    from nodeagent.configwatch import ConfigWatch
    client = FakeClient()
    client.seed(cm(data={"k": "1"}))
    watch = ConfigWatch(client)
    woken = []
    p = pod([{"name": "v", "configMap": {"name": "cfg"}}, {"name": "s", "secret": {"secretName": "db"}}])
    src = await watch.gather(p, lambda: woken.append("a"))
    assert src.config_maps["cfg"].data["k"] == "1" and src.secrets == {"db": None} and len(watch) == 2
    watch.set_refs("other", "prod", {("ConfigMap", "cfg")}, lambda: woken.append("b"))
    assert len(watch) == 2                                   # one watch per object, shared
    woken.clear()
    client.seed(cm(data={"k": "2"}))
    for _ in range(100):
        if sorted(woken) == ["a", "b"]:
            break
        await asyncio.sleep(0.01)
    assert sorted(woken) == ["a", "b"]
    assert (await watch.get("ConfigMap", "prod", "cfg")).data["k"] == "2"
    watch.forget(p.metadata.uid)
    assert len(watch) == 1                                   # the secret's watch stopped; cfg still used
    watch.forget("other")
    assert len(watch) == 0


def test_disk_empty_dir_over_its_size_limit_is_an_eviction(tmp_path):
    p = pod([{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}, {"name": "free", "emptyDir": {}}])
    volumes.setup_volumes(p, str(tmp_path), Sources(), "", "")
    (tmp_path / "volumes" / "free" / "big").write_bytes(os.urandom(3 << 20))      # no limit there
    (tmp_path / "volumes" / "scratch" / "small").write_bytes(os.urandom(512 << 10))
    assert volumes.exceeded_limit(p, str(tmp_path)) == ""
    (tmp_path / "volumes" / "scratch" / "more").write_bytes(os.urandom(1 << 20))
    assert volumes.exceeded_limit(p, str(tmp_path)) == 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". '
