"""apiserver/encryption.py: Kubernetes' EncryptionConfiguration, its
providers and stored-value prefixes, rotation staleness, clean failures."""
import base64
import os

import pytest
import yaml

from apiserver import encryption

KEY = b"/registry/secrets/default/db"
K32 = base64.b64encode(b"k" * 32).decode()
K32B = base64.b64encode(b"j" * 32).decode()


def config(*providers, resources=("secrets",)):
    return encryption.parse({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                             "resources": [{"resources": list(resources), "providers": list(providers)}]})


def keyed(name, *keys):
    return {name: {"keys": [{"name": n, "secret": s} for n, s in keys]}}


@pytest.mark.parametrize("provider", ["aesgcm", "aescbc", "secretbox"])
def test_each_provider_round_trips_with_kubernetes_prefix(provider):
    t = config(keyed(provider, ("key1", K32))).for_key(KEY)
    stored = t.to_storage(b"plain secret", KEY)
    assert stored.startswith(f"k8s:enc:{provider}:v1:key1:".encode())
    assert b"plain secret" not in stored
    assert t.from_storage(stored, KEY) == (b"plain secret", False)
    assert t.to_storage(b"plain secret", KEY) != stored          # a fresh nonce/IV per write


def test_aesgcm_accepts_16_24_32_byte_keys_and_binds_the_etcd_key():
    for n in (16, 24, 32):
        t = config(keyed("aesgcm", ("k", base64.b64encode(os.urandom(n)).decode()))).for_key(KEY)
        assert t.from_storage(t.to_storage(b"x", KEY), KEY)[0] == b"x"
    t = config(keyed("aesgcm", ("key1", K32))).for_key(KEY)
    moved = t.to_storage(b"x", KEY)
    with pytest.raises(encryption.TransformError,
                       match='unable to transform key "/registry/secrets/other/db": cipher: message authentication failed'):
        t.from_storage(moved, b"/registry/secrets/other/db")


def test_only_configured_resources_are_transformed():
    cfg = config(keyed("aesgcm", ("key1", K32)))
    assert cfg.for_key(b"/registry/configmaps/default/x") is None
    assert cfg.for_key(b"/registry/secrets/default/x") is not None
    everything = config(keyed("aesgcm", ("key1", K32)), resources=("*.*",))
    assert everything.for_key(b"/registry/deployments/default/x") is not None


def test_wrong_key_fails_cleanly():
    written = config(keyed("aesgcm", ("key1", K32))).for_key(KEY).to_storage(b"x", KEY)
    other = config(keyed("aesgcm", ("key1", K32B))).for_key(KEY)
    with pytest.raises(encryption.TransformError) as exc:
        other.from_storage(written, KEY)
    assert exc.value.message == ('Internal error occurred: unable to transform key '
                                 '"/registry/secrets/default/db": cipher: message authentication failed')
    renamed = config(keyed("aesgcm", ("key2", K32))).for_key(KEY)
    with pytest.raises(encryption.TransformError, match="no matching prefix found"):
        renamed.from_storage(written, KEY)


def test_rotation_reads_old_keys_marks_them_stale_and_writes_with_the_first():
    old = config(keyed("aesgcm", ("key1", K32))).for_key(KEY)
    written = old.to_storage(b"x", KEY)
    rotated = config(keyed("aesgcm", ("key2", K32B), ("key1", K32))).for_key(KEY)
    assert rotated.from_storage(written, KEY) == (b"x", True)
    fresh = rotated.to_storage(b"x", KEY)
    assert fresh.startswith(b"k8s:enc:aesgcm:v1:key2:") and rotated.from_storage(fresh, KEY) == (b"x", False)


def test_identity_reads_plaintext_and_an_identity_first_config_writes_it():
    enc = config(keyed("aesgcm", ("key1", K32)), {"identity": {}}).for_key(KEY)
    assert enc.from_storage(b"\x0a\x02v1", KEY) == (b"\x0a\x02v1", True)      # written before encryption
    plain = config({"identity": {}}, keyed("aesgcm", ("key1", K32))).for_key(KEY)
    assert plain.to_storage(b"x", KEY) == b"x"
    assert plain.from_storage(enc.to_storage(b"y", KEY), KEY) == (b"y", True)
    strict = config(keyed("aesgcm", ("key1", K32))).for_key(KEY)
    with pytest.raises(encryption.TransformError, match="no matching prefix found"):
        strict.from_storage(b"plaintext", KEY)


@pytest.mark.parametrize("doc,message", [
    ({"kind": "Nope"}, "not an apiserver.config.k8s.io/v1 EncryptionConfiguration"),
    ({"resources": [{"resources": [], "providers": [{"identity": {}}]}]},
     "resources[0].resources: Required value"),
    ({"resources": [{"resources": ["secrets"], "providers": []}]}, "resources[0].providers: Required value"),
    ({"resources": [{"resources": ["secrets"], "providers": [{"identity": {}, "aesgcm": {}}]}]},
     "exactly one provider must be specified"),
    ({"resources": [{"resources": ["secrets"], "providers": [{"kms": {}}]}]}, 'unsupported provider "kms"'),
    ({"resources": [{"resources": ["secrets"], "providers": [keyed("aescbc", ("k", base64.b64encode(b"x" * 16).decode()))]}]},
     "resources[0].providers[0].aescbc.keys[0].secret: Invalid value: REDACTED: secret is not of the expected "
     "length, got 16, expected one of [32]"),
    ({"resources": [{"resources": ["secrets"], "providers": [keyed("aesgcm", ("k", "not base64!"))]}]},
     "secrets must be base64 encoded"),
    ({"resources": [{"resources": ["widgets"], "providers": [{"identity": {}}]}]},
     'resources[0].resources[0]: resource "widgets" is not served by kctl'),
])
def test_bad_configurations_name_the_field(doc, message):
    doc = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration", **doc}
    with pytest.raises(encryption.EncryptionConfigError) as exc:
        encryption.parse(doc, "enc.yaml")
    assert message in str(exc.value)


def test_load_or_generate(tmp_path, monkeypatch):
    with pytest.raises(encryption.EncryptionConfigError, match="cannot read the encryption configuration"):
        encryption.load_or_generate(tmp_path / "missing.yaml")
    default = tmp_path / "apiserver" / "encryption-config.yaml"
    monkeypatch.setattr(encryption, "DEFAULT_PATH", default)
    first = encryption.load_or_generate(None)
    assert default.stat().st_mode & 0o777 == 0o600
    doc = yaml.safe_load(default.read_text())
    assert doc["resources"][0]["resources"] == ["secrets"]
    assert list(doc["resources"][0]["providers"][0]) == ["aesgcm"]
    stored = first.for_key(KEY).to_storage(b"x", KEY)
    again = encryption.load_or_generate(None)                   # the same key, not a new one
    assert again.for_key(KEY).from_storage(stored, KEY) == (b"x", False)
    assert [p.name for p in default.parent.iterdir()] == ["encryption-config.yaml"]
