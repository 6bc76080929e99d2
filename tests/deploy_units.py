"""What the deploy/ checks share: the units' and env files' parsers, the
component flag check, install-units.sh rendered into a directory, and the
Vagrantfile's provisioner arguments (evaluated by Ruby, without Vagrant).

The flag checks are real: every kctl component's argparse parser is taken from
the console script that pyproject.toml's [project.scripts] names (its main() is
called with ``ArgumentParser.parse_args`` intercepted), and every command line a
unit would run — ExecStart with the env file rendered by install-units.sh and
expanded the way systemd expands ``$VAR`` — is parsed by that parser. A flag
that does not exist, or a value the flag's type rejects, fails the check.

Used by tests/unit/test_deploy_files.py (the files), tests/integration/
test_deploy_processes.py (etcd and the registry started from them) and the
lab's e2e tests; `installed` is a module-scoped fixture to import.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "deploy" / "systemd"
VAGRANT = REPO / "deploy" / "vagrant"
INSTALL_UNITS = SYSTEMD / "install-units.sh"
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]

CONTROLPLANE = ["etcd", "registry", "apiserver", "scheduler", "controller-manager", "dns"]
WORKER = ["nodeagent"]
UNITS = CONTROLPLANE + WORKER
PYTHON_COMPONENTS = ["apiserver", "scheduler", "controller-manager", "nodeagent", "dns"]
# A flag that exists with a value its type refuses.
BAD_VALUE = {"apiserver": ["--watch-cache-size", "x"], "scheduler": ["--batch-size", "x"],
             "controller-manager": ["--node-cidr-mask-size", "x"],
             "nodeagent": ["--register-with-taints", "k=v:Sometimes"], "dns": ["--ttl", "x"]}
# Every option install-units.sh has, so that every placeholder is filled.
CP_ARGS = ["--advertise-ip", "10.77.0.10", "--service-cidr", "10.96.0.0/16",
           "--cluster-cidr", "10.244.0.0/16", "--node-cidr-mask-size", "24"]
WORKER_ARGS = ["--apiserver", "10.77.0.10:6443", "--node-ip", "10.77.0.11", "--node-name", "worker1",
               "--registry", "10.77.0.10:5000", "--node-labels", "zone=a,disk=ssd",
               "--register-with-taints", "dedicated=infra:NoSchedule", "--masquerade-cidr", "10.77.0.0/24"]


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: {section: {key: [values, in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line continuations are not used: {raw!r}"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not KEY=VALUE in a section: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile as systemd reads our simple ones: KEY=VALUE or KEY="VALUE"."""
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"not KEY=VALUE: {raw!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        assert "\\" not in value and '"' not in value, f"keep env values free of escapes: {raw!r}"
        env[key] = value
    return env


def expand_exec(line: str, env: dict[str, str]) -> list[str]:
    """argv of an Exec*= line: "$VAR" splits into words, "${VAR}" is one word."""
    line = line.lstrip("-@+!:")
    argv: list[str] = []
    for word in shlex.split(line):
        if m := re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word):
            assert m.group(1) in env, f"{word} is not set by the unit's EnvironmentFile"
            argv.extend(env[m.group(1)].split())
        elif m := re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", word):
            assert m.group(1) in env, f"{word} is not set by the unit's EnvironmentFile"
            argv.append(env[m.group(1)])
        else:
            assert "$" not in word, f"unexpected variable use in {word!r}"
            argv.append(word)
    return argv


class _Captured(Exception):
    pass


def component_parser(script: str) -> argparse.ArgumentParser:
    """The argparse parser behind a console script from [project.scripts]."""
    module, _, func = SCRIPTS[script].partition(":")
    main = getattr(importlib.import_module(module), func)
    captured: list[argparse.ArgumentParser] = []

    def spy(self, args=None, namespace=None):
        captured.append(self)
        raise _Captured

    with mock.patch.object(argparse.ArgumentParser, "parse_args", spy), \
            mock.patch.object(argparse.ArgumentParser, "parse_known_args", spy):
        try:
            main([])
        except _Captured:
            pass
    assert captured, f"{script} ({SCRIPTS[script]}) did not parse its arguments with argparse"
    return captured[0]


def flag_errors(script: str, argv: list[str]) -> list[str]:
    """Why argv (without argv[0]) is not a valid command line of `script`; [] if it is."""
    parser = component_parser(script)
    known = {s for action in parser._actions for s in action.option_strings}
    errors = [f"{script} has no flag {tok.split('=', 1)[0]}" for tok in argv
              if tok.startswith("-") and tok.split("=", 1)[0] not in known]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code:
                errors.append(f"{script} {' '.join(argv)}: {stderr.getvalue().strip()}")
    return errors


def run_install_units(root: Path, role: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", str(INSTALL_UNITS), role, *args, "--root", str(root)],
                         capture_output=True, text=True, timeout=60)
    if check:
        assert res.returncode == 0, res.stderr + res.stdout
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Both roles rendered by install-units.sh into one root."""
    root = tmp_path_factory.mktemp("root")
    run_install_units(root, "controlplane", *CP_ARGS)
    run_install_units(root, "worker", *WORKER_ARGS)
    return root


def rendered(root: Path, name: str) -> tuple[dict, dict[str, str]]:
    unit = parse_unit((root / f"etc/systemd/system/kctl-{name}.service").read_text())
    env_files = unit["Service"]["EnvironmentFile"]
    assert env_files == [f"/etc/kctl/{name}.env"], env_files
    env = parse_env_file((root / env_files[0].lstrip("/")).read_text())
    return unit, env


# The Vagrantfile evaluated by plain Ruby with a stand-in for Vagrant's
# configuration object: every shell provisioner's args, per machine, as JSON.
# No vagrant, no provider, no VM; KCTL_PKI_DIR must point at a scratch directory
# (the Vagrantfile creates its bundle directories there).
_VAGRANT_STUB = r"""
require "json"
class KctlRecorder
  def initialize(out, machine = nil)
    @out, @machine = out, machine
  end

  def define(name, **_opts)
    yield KctlRecorder.new(@out, name)
  end

  def provision(name, **opts)
    @out << { "machine" => @machine, "name" => name, "args" => opts[:args] } if opts[:type] == "shell"
  end

  def provider(*) = nil            # provider blocks are not evaluated

  def method_missing(*) = self     # config.vm, config.ssh, x.y = ..., synced_folder, network ...

  def respond_to_missing?(*) = true
end

module Vagrant
  def self.configure(_version)
    yield KctlRecorder.new(KCTL_PROVISIONERS)
  end
end
KCTL_PROVISIONERS = []
load ARGV.shift
puts JSON.generate(KCTL_PROVISIONERS)
"""


def vagrant_eval(scratch: Path, *vagrant_args: str, **env: str) -> subprocess.CompletedProcess:
    """The Vagrantfile evaluated by Ruby as `vagrant VAGRANT_ARGS...` would (`up` also makes the
    PKI in scratch/pki, as the real one does), with `env` as its KCTL_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KCTL_", "VAGRANT_"))}
    environ.update(KCTL_PKI_DIR=str(scratch / "pki"), KCTL_OFFLINE="0", **env)
    return subprocess.run(["ruby", "-e", _VAGRANT_STUB, str(VAGRANT / "Vagrantfile"), *vagrant_args],
                          capture_output=True, text=True, timeout=120, env=environ, cwd=scratch)


def vagrant_provisioners(scratch: Path, *vagrant_args: str, **env: str) -> dict[str, list[str]]:
    """{machine: args of its "kctl" shell provisioner (provision.sh)} from the Vagrantfile (see
    vagrant_eval), in machine order. Needs `ruby` (the caller skips, saying so, without it)."""
    res = vagrant_eval(scratch, *vagrant_args, **env)
    assert res.returncode == 0, res.stderr
    # the last line: `up` also prints what the PKI command said
    return {p["machine"]: p["args"] for p in json.loads(res.stdout.splitlines()[-1]) if p["name"] == "kctl"}


def flag_values(argv: list[str]) -> dict[str, str | bool]:
    """--flag value / --flag=value / a bare --flag (True) of a command line such as etcd's."""
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        assert flag.startswith("--") and flag not in out, f"{argv[i]!r} in {argv}"
        if eq:
            out[flag] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[flag] = argv[i + 1]
            i += 1
        else:
            out[flag] = True
        i += 1
    return out
