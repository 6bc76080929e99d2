"""kubeconfig loading and the flag > env > file precedence; global option hoisting."""
from __future__ import annotations

import pytest
import yaml

from kubectlish import config
from machinery import errors
from kubectlish.main import hoist_global_options, parse_duration

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "grpc://10.0.0.1:6443"}
- name: other
  cluster: {server: "10.0.0.2:7000"}
contexts:
- name: lab
  context: {cluster: lab, user: admin, namespace: team-a}
- name: other
  context: {cluster: other}
current-context: lab
users:
- name: admin
  user: {}
"""


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "config"
    p.write_text(KUBECONFIG)
    return str(p)


def test_current_context_gives_server_and_namespace(cfg):
    s = config.resolve(server=None, kubeconfig=cfg, namespace=None, env={})
    assert (s.server, s.namespace, s.context, s.namespace_explicit) == ("10.0.0.1:6443", "team-a", "lab", False)


def test_context_flag_and_default_namespace(cfg):
    s = config.resolve(server=None, kubeconfig=cfg, namespace=None, context="other", env={})
    assert (s.server, s.namespace) == ("10.0.0.2:7000", "default")


def test_flag_beats_env_beats_file(cfg):
    env = {"KCTL_SERVER": "127.0.0.1:9999"}
    assert config.resolve(server=None, kubeconfig=cfg, namespace=None, env=env).server == "127.0.0.1:9999"
    s = config.resolve(server="1.2.3.4:5", kubeconfig=cfg, namespace="ns1", env=env)
    assert (s.server, s.namespace, s.namespace_explicit) == ("1.2.3.4:5", "ns1", True)


def test_kubeconfig_env_list_first_existing(cfg, tmp_path):
    env = {"KUBECONFIG": f"{tmp_path}/missing:{cfg}"}
    assert config.kubeconfig_path(None, env) == cfg
    assert config.resolve(server=None, kubeconfig=None, namespace=None, env=env).server == "10.0.0.1:6443"


def test_default_path_and_fallback_server(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = config.resolve(server=None, kubeconfig=None, namespace=None, env={})
    assert s.server == config.DEFAULT_SERVER and s.kubeconfig is None
    (tmp_path / ".kctl").mkdir()
    (tmp_path / ".kctl" / "config").write_text(KUBECONFIG)
    assert config.resolve(server=None, kubeconfig=None, namespace=None, env={}).server == "10.0.0.1:6443"


def test_errors(cfg, tmp_path):
    with pytest.raises(config.ConfigError, match="no such file"):
        config.resolve(server=None, kubeconfig=str(tmp_path / "nope"), namespace=None, env={})
    with pytest.raises(config.ConfigError, match='context "x" does not exist'):
        config.resolve(server=None, kubeconfig=cfg, namespace=None, context="x", env={})
    bad = tmp_path / "bad"
    bad.write_text("clusters: [{cluster: {}}]")
    with pytest.raises(config.ConfigError, match="needs a name"):
        config.load(str(bad))
    bad.write_text("clusters: [")
    with pytest.raises(errors.ConfigError, match="error loading config file") as ei:
        config.load(str(bad))
    assert isinstance(ei.value.__cause__, yaml.YAMLError)       # translated at the boundary


def test_kctl_errors_belong_to_the_one_exception_tree():
    from kubectlish import common, jsonpath
    assert config.ConfigError is errors.ConfigError
    assert issubclass(common.Failed, errors.KctlError)
    with pytest.raises(errors.DecodeError):
        jsonpath.render("{range .items}", {"items": []})


def test_single_cluster_without_context(tmp_path):
    p = tmp_path / "c"
    p.write_text("clusters: [{name: a, cluster: {server: '1.1.1.1:1'}}]")
    assert config.load(str(p)) == ("1.1.1.1:1", None, None)


def test_global_options_are_hoisted_from_anywhere():
    assert hoist_global_options(["get", "pods", "-n", "kube-system", "-o", "wide"]) == \
        ["-n", "kube-system", "get", "pods", "-o", "wide"]
    assert hoist_global_options(["get", "pods", "--namespace=x", "--server", "h:1"]) == \
        ["--namespace=x", "--server", "h:1", "get", "pods"]
    assert hoist_global_options(["get", "-nfoo", "pods"]) == ["-nfoo", "get", "pods"]
    assert hoist_global_options(["apply", "-f", "-", "--", "-n", "x"]) == ["apply", "-f", "-", "--", "-n", "x"]


def test_parse_duration():
    assert parse_duration("5s") == 5 and parse_duration("2m") == 120 and parse_duration("500ms") == 0.5
    assert parse_duration("3") == 3 and parse_duration("0") is None and parse_duration(None) is None


def test_extension_commands_keep_their_options():
    assert hoist_global_options(["lab", "up", "-n", "3"]) == ["lab", "up", "-n", "3"]
    assert hoist_global_options(["--server", "h:1", "lab", "exec", "-n", "x"]) == \
        ["--server", "h:1", "lab", "exec", "-n", "x"]
