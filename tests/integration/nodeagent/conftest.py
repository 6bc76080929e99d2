"""Fixtures for node agent integration tests: real etcd + apiserver + registry
+ agents in node netns, from harness.nodes (the topology is described there).

- `env` (session): a harness.nodes.NodeCluster — segment, control plane on
  the segment address, registry with the offline images.
- `segment`, `cluster` (the apiserver process: `.target`), `registry`: its parts.
- `api`: a Client to that apiserver (named api: `client` is the loopback
  one of tests/conftest.py).
- `make_node(tag=None, extra=None, start=True)`: a node netns + agent,
  destroyed when the test ends.
- `privileged_default`: the `default` namespace labelled Pod Security
  `privileged` for the test (for hostPath / hostNetwork pods, which the
  baseline default refuses), the label removed afterwards.

The helpers the test modules import from here (make_pod, node_ready,
pod_running, ...) are harness.pods' and harness.netns'.
"""
from __future__ import annotations

import os
import shutil

import pytest

from harness.netns import in_netns, sh  # noqa: F401 - imported by the test modules
from harness.nodes import Node, NodeCluster  # noqa: F401
from harness.pods import (all_running, cid_of, cstatus, make_pod, node_ready, pod_gone, pod_running,  # noqa: F401
                          pod_where, wait_for)
from machinery.client import Client

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("conmon") or not shutil.which("skopeo"),
    reason="needs root, runc, conmon and skopeo")


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with NodeCluster(tmp_path_factory.mktemp("nodeagent")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def segment(env):
    return env.segment


@pytest.fixture(scope="session")
def cluster(env):
    return env.apiserver


@pytest.fixture(scope="session")
def registry(env):
    return env.registry


@pytest.fixture
async def api(cluster):
    async with Client(cluster.target, timeout=30) as c:
        yield c


@pytest.fixture
async def privileged_default(api):
    key = "pod-security.kubernetes.io/enforce"

    async def label(value: str | None) -> None:
        ns = await api.get("Namespace", "default")
        if value is None:
            ns.metadata.labels.pop(key, None)
        else:
            ns.metadata.labels[key] = value
        await api.update(ns)
    await label("privileged")
    yield
    await label(None)


@pytest.fixture
def make_node(env, tmp_path):
    made: list[Node] = []

    def make(tag: str | None = None, extra: list[str] | None = None, start: bool = True) -> Node:
        made.append(env.add_node(tag, extra, start, workdir=tmp_path))
        return made[-1]
    yield make
    for n in made:
        n.destroy()
