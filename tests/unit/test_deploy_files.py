"""deploy/'s files: the systemd units, their /etc/kctl/*.env templates,
install-units.sh, the Vagrantfile and provisioning script, and the by-hand
recipe of deploy/README.md (parsers and the flag check: tests/deploy_units.py).

Every command line a unit would run is parsed by its component's own argparse
parser; etcd's flags are checked against ``etcd --help``. Starting etcd and
the registry from the rendered files is in tests/integration/
test_deploy_processes.py.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy_units import (BAD_VALUE, CONTROLPLANE, CP_ARGS, INSTALL_UNITS, PYTHON_COMPONENTS, REPO,  # noqa: F401
                                SCRIPTS, SYSTEMD, UNITS, VAGRANT, flag_errors, installed, parse_env_file,
                                component_parser, expand_exec, parse_unit, rendered, run_install_units)


# ------------------------------------------------------------------ units and templates

@pytest.mark.parametrize("name", UNITS)
def test_unit_structure(name):
    unit = parse_unit((SYSTEMD / f"kctl-{name}.service").read_text())
    svc = unit["Service"]
    assert svc["Restart"] == ["on-failure"]
    assert svc["EnvironmentFile"] == [f"/etc/kctl/{name}.env"]
    assert (SYSTEMD / "env" / f"{name}.env").is_file(), "the env file needs a template"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"], "never give up restarting"
    (exec_start,) = svc["ExecStart"]
    program = shlex.split(exec_start)[0]
    if name in PYTHON_COMPONENTS:
        assert program == f"/opt/kctl/.venv/bin/kctl-{name}"
        assert f"kctl-{name}" in SCRIPTS, f"kctl-{name} is not a console script in pyproject.toml"
    else:
        assert program == {"etcd": "/usr/bin/etcd", "registry": "/usr/bin/docker-registry"}[name]
    # Every $VAR of ExecStart comes from the template of its env file.
    template_env = parse_env_file((SYSTEMD / "env" / f"{name}.env").read_text())
    for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", exec_start):
        assert var in template_env, f"{var} not in env/{name}.env"


def test_ordering():
    units = {n: parse_unit((SYSTEMD / f"kctl-{n}.service").read_text())["Unit"] for n in UNITS}
    assert "kctl-etcd.service" in units["apiserver"]["After"][0].split()
    assert "kctl-etcd.service" in units["apiserver"]["Wants"][0].split()
    for n in ("scheduler", "controller-manager"):
        assert "kctl-apiserver.service" in units[n]["After"][0].split()
        assert "kctl-apiserver.service" in units[n]["Wants"][0].split()
    # Our etcd/registry replace Debian's services on the same ports.
    assert units["etcd"]["Conflicts"] == ["etcd.service"]
    assert units["registry"]["Conflicts"] == ["docker-registry.service"]
    assert parse_unit((SYSTEMD / "kctl-etcd.service").read_text())["Service"]["Type"] == ["notify"]


def test_nodeagent_killmode_leaves_conmon_running():
    svc = parse_unit((SYSTEMD / "kctl-nodeagent.service").read_text())["Service"]
    assert svc["KillMode"] == ["process"]
    assert "OOMScoreAdjust" not in svc, "containers would inherit it"
    for name in UNITS:
        if name != "nodeagent":
            assert "KillMode" not in parse_unit((SYSTEMD / f"kctl-{name}.service").read_text())["Service"]


@pytest.mark.parametrize("name", PYTHON_COMPONENTS)
def test_rendered_command_lines_parse(installed, name):
    """ExecStart + the rendered env file = a command line the component accepts."""
    unit, env = rendered(installed, name)
    (exec_start,) = unit["Service"]["ExecStart"]
    argv = expand_exec(exec_start, env)
    assert argv[0] == f"{REPO}/.venv/bin/kctl-{name}", "install-units.sh points at the checkout's venv"
    assert flag_errors(f"kctl-{name}", argv[1:]) == []
    assert len(argv) > 3


@pytest.mark.parametrize("name", PYTHON_COMPONENTS)
def test_flag_check_rejects_unknown_flags(installed, name):
    """The check above is not vacuous: an unknown flag or a bad value fails it."""
    unit, env = rendered(installed, name)
    argv = expand_exec(unit["Service"]["ExecStart"][0], env)
    assert flag_errors(f"kctl-{name}", argv[1:] + ["--no-such-flag", "1"]) != []
    assert flag_errors(f"kctl-{name}", argv[1:] + BAD_VALUE[name]) != []


def test_nodeagent_flags_rendered(installed):
    _, env = rendered(installed, "nodeagent")
    args = parse_env_file((installed / "etc/kctl/nodeagent.env").read_text())["KCTL_NODEAGENT_ARGS"].split()
    assert env["KCTL_NODEAGENT_ARGS"].split() == args

    def value(flag):
        return args[args.index(flag) + 1]
    assert value("--node-ip") == "10.77.0.11"
    assert value("--node-name") == "worker1"
    assert value("--registry-mirror") == "docker.io=http://10.77.0.10:5000"
    assert value("--insecure-registry") == "10.77.0.10:5000"
    assert value("--node-labels") == "zone=a,disk=ssd"
    assert value("--register-with-taints") == "dedicated=infra:NoSchedule"
    parsed = component_parser("kctl-nodeagent").parse_args(args)
    assert parsed.node_labels == {"zone": "a", "disk": "ssd"}
    assert [t.effect for t in parsed.register_with_taints] == ["NoSchedule"]


def test_controlplane_addresses_rendered(installed):
    for name, var in (("apiserver", "KCTL_APISERVER_ARGS"), ("scheduler", "KCTL_SCHEDULER_ARGS"),
                      ("controller-manager", "KCTL_CONTROLLER_MANAGER_ARGS")):
        _, env = rendered(installed, name)
        assert "10.77.0.10:6443" in env[var].split()
    _, env = rendered(installed, "registry")
    assert env["REGISTRY_HTTP_ADDR"] == "10.77.0.10:5000"
    _, env = rendered(installed, "controller-manager")      # CSRs signed, kube-root-ca.crt, cluster-info
    args = env["KCTL_CONTROLLER_MANAGER_ARGS"].split()
    for flag, value in (("--cluster-signing-cert-file", "/etc/kctl/pki/ca.crt"),
                        ("--cluster-signing-key-file", "/etc/kctl/pki/ca.key"),
                        ("--root-ca-file", "/etc/kctl/pki/ca.crt"),
                        ("--cluster-info-server", "https://10.77.0.10:8080")):
        assert args[args.index(flag) + 1] == value


def test_etcd_flags_exist():
    etcd = shutil.which("etcd")
    if not etcd:
        pytest.skip("etcd is not installed (deploy/install.sh installs etcd-server): etcd's flags NOT checked")
    help_text = subprocess.run([etcd, "--help"], capture_output=True, text=True).stdout
    known = set(re.findall(r"^\s+(--[a-z0-9-]+)", help_text, re.M))
    assert len(known) > 30, help_text[:500]
    args = parse_env_file((SYSTEMD / "env" / "etcd.env").read_text())["KCTL_ETCD_ARGS"].split()
    flags = [a.split("=", 1)[0] for a in args if a.startswith("-")]
    assert flags and set(flags) <= known, set(flags) - known
    assert "--no-such-flag" not in known


def test_registry_env_overrides_keys_of_our_config(installed):
    import yaml
    config = yaml.safe_load((installed / "etc/kctl/registry.yml").read_text())
    assert "auth" not in config, "no htpasswd auth (design §4)"
    _, env = rendered(installed, "registry")
    assert env, "registry.env sets the address and storage"
    for var in env:
        assert var.startswith("REGISTRY_"), var
        node = config
        path = var[len("REGISTRY_"):].lower().split("_")
        for key in path:
            assert isinstance(node, dict) and key in node, f"{var}: no {'.'.join(path)} in registry.yml"
            node = node[key]


# ------------------------------------------------------------------ install-units.sh

def test_install_units_installs_each_role(installed):
    units = sorted(p.name for p in (installed / "etc/systemd/system").iterdir())
    assert units == sorted(f"kctl-{n}.service" for n in UNITS)
    envs = sorted(p.name for p in (installed / "etc/kctl").iterdir())
    assert envs == sorted([f"{n}.env" for n in UNITS] + ["registry.yml", "pki"])
    pki_dir = installed / "etc/kctl/pki"          # `kctl pki init --etcd` for the control plane
    for f in ("ca.crt", "apiserver.crt", "admin.conf", "scheduler.conf", "etcd/server.crt",
              "apiserver-etcd-client.crt"):
        assert (pki_dir / f).is_file(), f
    assert (installed / "etc/modules-load.d/kctl.conf").read_text().split()[-2:] == ["br_netfilter", "overlay"]
    for path in list((installed / "etc").rglob("*.service")) + list((installed / "etc/kctl").glob("*.env")):
        assert not re.search(r"@[A-Z_]+@", path.read_text()), f"placeholder left in {path}"


def test_install_units_is_idempotent(tmp_path):
    first = run_install_units(tmp_path, "controlplane", *CP_ARGS)
    assert "wrote" in first.stdout
    files = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    second = run_install_units(tmp_path, "controlplane", *CP_ARGS)
    assert "wrote" not in second.stdout, second.stdout
    assert {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == files
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    # A changed value rewrites only what changed and keeps the old env file.
    third = run_install_units(tmp_path, "controlplane", *CP_ARGS[:-2], "--node-cidr-mask-size", "25")
    assert third.stdout.count("wrote") == 1, third.stdout
    cm = tmp_path / "etc/kctl/controller-manager.env"
    assert "--node-cidr-mask-size 25" in cm.read_text()
    assert "--node-cidr-mask-size 24" in (tmp_path / "etc/kctl/controller-manager.env.bak").read_text()


def test_install_units_environment_defaults(tmp_path):
    env = {**os.environ, "KCTL_APISERVER": "10.5.0.1:6443", "KCTL_NODE_IP": "10.5.0.2", "KCTL_NODE_NAME": "n9"}
    res = subprocess.run(["bash", str(INSTALL_UNITS), "worker", "--root", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    args = parse_env_file((tmp_path / "etc/kctl/nodeagent.env").read_text())["KCTL_NODEAGENT_ARGS"].split()
    assert args[:8] == ["--kubeconfig", "/etc/kctl/pki/node.conf", "--apiserver", "10.5.0.1:6443", "--node-name", "n9",
                        "--node-ip", "10.5.0.2"]
    assert "docker.io=http://10.5.0.1:5000" in args, "registry defaults to the apiserver's host"


FAKE_SYSTEMCTL = """#!/bin/bash
# records its calls; a unit is active once it was started
echo "$*" >>"$SYSTEMCTL_LOG"
case "$1" in
    is-active) grep -qE "^(re)?start $3$" "$SYSTEMCTL_LOG" ;;
    list-unit-files) echo "$2 enabled" ;;
esac
"""


def test_install_units_starts_and_restarts_only_what_changed(tmp_path):
    fake = tmp_path / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    log = tmp_path / "calls"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KCTL_")},
           "KCTL_SYSTEMCTL": str(fake), "SYSTEMCTL_LOG": str(log)}

    def calls(*args: str) -> list[str]:
        before = log.read_text().splitlines() if log.exists() else []
        res = subprocess.run(["bash", str(INSTALL_UNITS), "controlplane", *args, "--root", str(tmp_path / "root")],
                             env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return [c for c in log.read_text().splitlines()[len(before):]
                if not c.startswith(("is-active", "list-unit-files", "--no-pager"))]

    units = [f"kctl-{n}.service" for n in CONTROLPLANE]
    first = calls(*CP_ARGS)
    assert first == ["daemon-reload", "disable --now etcd.service", "disable --now docker-registry.service",
                     "enable " + " ".join(units)] + [f"start {u}" for u in units]
    # Nothing changed: nothing restarted (start of a running unit is a no-op).
    second = calls(*CP_ARGS)
    assert not [c for c in second if c.startswith("restart")], second
    # One flag changed: only its component restarts.
    third = calls(*CP_ARGS[:-2], "--node-cidr-mask-size", "26")
    assert [c for c in third if c.startswith("restart")] == ["restart kctl-controller-manager.service"]
    # An HA member: its etcd waits for a quorum, so nothing blocks on a start or restart; no registry
    # on any but the first machine.
    ha = ["--control-plane-hosts", "cp1=10.77.0.9,cp2=10.77.0.10,cp3=10.77.0.8"]
    fourth = calls(*CP_ARGS[:-2], "--node-cidr-mask-size", "26", *ha)
    dropin = tmp_path / "root/etc/systemd/system/kctl-etcd.service.d/kctl-member.conf"
    assert dropin.is_file()
    restarted = [c for c in fourth if c.startswith("restart")]
    assert restarted == [f"restart --no-block kctl-{n}.service" for n in
                         ("etcd", "apiserver", "scheduler", "controller-manager", "dns")], fourth
    assert not [c for c in fourth if c.startswith(("start", "restart")) and "--no-block" not in c]
    assert "kctl-registry.service" not in " ".join(fourth)
    # Back to one control plane: the drop-in goes, etcd restarts (blocking again).
    fifth = calls(*CP_ARGS[:-2], "--node-cidr-mask-size", "26")
    assert not dropin.exists()
    assert "restart kctl-etcd.service" in fifth


@pytest.mark.parametrize("args", [
    ["worker", "--node-ip", "10.0.0.2"],                               # no --apiserver
    ["controlplane"],                                                   # no --advertise-ip
    ["controlplane", "--advertise-ip", "10.0.0.1", "--bogus", "x"],
    ["worker", "--apiserver", "10.0.0.1:6443", "--node-ip", "10.0.0.2", "--node-labels", "a=b c=d"],
    ["nodes"],
    ["controlplane", "--advertise-ip", "10.0.0.1", "--control-plane-hosts", "cp1=10.0.0.2,cp2=10.0.0.3"],  # not us
    ["controlplane", "--advertise-ip", "10.0.0.1", "--control-plane-hosts", "cp1=10.0.0.1"],     # one is no HA
    ["controlplane", "--advertise-ip", "10.0.0.1", "--control-plane-hosts", "cp1=10.0.0.1,cp1=10.0.0.2"],
    ["controlplane", "--advertise-ip", "10.0.0.1", "--control-plane-hosts", "cp1=10.0.0.1,cp2=10.0.0.1"],
    ["controlplane", "--advertise-ip", "10.0.0.1", "--control-plane-hosts", "cp1=10.0.0.1,CP 2=10.0.0.2"],
    ["controlplane", "--advertise-ip", "10.0.0.1", "--control-plane-hosts", "cp1=10.0.0.1,cp2"],
])
def test_install_units_refuses_bad_arguments(tmp_path, args):
    res = subprocess.run(["bash", str(INSTALL_UNITS), *args, "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("KCTL_")})
    assert res.returncode != 0
    assert not list(tmp_path.rglob("*.env")), "nothing is written on bad arguments"


def test_systemd_analyze_verify(installed):
    """systemd's own parser on the rendered units (unknown keys, bad values, missing programs)."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not found: the units were NOT checked by systemd's parser")
    units, unverified = [], []
    for u in sorted((installed / "etc/systemd/system").glob("*.service")):
        programs = {shlex.split(line.lstrip("-@+!:"))[0] for key in ("ExecStart", "ExecStartPre")
                    for line in parse_unit(u.read_text())["Service"].get(key, [])}
        missing = sorted(p for p in programs if not Path(p).exists())
        (unverified if missing else units).append((u, missing))
    if units:
        res = subprocess.run([analyze, "verify", "--man=no", *(str(u) for u, _ in units)], capture_output=True,
                             text=True, timeout=60, cwd=installed / "etc/systemd/system")
        assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    if unverified:
        pytest.skip("programs not installed, systemd-analyze verify NOT run for: "
                    + ", ".join(f"{u.name} ({', '.join(m)})" for u, m in unverified))


# ------------------------------------------------------------------ shell scripts, Vagrantfile

@pytest.mark.parametrize("script", [INSTALL_UNITS, SYSTEMD / "push-images.sh", VAGRANT / "provision.sh",
                                    REPO / "deploy/install.sh"],
                         ids=lambda p: p.name)
def test_shell_syntax(script):
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.access(script, os.X_OK), f"{script} is not executable"


def _vagrant(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KCTL_", "VAGRANT_"))}
    environ.update(VAGRANT_HOME=str(tmp_path / "vagrant.d"), VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"),
                   VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_CWD=str(VAGRANT), **env)
    return subprocess.run(["vagrant", *args], capture_output=True, text=True, timeout=180, env=environ,
                          cwd=VAGRANT)


def test_vagrantfile(tmp_path):
    """`vagrant validate --ignore-provider` (no provider needed); else `ruby -c`; else a stated skip."""
    if shutil.which("vagrant"):
        res = _vagrant(["validate", "--ignore-provider"], tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert re.findall(r"==> (\S+): Ignoring provider config", res.stdout) == ["cp", "worker1", "worker2"]
        res = _vagrant(["validate", "--ignore-provider"], tmp_path, KCTL_WORKERS="4")
        assert res.returncode == 0, res.stdout + res.stderr
        assert re.findall(r"==> (\S+): Ignoring", res.stdout) == ["cp"] + [f"worker{i}" for i in range(1, 5)]
        res = _vagrant(["validate", "--ignore-provider"], tmp_path, KCTL_CONTROL_PLANES="3")    # HA
        assert res.returncode == 0, res.stdout + res.stderr
        assert re.findall(r"==> (\S+): Ignoring", res.stdout) == ["cp1", "cp2", "cp3", "worker1", "worker2"]
        # The Vagrantfile's own checks run too.
        bad = _vagrant(["validate", "--ignore-provider"], tmp_path, KCTL_POD_CIDR="192.168.0.0/16")
        assert bad.returncode != 0 and "overlaps KCTL_SUBNET" in bad.stdout + bad.stderr
    elif shutil.which("ruby"):
        res = subprocess.run(["ruby", "-c", str(VAGRANT / "Vagrantfile")], capture_output=True, text=True)
        assert res.returncode == 0 and "Syntax OK" in res.stdout, res.stderr
    else:
        pytest.skip("neither vagrant nor ruby is installed: the Vagrantfile was NOT checked "
                    "(apt-get install vagrant, or ruby for a syntax check)")


def test_vagrant_provisioning_matches_install_units():
    """Every option the Vagrantfile passes to provision.sh is one install-units.sh knows (or --hosts)."""
    vagrantfile = (VAGRANT / "Vagrantfile").read_text()
    passed = set(re.findall(r'"(--[a-z-]+)"', vagrantfile))
    assert {"--advertise-ip", "--node-ip", "--apiserver", "--registry", "--hosts"} <= passed
    known = set(re.findall(r"^\s+(--[a-z-]+)\)", INSTALL_UNITS.read_text(), re.M))
    assert passed - {"--hosts"} <= known, passed - known
    assert 'config.vm.box = BOX' in vagrantfile and '"debian/bookworm64"' in vagrantfile
    for provider in (":virtualbox", ":libvirt"):
        assert f"config.vm.provider {provider}" in vagrantfile


# ------------------------------------------------------------------ the by-hand recipe

def _readme_commands(section: str) -> list[list[str]]:
    """Command lines (continuations joined, split like the shell) of a README section's sh blocks."""
    text = (REPO / "deploy/README.md").read_text()
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", body, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            # the command itself, without redirections and what follows & && | ;
            line = re.split(r"\s+(?:\d?>|&&?|\||;)", line)[0].strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


def test_readme_by_hand_recipe_uses_real_flags():
    commands = _readme_commands("## 2. By hand")
    seen = set()
    for words in commands:
        for i, word in enumerate(words):
            name = os.path.basename(word)
            if name in SCRIPTS and name != "kctl":
                assert flag_errors(name, words[i + 1:]) == [], " ".join(words)
                seen.add(name)
            elif name == "etcd" and shutil.which("etcd"):
                help_text = subprocess.run(["etcd", "--help"], capture_output=True, text=True).stdout
                known = set(re.findall(r"^\s+(--[a-z0-9-]+)", help_text, re.M))
                flags = {w for w in words[i + 1:] if w.startswith("--")}
                assert flags <= known, flags - known
    assert seen == {f"kctl-{n}" for n in PYTHON_COMPONENTS}, "the recipe starts every component"
