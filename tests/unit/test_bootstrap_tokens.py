"""Bootstrap token authentication (cases of Kubernetes'
plugin/pkg/auth/authenticator/token/bootstrap/bootstrap_test.go)."""
import asyncio

import pytest

from apiserver.bootstraptoken import BootstrapTokens
from machinery import errors, kinds

NOW = 1_800_000_000.0
TOKEN = "abc123.0123456789abcdef"


def secret(name="bootstrap-token-abc123", type_="bootstrap.kubernetes.io/token", **data):
    s = kinds.new("Secret")
    s.metadata.name, s.metadata.namespace, s.type = name, "kube-system", type_
    base = {"token-id": "abc123", "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true"}
    base.update(data)
    for k, v in base.items():
        if v is not None:
            s.data[k] = v.encode()
    return s


def authn(*secrets):
    objs = {(s.metadata.namespace, s.metadata.name): s for s in secrets}

    async def get(kind, ns, name):
        assert kind == "Secret"
        return objs.get((ns, name))
    return BootstrapTokens(get, clock=lambda: NOW)


def test_valid_token_with_extra_groups():
    who = asyncio.run(authn(secret(**{"auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
                                      "expiration": "2030-01-01T00:00:00Z"})).token(TOKEN))
    assert who.name == "system:bootstrap:abc123"
    assert who.groups == ("system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token",
                          "system:authenticated")


def test_other_tokens_are_not_ours():
    assert asyncio.run(authn(secret()).token("eyJhbGciOi.x.y")) is None
    assert asyncio.run(authn(secret()).token("ABC123.0123456789abcdef")) is None


@pytest.mark.parametrize("s", [
    None,
    secret(**{"token-secret": "ffffffffffffffff"}),
    secret(type_="Opaque"),
    secret(**{"expiration": "2020-01-01T00:00:00Z"}),
    secret(**{"expiration": "soon"}),
    secret(**{"usage-bootstrap-authentication": None}),
    secret(**{"auth-extra-groups": "system:masters"}),
])
def test_refusals_are_401(s):
    with pytest.raises(errors.Unauthorized):
        asyncio.run(authn(*([s] if s else [])).token(TOKEN))


async def test_token_cleaner_deletes_expired_bootstrap_tokens_only():
    from controllers.tokencleaner import TokenCleaner
    from tests.unit.test_controller_helpers import harness
    async with harness(lambda h: TokenCleaner(h.client, h.factory, clock=lambda: NOW)) as (h, c):
        await h.client.create(secret("bootstrap-token-old111", **{"expiration": "2020-01-01T00:00:00Z"}))
        await h.client.create(secret("bootstrap-token-new222", **{"expiration": "2030-01-01T00:00:00Z"}))
        await h.client.create(secret("bootstrap-token-ever33"))
        await h.client.create(secret("plain", type_="Opaque", **{"expiration": "2020-01-01T00:00:00Z"}))
        await h.settle()
        for name in ("bootstrap-token-old111", "bootstrap-token-new222", "bootstrap-token-ever33", "plain"):
            await c.sync(f"kube-system/{name}")
        await h.settle()
        left = {s.metadata.name for s in h.client.objects("Secret")}
        assert left == {"bootstrap-token-new222", "bootstrap-token-ever33", "plain"}
