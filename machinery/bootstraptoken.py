"""Bootstrap tokens (k8s.io/cluster-bootstrap), shared by the apiserver's
authenticator, the controller manager's token cleaner and bootstrap signer,
`kctl token` and `kctl join`.

A token `abcdef.0123456789abcdef` is `<token-id>.<token-secret>`; it lives
as a Secret of type `bootstrap.kubernetes.io/token` named
`bootstrap-token-<token-id>` in kube-system with the keys token-id,
token-secret, expiration (RFC 3339), usage-bootstrap-authentication,
usage-bootstrap-signing, auth-extra-groups and description. A token used
as a bearer token authenticates as `system:bootstrap:<token-id>` in
`system:bootstrappers` (plus its extra groups) until it expires.

The cluster-info ConfigMap in kube-public carries a kubeconfig with the
cluster's CA and server; the bootstrap signer adds `jws-kubeconfig-<id>`:
a detached JWS (RFC 7515 compact form with an empty payload, HS256 keyed
by the token secret, `kid` = token id) of that kubeconfig, so a joining
node that knows a token can check the ConfigMap was written by someone who
knows it too. The CA itself is then pinned by its hash: `sha256:<hex>` of
the certificate's DER SubjectPublicKeyInfo (kubeadm's pubkeypin).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import secrets as pyrandom

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from machinery.errors import ConfigError

SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
NAMESPACE = "kube-system"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
DEFAULT_EXTRA_GROUP = "system:bootstrappers:kubeadm:default-node-token"
TOKEN_ID, TOKEN_SECRET, EXPIRATION = "token-id", "token-secret", "expiration"
USAGE_PREFIX = "usage-bootstrap-"
USAGE_AUTH, USAGE_SIGNING = "usage-bootstrap-authentication", "usage-bootstrap-signing"
EXTRA_GROUPS, DESCRIPTION = "auth-extra-groups", "description"
USAGES = ("authentication", "signing")

CLUSTER_INFO_NAMESPACE, CLUSTER_INFO = "kube-public", "cluster-info"
KUBECONFIG_KEY, JWS_PREFIX = "kubeconfig", "jws-kubeconfig-"

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
ID_RE = re.compile(r"^[a-z0-9]{6}$")
GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class BadToken(ConfigError):
    """A token, token secret or cluster-info that breaks the rules above."""


# ----------------------------------------------------------------- tokens

def generate() -> str:
    def part(n):
        return "".join(pyrandom.choice(_ALPHABET) for _ in range(n))
    return f"{part(6)}.{part(16)}"


def parse(token: str) -> tuple[str, str]:
    """(id, secret) of a token; BadToken with kubeadm's message otherwise."""
    m = TOKEN_RE.match(token or "")
    if not m:
        raise BadToken(f"the bootstrap token {token!r} was not of the form {TOKEN_RE.pattern!r}")
    return m.group(1), m.group(2)


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def validate_groups(groups) -> None:
    for g in groups:
        if not GROUP_RE.match(g):
            raise BadToken(f"bootstrap group {g!r} is invalid (must match {GROUP_RE.pattern})")


def validate_usages(usages) -> None:
    bad = [u for u in usages if u not in USAGES]
    if bad:
        raise BadToken(f"invalid bootstrap token usage string: {','.join(bad)}, valid usage options: "
                       f"{','.join(USAGES)}")


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fill_secret(secret, token: str, *, ttl: float | None, now: float, usages=USAGES,
                groups=(DEFAULT_EXTRA_GROUP,), description: str = "") -> None:
    """Make `secret` (an empty Secret message) the token's Secret (kubeadm's BootstrapToken.ToSecret)."""
    token_id, token_secret = parse(token)
    validate_usages(usages)
    validate_groups(groups)
    secret.metadata.name, secret.metadata.namespace = secret_name(token_id), NAMESPACE
    secret.type = SECRET_TYPE
    data = {TOKEN_ID: token_id, TOKEN_SECRET: token_secret}
    if ttl:
        data[EXPIRATION] = rfc3339(now + ttl)
    for u in usages:
        data[USAGE_PREFIX + u] = "true"
    if groups:
        data[EXTRA_GROUPS] = ",".join(groups)
    if description:
        data[DESCRIPTION] = description
    for k, v in data.items():
        secret.data[k] = v.encode()


def data(secret, key: str) -> str:
    return secret.data[key].decode("utf-8", "replace") if key in secret.data else ""


def expiration(secret) -> float | None:
    """The expiry as a UNIX time; None for a token that never expires or whose
    expiration does not parse (Kubernetes treats an unparsable one as expired:
    see is_expired)."""
    text = data(secret, EXPIRATION)
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_expired(secret, now: float) -> bool:
    text = data(secret, EXPIRATION)
    if not text:
        return False
    when = expiration(secret)
    return when is None or when <= now


def token_of(secret) -> tuple[str, str] | None:
    """(id, secret) held by a valid bootstrap token Secret, else None
    (wrong type or name, malformed id/secret: the Secret is ignored)."""
    if secret.type != SECRET_TYPE or secret.metadata.namespace != NAMESPACE:
        return None
    tid, tsecret = data(secret, TOKEN_ID), data(secret, TOKEN_SECRET)
    if not ID_RE.match(tid) or secret.metadata.name != secret_name(tid) or not re.fullmatch("[a-z0-9]{16}", tsecret):
        return None
    return tid, tsecret


def usage(secret, name: str) -> bool:
    return data(secret, USAGE_PREFIX + name) == "true"


def extra_groups(secret) -> list[str]:
    return [g.strip() for g in data(secret, EXTRA_GROUPS).split(",") if g.strip()]


# --------------------------------------------------------------------- JWS

def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def detached_signature(content: str, token_id: str, token_secret: str) -> str:
    """`header..signature` (cluster-bootstrap's ComputeDetachedSignature)."""
    header = _b64(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64(content.encode())}".encode()
    sig = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{_b64(sig)}"


def signature_valid(detached: str, content: str, token_id: str, token_secret: str) -> bool:
    """A detached JWS over content made with this token (DetachedTokenIsValid)."""
    parts = detached.split(".")
    if len(parts) != 3 or parts[1]:
        return False
    try:
        header = json.loads(_unb64(parts[0]))
        sig = _unb64(parts[2])
    except ValueError:
        return False
    if not isinstance(header, dict) or header.get("alg") != "HS256" or header.get("kid") != token_id:
        return False
    want = hmac.new(token_secret.encode(), f"{parts[0]}.{_b64(content.encode())}".encode(), hashlib.sha256).digest()
    return hmac.compare_digest(sig, want)


# ------------------------------------------------------------- CA pinning

def ca_hash(cert_pem: bytes) -> str:
    """`sha256:<hex>` of the certificate's SubjectPublicKeyInfo (kubeadm's pubkeypin.Hash)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def check_ca_hash(cert_pem: bytes, pins) -> None:
    """BadToken unless the CA's hash is one of pins (`sha256:<hex>`)."""
    got = ca_hash(cert_pem)
    for p in pins:
        if not p.startswith("sha256:") or not re.fullmatch(r"[0-9a-f]{64}", p[7:].lower()):
            raise BadToken(f'invalid hash "{p}", expected a "sha256:" prefix and 64 hex characters')
    if got not in [p.lower() for p in pins]:
        raise BadToken(f"cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "
                       f"\"{got}\" are pinned")
