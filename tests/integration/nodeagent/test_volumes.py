"""ConfigMaps, Secrets, claims and memory emptyDirs on a real agent with runc (issue 11)."""
from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from harness.control_plane import ControllerManager, Scheduler
from machinery import codec, errors, kinds
from machinery.pb import core_pb2, storage_pb2
from tests.integration.nodeagent.conftest import (cid_of, cstatus, make_pod, needs_root, node_ready, pod_gone,
                                                  pod_running, pod_where, wait_for)

pytestmark = [pytest.mark.root, needs_root]

SLEEP = {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}


def config_map(name: str, data: dict) -> storage_pb2.ConfigMap:
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = name, "default"
    cm.data.update(data)
    return cm


def secret(name: str, data: dict, type_: str = "Opaque") -> storage_pb2.Secret:
    s = kinds.new("Secret")
    s.metadata.name, s.metadata.namespace, s.type = name, "default", type_
    s.data.update(data)
    return s


def sh_in(node, pod, *cmd: str) -> str:
    res = node.runc_exec(cid_of(pod, "main"), "sh", "-c", " ".join(cmd))
    assert res.returncode == 0, res.stderr
    return res.stdout


async def test_config_map_env_files_updates_and_secret_on_tmpfs(api, make_node):
    node = make_node("vol")
    await node_ready(api, node)
    await api.create(config_map("app", {"greeting": "hello", "app.conf": "v=1", "1st": "x"}))
    await api.create(secret("creds", {"password": b"s3cret"}))
    await api.create(make_pod("vol-cfg", node, {
        **SLEEP,
        "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}}],
        "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "CFG_"}, {"configMapRef": {"name": "app"}}],
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"},
                         {"name": "conf", "mountPath": "/etc/pinned.conf", "subPath": "app.conf"},
                         {"name": "pw", "mountPath": "/etc/creds"},
                         {"name": "info", "mountPath": "/etc/podinfo"},
                         {"name": "cache", "mountPath": "/cache"}]},
        volumes=[{"name": "conf", "configMap": {"name": "app"}},
                 {"name": "pw", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                 {"name": "info", "downwardAPI": {"items": [{"path": "name",
                                                             "fieldRef": {"fieldPath": "metadata.name"}}]}},
                 {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]))
    pod = await pod_running(api, "vol-cfg", node)
    env = sh_in(node, pod, "tr '\\0' '\\n' < /proc/1/environ")      # names with dots: not in a shell's env
    assert "GREETING=hello" in env and "PW=s3cret" in env and "CFG_app.conf=v=1" in env and "CFG_1st=x" in env and "OPT=" not in env
    assert sh_in(node, pod, "cat /etc/app/app.conf /etc/pinned.conf") == "v=1v=1"
    listing = sh_in(node, pod, "ls -la /etc/app")
    assert "..data -> ..20" in listing and "app.conf -> ..data/app.conf" in listing
    assert sh_in(node, pod, "cat /etc/creds/password; stat -L -c %a /etc/creds/password") == "s3cret400\n"
    assert sh_in(node, pod, "cat /etc/podinfo/name") == "vol-cfg"
    assert node.runc_exec(cid_of(pod, "main"), "sh", "-c", "echo x > /etc/app/new").returncode != 0   # read-only
    mounts = sh_in(node, pod, "cat /proc/mounts")
    assert any(m.split()[1] == "/etc/creds" and m.split()[2] == "tmpfs" for m in mounts.splitlines())
    cache = next(m.split() for m in mounts.splitlines() if m.split()[1] == "/cache")
    assert cache[2] == "tmpfs" and "size=16384k" in cache[3]

    cm = await api.get("ConfigMap", "app", "default")
    cm.data["app.conf"] = "v=2"
    await api.update(cm)
    await wait_for(lambda: sh_in(node, pod, "cat /etc/app/app.conf") == "v=2", 20, "the mounted file follows", node)
    assert sh_in(node, pod, "cat /etc/pinned.conf") == "v=1"        # a subPath mount does not follow
    events = (await api.list("Event", "default"))[0]
    assert any(e.reason == "InvalidEnvironmentVariableNames" and e.involved_object.name == "vol-cfg" and
               "Keys [1st] from the EnvFrom configMap default/app were skipped" in e.message for e in events)
    await api.delete(core_pb2.Pod, "vol-cfg", "default")
    await pod_gone(api, "vol-cfg", node)


async def test_a_disk_empty_dir_over_its_size_limit_gets_the_pod_evicted(api, make_node):
    node = make_node("evict")
    await node_ready(api, node)
    await api.create(make_pod("filler", node, {
        "name": "main", "image": "busybox", "command": ["sh", "-c", "dd if=/dev/zero of=/scratch/big bs=1M count=3; "
                                                                    "exec sleep 3600"],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
        volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}]))
    pod = await pod_where(api, "filler", lambda p: p.status.phase == "Failed", "evicted", node, timeout=60)
    assert pod.status.reason == "Evicted"
    assert pod.status.message == 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". '
    assert cstatus(pod, "main").state.HasField("terminated")
    await api.delete(core_pb2.Pod, "filler", "default")
    await pod_gone(api, "filler", node)


async def test_missing_secret_is_create_container_config_error_until_it_exists(api, make_node):
    node = make_node("late")
    await node_ready(api, node)
    await api.create(make_pod("late", node, {
        **SLEEP, "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}]}))
    pod = await pod_where(api, "late", lambda p: p.status.container_statuses and
                          cstatus(p, "main").state.waiting.reason == "CreateContainerConfigError", "config error", node)
    assert cstatus(pod, "main").state.waiting.message == 'secret "late" not found'
    await api.create(secret("late", {"token": b"t0k"}))
    pod = await pod_running(api, "late", node, timeout=30)
    assert "TOKEN=t0k" in sh_in(node, pod, "env")
    await api.delete(core_pb2.Pod, "late", "default")
    await pod_gone(api, "late", node)


@pytest.fixture
def control(env, tmp_path):
    """A scheduler, the volume controllers and node lifecycle against the test cluster's apiserver."""
    procs = [Scheduler(tmp_path, env.target),
             ControllerManager(tmp_path, env.target,
                               extra_args=["--controllers",
                                           "persistentvolume-binder,pvc-protection,pv-protection,nodelifecycle"])]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


def claim(name: str) -> storage_pb2.PersistentVolumeClaim:
    return codec.from_dict({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": name, "namespace": "default"},
                            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})


def scheduled_pod(name: str, node, claim_name: str, command: str):
    p = make_pod(name, node, {"name": "main", "image": "busybox", "command": ["sh", "-c", command],
                              "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                 volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
                 nodeSelector={"kubernetes.io/hostname": node.name})
    p.spec.node_name = ""                                   # the scheduler picks (and binds the volume)
    return p


async def test_local_path_claim_keeps_data_across_pods_and_delete_reclaims_it(api, make_node, control):
    node = make_node("pvc")
    await node_ready(api, node)
    n = await api.get(core_pb2.Node, node.name)
    storage = os.path.join(str(node.root.resolve()), "storage")
    assert n.metadata.annotations["storage.kctl.io/local-path-dir"] == storage
    await api.create(claim("data"))
    await api.create(scheduled_pod("writer", node, "data", "echo kept > /data/file; exec sleep 3600"))
    pod = await pod_running(api, "writer", node, timeout=60)
    assert pod.spec.node_name == node.name
    pvc = await api.get("PersistentVolumeClaim", "data", "default")
    assert pvc.status.phase == "Bound" and pvc.metadata.annotations["volume.kubernetes.io/selected-node"] == node.name
    pv = await api.get("PersistentVolume", pvc.spec.volume_name)
    path = pv.spec.host_path.path
    assert os.path.dirname(path) == storage and open(os.path.join(path, "file")).read() == "kept\n"
    await api.delete(core_pb2.Pod, "writer", "default")
    await pod_gone(api, "writer", node)
    assert os.path.isfile(os.path.join(path, "file"))           # the data outlives the pod
    await api.create(scheduled_pod("reader", node, "data", "cat /data/file; exec sleep 3600"))
    pod = await pod_running(api, "reader", node, timeout=60)
    assert sh_in(node, pod, "cat /data/file") == "kept\n"
    await api.delete(core_pb2.Pod, "reader", "default")
    await pod_gone(api, "reader", node)
    await api.delete("PersistentVolumeClaim", "data", "default")

    async def volume_gone():
        try:
            await api.get("PersistentVolume", pv.metadata.name)
            return False
        except errors.NotFound:
            return True
    await wait_for(volume_gone, 30, "reclaimPolicy Delete deletes the volume", node)
    await wait_for(lambda: not os.path.exists(path), 15, "the agent removes the volume's directory", node)


async def test_a_pod_whose_data_is_on_a_dead_node_stays_pending_then_returns_there(api, make_node, control):
    home, other = make_node("pvhome"), make_node("pvother")
    await node_ready(api, home)
    await node_ready(api, other)
    await api.create(claim("pinned"))
    await api.create(scheduled_pod("first", home, "pinned", "echo mine > /data/file; exec sleep 3600"))
    await pod_running(api, "first", home, timeout=60)
    await api.delete(core_pb2.Pod, "first", "default")
    await pod_gone(api, "first", home)
    home.stop()                                     # the node dies: its lease expires, it becomes NotReady

    async def not_ready():
        n = await api.get(core_pb2.Node, home.name)
        return any(c.type == "Ready" and c.status != "True" for c in n.status.conditions)
    await wait_for(not_ready, 60, "the dead node NotReady")
    p = scheduled_pod("second", home, "pinned", "cat /data/file; exec sleep 3600")
    p.spec.node_selector.clear()                    # free to go anywhere: only the volume pins it
    await api.create(p)

    async def failed_scheduling():
        events = (await api.list("Event", "default"))[0]
        return next((e.message for e in events if e.involved_object.name == "second"
                     and e.reason == "FailedScheduling" and "untolerated taint {node.kubernetes.io/unreachable: }"
                     in e.message and "had volume node affinity conflict" in e.message), None)
    message = await wait_for(failed_scheduling, 60, "FailedScheduling naming the dead node and the volume")
    assert (await api.get(core_pb2.Pod, "second", "default")).spec.node_name == ""
    assert message.startswith("0/") and "node(s) had volume node affinity conflict" in message
    home.start()                                    # back: the pod goes to its data
    pod = await pod_running(api, "second", home, timeout=90)
    assert pod.spec.node_name == home.name and sh_in(home, pod, "cat /data/file") == "mine\n"
    await api.delete(core_pb2.Pod, "second", "default")
    await pod_gone(api, "second", home)
    await api.delete("PersistentVolumeClaim", "pinned", "default")


@pytest.fixture
def private_registry(env):
    from deploy.registry import LocalRegistry
    reg = LocalRegistry(host=env.segment.ip, auth=("puller", "pa55")).start()
    try:
        subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                        "--dest-tls-verify=false", "--dest-creds=puller:pa55",
                        f"docker://{env.registry.address}/library/busybox:latest",
                        f"docker://{reg.address}/private/busybox:latest"], check=True, capture_output=True, timeout=120)
        yield reg
    finally:
        reg.stop()


async def test_image_pull_secrets_against_a_registry_with_a_password(api, make_node, private_registry):
    node = make_node("auth", extra=["--insecure-registry", private_registry.address])
    await node_ready(api, node)
    image = f"{private_registry.address}/private/busybox:latest"
    await api.create(make_pod("nocreds", node, {**SLEEP, "image": image}))
    pod = await pod_where(api, "nocreds", lambda p: p.status.container_statuses and cstatus(p, "main").state.waiting
                          .reason in ("ErrImagePull", "ImagePullBackOff"), "pull refused", node)
    assert "unauthorized" in cstatus(pod, "main").state.waiting.message.lower() or \
        "authentication required" in cstatus(pod, "main").state.waiting.message.lower()
    auth = base64.b64encode(b"puller:pa55").decode()
    await api.create(secret("regcred", {".dockerconfigjson": json.dumps(
        {"auths": {private_registry.address: {"auth": auth}}}).encode()}, "kubernetes.io/dockerconfigjson"))
    await api.create(make_pod("withcreds", node, {**SLEEP, "image": image}, imagePullSecrets=[{"name": "regcred"}]))
    await pod_running(api, "withcreds", node, timeout=60)
    tmp = node.root / "images" / "tmp"
    assert not any(p.name == "auth.json" for p in tmp.rglob("*"))      # the auth file went with the pull
    for name in ("nocreds", "withcreds"):
        await api.delete(core_pb2.Pod, name, "default")
        await pod_gone(api, name, node)
