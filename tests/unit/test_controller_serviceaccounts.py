"""The serviceaccounts-controller and the root-ca-cert-publisher on the FakeClient."""
from machinery import codec, kinds

from controllers.serviceaccounts import DESCRIPTION, RootCACertPublisher, ServiceAccountsController
from tests.unit.test_controller_helpers import harness


def namespace(name, terminating=False):
    ns = kinds.new("Namespace")
    ns.metadata.name = name
    if terminating:
        ns.status.phase = "Terminating"
    return ns


async def test_default_account_in_every_active_namespace_and_recreated():
    async with harness(lambda h: ServiceAccountsController(h.client, h.factory)) as (h, c):
        await h.client.create(namespace("team-a"))
        await h.client.create(namespace("leaving", terminating=True))
        await h.settle()
        for key in ("team-a", "leaving"):
            await c.sync(key)
        await h.settle()
        assert h.client.stored("ServiceAccount", "default", "team-a") is not None
        assert h.client.stored("ServiceAccount", "default", "leaving") is None
        await c.sync("team-a")                               # idempotent: nothing more to do
        await h.client.delete("ServiceAccount", "default", "team-a")
        await h.settle()
        await c.sync("team-a")
        assert h.client.stored("ServiceAccount", "default", "team-a") is not None


async def test_root_ca_configmap_published_and_put_back():
    async with harness(lambda h: RootCACertPublisher(h.client, h.factory, root_ca="PEM")) as (h, c):
        await h.client.create(namespace("team-a"))
        await h.settle()
        await c.sync("team-a")
        await h.settle()
        cm = h.client.stored("ConfigMap", "kube-root-ca.crt", "team-a")
        assert dict(cm.data) == {"ca.crt": "PEM"}
        assert cm.metadata.annotations["kubernetes.io/description"] == DESCRIPTION
        changed = codec.copy(cm)
        changed.data["ca.crt"] = "tampered"
        await h.client.update(changed)
        await h.settle()
        await c.sync("team-a")
        assert dict(h.client.stored("ConfigMap", "kube-root-ca.crt", "team-a").data) == {"ca.crt": "PEM"}


async def test_a_refused_create_is_an_error_unless_the_namespace_is_terminating():
    import pytest
    from machinery import errors
    async with harness(lambda h: ServiceAccountsController(h.client, h.factory)) as (h, c):
        await h.client.create(namespace("team-a"))
        await h.settle()
        h.client.fail_next("create", errors.Forbidden(
            'serviceaccounts is forbidden: User "system:kube-controller-manager" cannot create resource '
            '"serviceaccounts" in API group "" in the namespace "team-a"'))
        with pytest.raises(errors.Forbidden):                # RBAC: retried by the queue and logged
            await c.sync("team-a")
        h.client.fail_next("create", errors.Forbidden(
            'serviceaccounts "default" is forbidden: unable to create new content in namespace team-a '
            'because it is being terminated'))
        await c.sync("team-a")                               # the namespace goes: nothing to do
        assert h.client.stored("ServiceAccount", "default", "team-a") is None
