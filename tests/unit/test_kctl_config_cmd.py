"""`kctl config` on a temporary kubeconfig, and kctl then using it."""
from __future__ import annotations

import yaml
from click.testing import CliRunner

from kubectlish.main import cli

CFG = {"apiVersion": "v1", "kind": "Config",
       "clusters": [{"name": "a", "cluster": {"server": "10.0.0.1:6443"}},
                    {"name": "b", "cluster": {"server": "10.0.0.2:6443"}}],
       "contexts": [{"name": "a", "context": {"cluster": "a", "user": "u"}},
                    {"name": "b", "context": {"cluster": "b", "namespace": "dev"}}],
       "current-context": "a", "users": [{"name": "u", "user": {}}]}


def run(path, *args):
    r = CliRunner().invoke(cli, ["--kubeconfig", str(path), *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_contexts_view_switch_and_namespace(tmp_path):
    p = tmp_path / "config"
    p.write_text(yaml.safe_dump(CFG))
    assert run(p, "config", "current-context")[1] == "a\n"
    out = run(p, "config", "get-contexts")[1].splitlines()
    assert out[0].split() == ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
    assert out[1].split() == ["*", "a", "a", "u"] and out[2].split() == ["b", "b", "dev"]
    assert run(p, "config", "use-context", "b")[1] == 'Switched to context "b".\n'
    assert yaml.safe_load(p.read_text())["current-context"] == "b"
    code, _, err = run(p, "config", "use-context", "zz")
    assert code == 1 and err == 'error: no context exists with the name: "zz"\n'
    assert run(p, "config", "set-context", "--current", "--namespace=prod")[1] == 'Context "b" modified.\n'
    from kubectlish import config
    s = config.resolve(server=None, kubeconfig=str(p), namespace=None, env={})
    assert (s.server, s.namespace) == ("10.0.0.2:6443", "prod")
    assert "clusters:" in run(p, "config", "view")[1]


def test_config_works_with_a_broken_context(tmp_path):
    p = tmp_path / "config"
    p.write_text(yaml.safe_dump({**CFG, "current-context": "gone"}))
    assert run(p, "config", "use-context", "a")[0] == 0
    p.write_text(yaml.safe_dump({**CFG, "current-context": "gone"}))
    code, _, err = run(p, "get", "pods")
    assert code == 1 and err == 'error: context "gone" does not exist\n'
