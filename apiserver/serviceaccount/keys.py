"""The ServiceAccount token keys: an RSA private key that signs, public keys that verify.

Kubernetes' flags: `--service-account-signing-key-file` (the private key,
PEM) and `--service-account-key-file` (public or private keys, PEM, several
allowed; the signing key's public half is always among them). kubeadm keeps
them as `sa.key` / `sa.pub` in the cert dir. When neither flag is given the
apiserver uses `<dir>/sa.key` and `<dir>/sa.pub`, generating them (RSA 2048,
0600, atomically: two apiservers starting at once agree on one pair) when
missing; `dir` is the cert dir once there is one, else DEFAULT_DIR, next to
the generated encryption configuration.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import pathlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from machinery import errors

log = logging.getLogger(__name__)

DEFAULT_DIR = pathlib.Path("/var/lib/kctl/apiserver")
SIGNING_KEY, PUBLIC_KEY = "sa.key", "sa.pub"


class KeyFileError(errors.ConfigError):
    """A key file is missing or not a PEM key."""


@dataclass(frozen=True)
class KeySet:
    signing: rsa.RSAPrivateKey
    public: tuple            # every key a token may be signed with (the signing key's public half first)

    @property
    def kid(self) -> str:
        return key_id(self.signing.public_key())


def key_id(public) -> str:
    """Kubernetes' keyIDFromPublicKey: base64url(sha256(DER of the public key)), no padding."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


def _read_pem(path: pathlib.Path, private: bool):
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read service account key file {path}: {exc.strerror}") from exc
    try:
        if private or b"PRIVATE KEY" in data:
            key = serialization.load_pem_private_key(data, password=None)
            return key if private else key.public_key()
        return serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM-encoded key: {exc}") from exc


def generate(directory: pathlib.Path) -> None:
    """sa.key + sa.pub in directory unless sa.key exists (first writer wins)."""
    target = directory / SIGNING_KEY
    if target.exists():
        return
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = directory / f".{SIGNING_KEY}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    try:
        os.link(tmp, target)
        log.info("generated a service account signing key in %s", target)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    pub = _read_pem(target, True).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    tmp_pub = directory / f".{PUBLIC_KEY}.{os.getpid()}"
    tmp_pub.write_bytes(pub)
    os.replace(tmp_pub, directory / PUBLIC_KEY)


def load(signing_file: str | None = None, key_files: list[str] | tuple = (),
         directory: str | os.PathLike | None = None) -> KeySet:
    """The key set from the flags, or from (generated) sa.key/sa.pub in directory."""
    if signing_file is None:
        d = pathlib.Path(directory) if directory is not None else DEFAULT_DIR
        try:
            generate(d)
        except OSError as exc:
            raise KeyFileError(f"cannot create the service account key pair in {d}: {exc.strerror}; "
                               "give --service-account-signing-key-file") from exc
        signing_file = str(d / SIGNING_KEY)
        key_files = [str(d / PUBLIC_KEY), *key_files]
    signing = _read_pem(pathlib.Path(signing_file), True)
    if not isinstance(signing, rsa.RSAPrivateKey):
        raise KeyFileError(f"{signing_file}: the service account signing key must be an RSA key")
    public = [signing.public_key()]
    for f in key_files:
        k = _read_pem(pathlib.Path(f), False)
        if key_id(k) not in {key_id(p) for p in public}:
            public.append(k)
    return KeySet(signing, tuple(public))
