"""Encryption at rest: what the apiserver writes to etcd for Secrets (and
any other resource the operator names) is encrypted, as Kubernetes'
`--encryption-provider-config` does it (apiserver/pkg/storage/value/encrypt,
apiserver/pkg/server/options/encryptionconfig).

The configuration is Kubernetes' own file format:

    apiVersion: apiserver.config.k8s.io/v1
    kind: EncryptionConfiguration
    resources:
      - resources: [secrets]
        providers:
          - aesgcm: {keys: [{name: key1, secret: <base64 of 16, 24 or 32 bytes>}]}
          - identity: {}

Providers are aesgcm, aescbc (32-byte keys), secretbox (32-byte keys,
XSalsa20-Poly1305) and identity. The first provider of a resource encrypts
every write; all of them are tried on reads, by the prefix Kubernetes writes
in front of each stored value: `k8s:enc:<provider>:v1:<keyname>:` followed
by the nonce/IV and the ciphertext (identity: no prefix, plaintext). AES-GCM
authenticates the etcd key as additional data, so a value copied to another
key does not decrypt.

Key rotation, as in Kubernetes: (1) add the new key second in the
provider's `keys` on every apiserver and restart them (each can now read
it); (2) move it first and restart (new writes use it); (3) rewrite every
Secret, e.g. `kctl get secrets -A -o json | kctl replace -f -` (a value read
with a key other than the first is written again even when unchanged,
see `Transformer.from_storage`'s `stale`); (4) remove the old key.
Turning encryption off is the same dance with `identity` first.

Default (no `--encryption-provider-config`): like k3s's secrets encryption,
the apiserver keeps its own configuration in DEFAULT_PATH and writes one
with a fresh random AES-GCM key there (mode 0600) the first time it starts,
so Secrets are never stored in plaintext unless the operator asks for it
with an `identity`-first file. A file named on the command line must exist.
Everything here is synchronous and pure apart from load/generate; storage.py
calls `for_key(key)` on every value it writes or reads.
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import pathlib
import secrets as pysecrets
from dataclasses import dataclass

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
import nacl.exceptions
import nacl.secret

from machinery import errors, kinds

log = logging.getLogger(__name__)

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
DEFAULT_PATH = pathlib.Path("/var/lib/kctl/apiserver/encryption-config.yaml")
KEY_SIZES = {"aesgcm": (16, 24, 32), "aescbc": (32,), "secretbox": (32,)}
PROVIDERS = ("aesgcm", "aescbc", "secretbox", "identity")


class EncryptionConfigError(errors.ConfigError):
    """The encryption configuration file is missing or wrong."""


class TransformError(errors.ApiError):
    """A stored value cannot be decrypted (wrong or missing key): an
    InternalError naming the etcd key, as Kubernetes reports it."""


# ----------------------------------------------------------------- ciphers

class _AESGCM:
    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, ctx: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plain, ctx)

    def open(self, body: bytes, ctx: bytes) -> bytes:
        if len(body) < 12 + 16:
            raise ValueError("the stored data was shorter than the required size")
        try:
            return self._aead.decrypt(body[:12], body[12:], ctx)
        except InvalidTag:
            raise ValueError("cipher: message authentication failed") from None


class _AESCBC:
    def __init__(self, key: bytes):
        self._key = key

    def seal(self, plain: bytes, ctx: bytes) -> bytes:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        enc = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        return iv + enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()

    def open(self, body: bytes, ctx: bytes) -> bytes:
        if len(body) < 32 or len(body) % 16:
            raise ValueError("the stored data is not a multiple of the block size")
        dec = Cipher(algorithms.AES(self._key), modes.CBC(body[:16])).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(dec.update(body[16:]) + dec.finalize()) + unpadder.finalize()
        except ValueError:
            raise ValueError("invalid PKCS7 data (empty or not padded)") from None


class _SecretBox:
    def __init__(self, key: bytes):
        self._box = nacl.secret.SecretBox(key)

    def seal(self, plain: bytes, ctx: bytes) -> bytes:
        return bytes(self._box.encrypt(plain))            # 24-byte nonce + box

    def open(self, body: bytes, ctx: bytes) -> bytes:
        try:
            return self._box.decrypt(body)
        except nacl.exceptions.CryptoError:
            raise ValueError("output array too small for encrypted data") from None


_CIPHERS = {"aesgcm": _AESGCM, "aescbc": _AESCBC, "secretbox": _SecretBox}


@dataclass(frozen=True)
class _Provider:
    prefix: bytes          # b"" for identity
    cipher: object | None  # None for identity


# ------------------------------------------------------------- transformer

class Transformer:
    """The providers of one resource, in order: the first writes."""

    def __init__(self, providers: list[_Provider]):
        self.providers = providers

    def to_storage(self, plain: bytes, key: bytes) -> bytes:
        first = self.providers[0]
        if first.cipher is None:
            return plain
        return first.prefix + first.cipher.seal(plain, key)

    def from_storage(self, stored: bytes, key: bytes) -> tuple[bytes, bool]:
        """(plaintext, stale): stale when a provider other than the first read
        it, so the next update rewrites it even if nothing changed."""
        for i, p in enumerate(self.providers):
            if p.cipher is None:
                continue
            if stored.startswith(p.prefix):
                try:
                    return p.cipher.open(stored[len(p.prefix):], key), i != 0
                except ValueError as exc:
                    raise _failed(key, str(exc)) from None
        identity = next((i for i, p in enumerate(self.providers) if p.cipher is None), None)
        if identity is None or stored.startswith(b"k8s:enc:"):
            raise _failed(key, "no matching prefix found")
        return stored, identity != 0


def _failed(key: bytes, why: str) -> TransformError:
    return TransformError(f'Internal error occurred: unable to transform key "{key.decode(errors="replace")}": {why}')


class EncryptionConfig:
    """Transformers by etcd key prefix (`/registry/secrets/`)."""

    def __init__(self, by_prefix: dict[bytes, Transformer], source: str = ""):
        self.by_prefix = by_prefix
        self.source = source

    def for_key(self, key: bytes) -> Transformer | None:
        for prefix, t in self.by_prefix.items():
            if key.startswith(prefix):
                return t
        return None


# ---------------------------------------------------------------- loading

def _resource_kinds(name: str, where: str) -> list[kinds.KindInfo]:
    if name == "*.*":
        return list(kinds.KINDS)
    if name.startswith("*."):
        group = name[2:]
        found = [k for k in kinds.KINDS if k.group == group]
    else:
        plural, _, group = name.partition(".")
        found = [k for k in kinds.KINDS if k.plural == plural and k.group == group]
    if not found:
        raise EncryptionConfigError(f'{where}: resource "{name}" is not served by kctl')
    return found


def _providers(item, where: str) -> list[_Provider]:
    """One element of `providers`: identity, or one _Provider per key."""
    if not isinstance(item, dict) or len(item) != 1:
        raise EncryptionConfigError(f"{where}: exactly one provider must be specified in each element "
                                    "(split them into separate list elements)")
    (name, body), = item.items()
    if name == "identity":
        return [_Provider(b"", None)]
    if name not in KEY_SIZES:
        raise EncryptionConfigError(f'{where}: unsupported provider "{name}" (kctl supports '
                                    + ", ".join(PROVIDERS) + ")")
    keys = (body or {}).get("keys") if isinstance(body, dict) else None
    if not keys:
        raise EncryptionConfigError(f"{where}.{name}.keys: Required value: at least one key is required")
    return [_key(name, k, f"{where}.{name}.keys[{i}]") for i, k in enumerate(keys)]


def _key(provider: str, key, where: str) -> _Provider:
    if not isinstance(key, dict) or not key.get("name") or not key.get("secret"):
        raise EncryptionConfigError(f"{where}: a key needs a name and a secret")
    if ":" in key["name"]:
        raise EncryptionConfigError(f"{where}.name: Invalid value: {key['name']!r}: may not contain ':'")
    try:
        raw = base64.b64decode(key["secret"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise EncryptionConfigError(f"{where}.secret: Invalid value: REDACTED: secrets must be base64 encoded")
    if len(raw) not in KEY_SIZES[provider]:
        raise EncryptionConfigError(f"{where}.secret: Invalid value: REDACTED: secret is not of the expected "
                                    f"length, got {len(raw)}, expected one of {list(KEY_SIZES[provider])}")
    return _Provider(f"k8s:enc:{provider}:v1:{key['name']}:".encode(), _CIPHERS[provider](raw))


def parse(doc, source: str = "") -> EncryptionConfig:
    """An EncryptionConfiguration document (already YAML-decoded)."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("apiVersion") != API_VERSION:
        raise EncryptionConfigError(f"{source}: not an {API_VERSION} {KIND}")
    by_prefix: dict[bytes, Transformer] = {}
    for i, entry in enumerate(doc.get("resources") or []):
        where = f"resources[{i}]"
        names, items = (entry or {}).get("resources"), (entry or {}).get("providers")
        if not names:
            raise EncryptionConfigError(f"{where}.resources: Required value: at least one resource is required")
        if not items:
            raise EncryptionConfigError(f"{where}.providers: Required value: at least one provider is required")
        providers: list[_Provider] = []
        for j, item in enumerate(items):
            providers += _providers(item, f"{where}.providers[{j}]")
        transformer = Transformer(providers)
        for j, name in enumerate(names):
            for info in _resource_kinds(name, f"{where}.resources[{j}]"):
                by_prefix.setdefault(f"/registry/{info.plural}/".encode(), transformer)  # the first entry wins
    return EncryptionConfig(by_prefix, source)


def load(path: str | os.PathLike) -> EncryptionConfig:
    try:
        text = pathlib.Path(path).read_text()
        doc = yaml.safe_load(text)
    except OSError as exc:
        raise EncryptionConfigError(f"cannot read the encryption configuration {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise EncryptionConfigError(f"{path}: not YAML: {exc}") from exc
    return parse(doc, str(path))


def new_config_text() -> str:
    key = base64.b64encode(pysecrets.token_bytes(32)).decode()
    return yaml.safe_dump({"apiVersion": API_VERSION, "kind": KIND, "resources": [
        {"resources": ["secrets"], "providers": [{"aesgcm": {"keys": [{"name": "key1", "secret": key}]}},
                                                 {"identity": {}}]}]}, sort_keys=False)


def load_or_generate(path: str | os.PathLike | None) -> EncryptionConfig:
    """`path` as given on the command line, or the default file, generated
    (atomically, 0600: two apiservers starting at once agree on one key)
    when it does not exist yet."""
    if path is not None:
        return load(path)
    target = DEFAULT_PATH
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = target.with_name(f".{target.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new_config_text())
            try:
                os.link(tmp, target)           # fails if another apiserver was first: use its key
                log.info("generated a new encryption key in %s", target)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        except OSError as exc:
            raise EncryptionConfigError(f"cannot write the encryption configuration {target}: "
                                        f"{exc.strerror}") from exc
    return load(target)
