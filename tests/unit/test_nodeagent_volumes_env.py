"""Env resolution from ConfigMaps and Secrets (nodeagent/envvars.py), as the kubelet's makeEnvironmentVariables."""
from __future__ import annotations

import pytest

from machinery import codec
from machinery.pb import storage_pb2
from nodeagent.envvars import Sources, build_env, is_env_var_name
from nodeagent.errors import ContainerConfigError

CM = storage_pb2.ConfigMap(data={"level": "debug", "URL": "http://x", "bad key": "1", "1num": "2"})
SECRET = storage_pb2.Secret(data={"password": b"s3cret", "user": b"admin"})


def env_of(env=(), env_from=(), sources=None, image_env=("PATH=/bin",)):
    pod = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
                           "spec": {"containers": [{"name": "c", "image": "x", "env": list(env),
                                                    "envFrom": list(env_from)}]}})
    src = sources if sources is not None else Sources(config_maps={"cfg": CM}, secrets={"db": SECRET})
    return dict(kv.split("=", 1) for kv in build_env(pod, pod.spec.containers[0], image_env, "", "", src)), src


def cmref(name="cfg", key="level", optional=None):
    ref = {"name": name, "key": key}
    if optional is not None:
        ref["optional"] = optional
    return {"configMapKeyRef": ref}


def secref(name="db", key="password", optional=None):
    ref = {"name": name, "key": key}
    if optional is not None:
        ref["optional"] = optional
    return {"secretKeyRef": ref}


@pytest.mark.parametrize("value_from, want", [
    (cmref(), {"V": "debug"}),
    (secref(), {"V": "s3cret"}),
    (cmref("gone", optional=True), {}),
    (cmref(key="gone", optional=True), {}),
    (secref("gone", optional=True), {}),
    (secref(key="gone", optional=True), {}),
])
def test_value_from(value_from, want):
    env, _ = env_of([{"name": "V", "valueFrom": value_from}])
    assert {k: v for k, v in env.items() if k != "PATH"} == want


@pytest.mark.parametrize("value_from, message", [
    (cmref("gone"), 'configmap "gone" not found'),
    (cmref(key="gone"), "couldn't find key gone in ConfigMap ns/cfg"),
    (secref("gone"), 'secret "gone" not found'),
    (secref(key="gone"), "couldn't find key gone in Secret ns/db"),
    (cmref("gone", optional=False), 'configmap "gone" not found'),
])
def test_value_from_errors(value_from, message):
    with pytest.raises(ContainerConfigError) as exc:
        env_of([{"name": "V", "valueFrom": value_from}])
    assert str(exc.value) == message


def test_env_from_with_prefix_skips_invalid_keys_with_an_event():
    env, src = env_of(env_from=[{"configMapRef": {"name": "cfg"}, "prefix": "APP_"},
                                {"secretRef": {"name": "db"}}])
    assert env == {"PATH": "/bin", "APP_level": "debug", "APP_URL": "http://x", "APP_1num": "2",
                   "password": "s3cret", "user": "admin"}
    assert src.events == [("Warning", "InvalidEnvironmentVariableNames",
                           "Keys [APP_bad key] from the EnvFrom configMap ns/cfg were skipped since they are "
                           "considered invalid environment variable names.")]
    env, src = env_of(env_from=[{"configMapRef": {"name": "cfg"}}])
    assert "level" in env and src.events[0][2].startswith("Keys [1num, bad key] from the EnvFrom configMap ns/cfg")


def test_env_overrides_env_from_and_expands_it():
    env, _ = env_of(env=[{"name": "level", "value": "info"}, {"name": "X", "value": "$(URL)/api $$(URL)"}],
                    env_from=[{"configMapRef": {"name": "cfg"}}])
    assert env["level"] == "info" and env["X"] == "http://x/api $(URL)"


def test_env_from_missing_sources():
    with pytest.raises(ContainerConfigError, match='secret "nope" not found'):
        env_of(env_from=[{"secretRef": {"name": "nope"}}])
    env, _ = env_of(env_from=[{"configMapRef": {"name": "nope", "optional": True}}])
    assert env == {"PATH": "/bin"}


@pytest.mark.parametrize("name, ok", [("A_B", True), ("a.b-c", True), ("_x", True), ("1a", False),
                                      ("a b", False), ("..a", False), (".", False), ("", False)])
def test_env_var_names(name, ok):
    assert is_env_var_name(name) is ok
