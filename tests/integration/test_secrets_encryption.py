"""Secrets are encrypted at rest: a real apiserver on a real etcd, with etcd
read directly (its JSON gateway, tests.cluster.Etcd.get_raw) to see what is
really stored. A wrong key fails the Secret reads cleanly and nothing else;
rotation by re-writing moves a Secret to the new key."""
from __future__ import annotations

import base64

import pytest

from machinery import errors, kinds
from machinery.client import Client
from tests.cluster import ApiServer

PLAIN = "correct-horse-battery-staple"
RAW_KEY = "/registry/secrets/default/db"


def _config(path, *keys):
    providers = "\n".join(f"              - name: {n}\n                secret: {base64.b64encode(k * 32).decode()}"
                          for n, k in keys)
    path.write_text(f"""apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm:
          keys:
{providers}
      - identity: {{}}
""")


def _secret(name="db"):
    s = kinds.new("Secret")
    s.metadata.name, s.metadata.namespace = name, "default"
    s.string_data["password"] = PLAIN
    return s


@pytest.fixture
def enc_file(tmp_path):
    path = tmp_path / "enc.yaml"
    _config(path, ("key1", b"a"))
    return path


@pytest.fixture
def encrypted_api(etcd, tmp_path, enc_file):
    api = ApiServer(etcd, tmp_path, extra_args=["--encryption-provider-config", str(enc_file)])
    api.start()
    try:
        yield api
    finally:
        api.stop()


async def test_secret_values_in_etcd_are_aesgcm_ciphertext(encrypted_api, etcd):
    async with Client(encrypted_api.target) as c:
        created = await c.create(_secret())
        assert dict(created.data) == {"password": PLAIN.encode()} and not created.string_data
        got = await c.get("Secret", "db", "default")
        assert got.data["password"] == PLAIN.encode() and got.type == "Opaque"
        items, _ = await c.list("Secret", "default")
        assert [i.data["password"] for i in items] == [PLAIN.encode()]
        cm = kinds.new("ConfigMap")
        cm.metadata.name, cm.metadata.namespace = "settings", "default"
        cm.data["mode"] = "visible-config"
        await c.create(cm)
    raw = etcd.get_raw(RAW_KEY)
    assert raw.startswith(b"k8s:enc:aesgcm:v1:key1:")
    assert PLAIN.encode() not in raw and base64.b64encode(PLAIN.encode()) not in raw and b"password" not in raw
    assert b"visible-config" in etcd.get_raw("/registry/configmaps/default/settings")   # only Secrets are encrypted


async def test_a_wrong_key_fails_secret_reads_cleanly_and_nothing_else(encrypted_api, etcd, enc_file):
    async with Client(encrypted_api.target) as c:
        await c.create(_secret())
    _config(enc_file, ("key1", b"b"))                      # same name, different key material
    encrypted_api.restart()
    async with Client(encrypted_api.target) as c:
        with pytest.raises(errors.ApiError) as exc:
            await c.get("Secret", "db", "default")
        assert exc.value.reason == "InternalError"
        assert exc.value.message.endswith(
            f'unable to transform key "{RAW_KEY}": cipher: message authentication failed')
        with pytest.raises(errors.ApiError, match="unable to transform key"):
            await c.list("Secret", "default")
        ns = await c.get("Namespace", "default")            # everything else is served
        assert ns.status.phase == "Active"
        await c.create(_secret("fresh"))                    # and new Secrets use the new key
        assert (await c.get("Secret", "fresh", "default")).data["password"] == PLAIN.encode()
    assert encrypted_api.running


async def test_rotation_by_rewriting(encrypted_api, etcd, enc_file):
    async with Client(encrypted_api.target) as c:
        await c.create(_secret())
    _config(enc_file, ("key2", b"c"), ("key1", b"a"))     # new key first, old one still readable
    encrypted_api.restart()
    async with Client(encrypted_api.target) as c:
        got = await c.get("Secret", "db", "default")
        assert got.data["password"] == PLAIN.encode()
        assert etcd.get_raw(RAW_KEY).startswith(b"k8s:enc:aesgcm:v1:key1:")
        rewritten = await c.update(got)                     # unchanged, yet written again with key2
        assert int(rewritten.metadata.resource_version) > int(got.metadata.resource_version)
        assert etcd.get_raw(RAW_KEY).startswith(b"k8s:enc:aesgcm:v1:key2:")
        again = await c.update(rewritten)                   # now current: a true no-op
        assert again.metadata.resource_version == rewritten.metadata.resource_version
    _config(enc_file, ("key2", b"c"))                      # the old key can go
    encrypted_api.restart()
    async with Client(encrypted_api.target) as c:
        assert (await c.get("Secret", "db", "default")).data["password"] == PLAIN.encode()


async def test_secrets_are_encrypted_without_any_flag(client, etcd):
    """The default: the apiserver's generated key file (encryption.DEFAULT_PATH)."""
    await client.create(_secret())
    raw = etcd.get_raw(RAW_KEY)
    assert raw.startswith(b"k8s:enc:aesgcm:v1:") and PLAIN.encode() not in raw


def test_a_bad_configuration_stops_the_apiserver_with_the_field(etcd, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
                   "resources: [{resources: [secrets], providers: [{aescbc: {keys: [{name: k, secret: eHh4}]}}]}]\n")
    api = ApiServer(etcd, tmp_path, extra_args=["--encryption-provider-config", str(bad)])
    with pytest.raises(RuntimeError, match="apiserver exited with 1"):
        api.start(timeout=15)
    api.stop()
    assert "secret is not of the expected length, got 3, expected one of [32]" in api.log_tail()


async def test_watchers_see_plaintext_secrets(encrypted_api):
    async with Client(encrypted_api.target) as c:
        _, rv = await c.list("Secret", "default")
        stream = c.watch("Secret", "default", resource_version=rv)
        await c.create(_secret())
        async for ev in stream:
            assert ev.type == "ADDED" and ev.object.data["password"] == PLAIN.encode()
            break
