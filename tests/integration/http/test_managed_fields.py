"""managedFields recorded by writes over gRPC exactly as by writes over HTTP:
`kctl apply` (gRPC, field manager kctl-client-side-apply), the real
`kubectl edit` (HTTP, kubectl-edit), a status update by a component (its
user agent, subresource status) and `kctl label` (the user agent, "kctl"),
read back with `kubectl get --show-managed-fields` (and kctl's, which hides
them by default as kubectl does)."""
from __future__ import annotations

import json

import yaml

from machinery.client import Client
from tests.integration.http.test_kubectl import DEPLOY, ns
from tests.integration.kctl_helpers import call, kctl


def managed(kube, n: str) -> dict[tuple[str, str, str], dict]:
    md = json.loads(kube.ok("get", "deploy", "web", "-n", n, "-o", "json", "--show-managed-fields"))["metadata"]
    return {(e["manager"], e["operation"], e.get("subresource", "")): e["fieldsV1"] for e in md["managedFields"]}


def test_grpc_and_http_writes_record_their_managers(kube, tmp_path):
    n = ns(kube, "mf")
    server = kube.apiserver.target
    r = kctl(server, "apply", "-n", n, "-f", "-", input=DEPLOY)
    assert r.code == 0 and r.out == "deployment.apps/web created\n", r
    [(key, fields)] = managed(kube, n).items()
    assert key == ("kctl-client-side-apply", "Update", "")
    spec = fields["f:spec"]
    assert {"f:replicas", "f:selector", "f:template"} <= set(spec)
    assert set(spec["f:template"]["f:spec"]["f:containers"]) == {'k:{"name":"app"}', 'k:{"name":"sidecar"}'}

    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/replicas: 2/replicas: 7/" "$1"\n')
    editor.chmod(0o755)
    e = kube.kubectl("edit", "deploy/web", "-n", n, env={"KUBE_EDITOR": str(editor)})
    assert e.returncode == 0, e.stderr
    got = managed(kube, n)
    assert got[("kubectl-edit", "Update", "")] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in got[("kctl-client-side-apply", "Update", "")]["f:spec"]

    changed = yaml.safe_load(DEPLOY)
    changed["spec"]["replicas"] = 3            # kctl apply takes replicas back (an update over gRPC)
    assert kctl(server, "apply", "-n", n, "-f", "-", input=yaml.safe_dump(changed)).out == \
        "deployment.apps/web configured\n"
    got = managed(kube, n)
    assert ("kubectl-edit", "Update", "") not in got
    assert "f:replicas" in got[("kctl-client-side-apply", "Update", "")]["f:spec"]

    assert kctl(server, "label", "deploy/web", "-n", n, "tier=x").code == 0
    assert managed(kube, n)[("kctl", "Update", "")] == {"f:metadata": {"f:labels": {"f:tier": {}}}}
    shown = yaml.safe_load(kctl(server, "get", "deploy/web", "-n", n, "-o", "yaml", "--show-managed-fields").out)
    assert {e["manager"] for e in shown["metadata"]["managedFields"]} == {"kctl-client-side-apply", "kctl"}
    assert "managedFields" not in yaml.safe_load(kctl(server, "get", "deploy/web", "-n", n, "-o", "yaml").out)[
        "metadata"]                                              # hidden by default, as kubectl does

    async def status(_):
        async with Client(server, user_agent="kctl-controller-manager") as c:
            d = await c.get("Deployment", "web", n)
            d.status.observed_generation = d.metadata.generation
            return await c.update_status(d)
    call(server, status)
    assert managed(kube, n)[("kctl-controller-manager", "Update", "status")] == \
        {"f:status": {".": {}, "f:observedGeneration": {}}}    # status was absent: the writer made it
