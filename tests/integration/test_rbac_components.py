"""kctl's own components under their own identities, with the default
authorizers enforcing: the real scheduler as system:kube-scheduler, the
controller manager as system:kube-controller-manager and hollow node
agents (the real agent code, fake containers) as system:node:NAME in
system:nodes — each through its own client impersonating that identity,
so the apiserver applies RBAC, the Node authorizer and NodeRestriction to
it exactly as it will with certificates. A Deployment whose pods use a
Secret and a ConfigMap rolls out, gets Endpoints, scales down and is
deleted; the audit log then shows no request of theirs refused."""
import asyncio
import json

from harness.control_plane import ApiServer
from kubectlish.edit import mutate_object
from machinery import callmeta, kinds
from machinery.client import Client
from nodeagent.main import build_agent
from scheduler.scheduler import Scheduler
from tests.integration.test_controllers_sim import ControlPlane, deployment, until

IDENTITIES = {"scheduler": ("system:kube-scheduler", ()), "controllers": ("system:kube-controller-manager", ()),
              "n0": ("system:node:n0", ("system:nodes",)), "n1": ("system:node:n1", ("system:nodes",))}


def as_(target, who):
    user, groups = IDENTITIES[who]
    return Client(target, timeout=30, metadata=callmeta.impersonation(user, groups))


async def test_components_work_under_their_own_identities(etcd, tmp_path):
    audit = tmp_path / "audit.log"
    with ApiServer(etcd, tmp_path, extra_args=["--audit-log-path", str(audit)]) as api:
        async with Client(api.target, timeout=30) as admin:
            clients = {who: as_(api.target, who) for who in IDENTITIES}
            tasks = [asyncio.create_task(Scheduler(clients["scheduler"]).run())]
            cp = ControlPlane(clients["controllers"])
            cp.start_controllers()
            agents = [build_agent(clients[n], node_name=n, node_ip=f"10.99.0.{i + 1}", root_dir=str(tmp_path / n),
                                  runtime="fake", heartbeat_interval=0.5) for i, n in enumerate(("n0", "n1"))]
            tasks += [asyncio.create_task(a.run()) for a in agents]
            failure = None
            try:
                await _exercise(admin)
            except AssertionError as exc:         # the refusals below say why; report them first
                failure = exc
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await cp.stop()
                for c in clients.values():
                    await c.close()
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    users = {u for u, _ in IDENTITIES.values()}
    acting = [e for e in events if e.get("impersonatedUser", {}).get("username") in users]
    refused = [(e["impersonatedUser"]["username"], e["verb"], e["requestURI"], e.get("objectRef"))
               for e in acting if e["responseStatus"]["code"] in (401, 403)]
    assert refused == []
    if failure is not None:
        raise failure
    assert {e["impersonatedUser"]["username"] for e in acting} == users        # every one of them wrote


async def _exercise(admin):
    secret = kinds.new("Secret")
    secret.metadata.name, secret.metadata.namespace = "creds", "default"
    secret.string_data["k"] = "v"
    await admin.create(secret)
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = "conf", "default"
    cm.data["a"] = "b"
    await admin.create(cm)
    d = deployment(replicas=4)
    spec = d.spec.template.spec
    spec.volumes.add(name="s").secret.secret_name = "creds"
    spec.containers[0].env_from.add().config_map_ref.name = "conf"
    spec.containers[0].volume_mounts.add(name="s", mount_path="/s")
    svc = kinds.new("Service")
    svc.metadata.name, svc.metadata.namespace = "web", "default"
    svc.spec.selector["app"] = "web"
    svc.spec.ports.add(name="http", port=80, protocol="TCP").target_port.str_val = "http"
    await admin.create(svc)
    await admin.create(d)

    async def ready(n):
        pods, _ = await admin.list("Pod", "default")
        live = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
        return len(live) == n and all(p.spec.node_name and any(c.type == "Ready" and c.status == "True"
                                                               for c in p.status.conditions) for p in live)
    await until(lambda: ready(4), "4 pods Ready on the hollow nodes")

    async def endpoints():
        try:
            ep = await admin.get("Endpoints", "web", "default")
        except Exception:  # noqa: BLE001 - not yet
            return False
        return sum(len(s.addresses) for s in ep.subsets) == 4
    await until(endpoints, "Endpoints of the 4 pods")
    # the deployment controller writes its status meanwhile: get, change, update, again on a conflict
    await mutate_object(admin, "Deployment", "web", "default", lambda d: setattr(d.spec, "replicas", 1))

    async def gone_to(n):
        pods, _ = await admin.list("Pod", "default")
        return len(pods) == n
    await until(lambda: gone_to(1), "scaled down to 1 (agents finished the deletions)")
    await admin.delete("Deployment", "web", "default")
    await until(lambda: gone_to(0), "garbage collector removed the rest")
