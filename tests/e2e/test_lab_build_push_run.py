"""The README's "Build, push, run" walkthrough, run as written on a real lab.

The commands below are the walkthrough's, verbatim (a test checks that
README.md still shows each of them): buildah builds examples/build-push-run
(`FROM` the lab's python:3, built from Debian packages by
deploy/debimages.py), pushes it to the lab registry, `kctl run` starts it
through the agents' docker.io mirror, `kctl expose` gives it a NodePort, and
the app answers there. buildah's storage goes to a temporary directory
(CONTAINERS_STORAGE_CONF, vfs driver: no mounts left behind), so the
machine's /var/lib/containers is not touched.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.lab_fixtures import lab, missing_tools, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables, mmdebstrap)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
    pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed (apt-get install buildah)"),
]

LAB_TAG = "bp"
REPO = Path(__file__).resolve().parents[2]
BUILD = ["buildah bud --tls-verify=false --build-arg REGISTRY=$REGISTRY -t $REGISTRY/kctl/hello:v1 "
         "examples/build-push-run",
         "buildah push --tls-verify=false $REGISTRY/kctl/hello:v1"]
RUN = ["kctl run hello --image=kctl/hello:v1 --port=8000",
       "kctl wait --for=condition=Ready pod/hello --timeout=60s",
       "kctl expose pod hello --type=NodePort --port=80 --target-port=8000"]
STORAGE_CONF = """[storage]
driver = "vfs"
runroot = "{tmp}/run"
graphroot = "{tmp}/root"
"""


@pytest.fixture(scope="module", autouse=True)
def debian_images():
    """The lab's python:3 must exist before the lab comes up (built or cached)."""
    from deploy.debimages import build_debian_images
    return build_debian_images(log=print)


def sh(lab, command: str, env: dict, timeout: float = 120) -> str:
    res = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"$ {command}\nexit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def test_readme_shows_the_tested_commands():
    readme = (REPO / "README.md").read_text()
    for command in BUILD + RUN:
        assert f"$ {command}\n" in readme, command


def test_build_push_run(lab, tmp_path):
    (tmp_path / "storage.conf").write_text(STORAGE_CONF.format(tmp=tmp_path))
    env = {**lab.env, "REGISTRY": lab.info["registry"], "CONTAINERS_STORAGE_CONF": str(tmp_path / "storage.conf"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}   # kctl of this venv
    t0 = time.monotonic()
    try:
        for command in BUILD:
            sh(lab, command, env)
    finally:
        shutil.rmtree(tmp_path / "root", ignore_errors=True)   # buildah's copies of the layers (vfs)
    print(f"\nbuildah bud + push: {time.monotonic() - t0:.1f}s")
    for command in RUN:
        sh(lab, command, env)
    svc = lab.api(lambda c: c.get("Service", "hello", "default"))
    port = svc.spec.ports[0].node_port
    pod = lab.api(lambda c: c.get("Pod", "hello", "default"))
    assert pod.status.container_statuses[0].image_id.startswith("docker.io/kctl/hello@sha256:")

    def answer():
        try:
            with urllib.request.urlopen(f"http://{lab.node('node1').ip}:{port}/", timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            return None
    assert wait_for("the app behind the NodePort", answer, 30) == "Hello from an image I built (pod hello)\n"
