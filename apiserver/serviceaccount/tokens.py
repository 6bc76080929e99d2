"""ServiceAccount JWTs with Kubernetes' claims (pkg/serviceaccount/claims.go),
signed RS256 with the apiserver's key (keys.py); PyJWT does the JOSE part.

    {"iss": ISSUER, "sub": "system:serviceaccount:NS:NAME", "aud": [...],
     "exp": ..., "iat": ..., "nbf": ..., "jti": "<uuid>",
     "kubernetes.io": {"namespace": NS, "serviceaccount": {"name", "uid"},
                       "pod": {"name", "uid"} | "secret": {"name", "uid"}}}

`Issuer.issue` signs; `Issuer.verify` checks signature (any public key of the
key set, chosen by `kid`), issuer, expiry and not-before (no leeway beyond
a few seconds of clock skew), audience (the token's must intersect the
apiserver's `--api-audiences`) and the claims' shape, raising InvalidToken
with the reason. Whether the ServiceAccount and the bound object still
exist is the authenticator's business (authn.py), since it needs the API.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import jwt

from apiserver.serviceaccount.keys import KeySet, key_id
from machinery import errors

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
PREFIX = "system:serviceaccount:"
LEEWAY = 5          # seconds of clock skew accepted on exp/nbf (Kubernetes allows 60 on nbf/iat)


class InvalidToken(errors.KctlError, ValueError):
    """A token that is a ServiceAccount token but not valid (the reason is for logs, never for the client)."""


@dataclass(frozen=True)
class Claims:
    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]
    expires: int
    issued: int
    jti: str = ""
    pod: tuple[str, str] | None = None        # (name, uid)
    secret: tuple[str, str] | None = None
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def username(self) -> str:
        return f"{PREFIX}{self.namespace}:{self.name}"


@dataclass
class Issuer:
    keys: KeySet
    issuer: str = DEFAULT_ISSUER
    api_audiences: tuple[str, ...] = ()        # --api-audiences; empty: the issuer
    clock: callable = time.time

    def __post_init__(self):
        self.api_audiences = tuple(self.api_audiences) or (self.issuer,)

    def issue(self, namespace: str, name: str, uid: str, audiences, expiration_seconds: int,
              pod: tuple[str, str] | None = None, secret: tuple[str, str] | None = None) -> tuple[str, int]:
        """(token, expiry as unix seconds)."""
        now = int(self.clock())
        exp = now + int(expiration_seconds)
        private = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if pod is not None:
            private["pod"] = {"name": pod[0], "uid": pod[1]}
        if secret is not None:
            private["secret"] = {"name": secret[0], "uid": secret[1]}
        claims = {"iss": self.issuer, "sub": f"{PREFIX}{namespace}:{name}",
                  "aud": list(audiences or self.api_audiences), "exp": exp, "iat": now, "nbf": now,
                  "jti": str(uuid.uuid4()), "kubernetes.io": private}
        token = jwt.encode(claims, self.keys.signing, algorithm="RS256", headers={"kid": self.keys.kid})
        return token, exp

    @staticmethod
    def looks_like_ours(token: str, issuer: str) -> bool:
        """A JWT whose (unverified) issuer is ours: anything else is another authenticator's."""
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") == issuer
        except jwt.PyJWTError:
            return False

    def _key_for(self, token: str):
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token header: {exc}") from exc
        keys = [k for k in self.keys.public if not kid or key_id(k) == kid]
        if not keys:
            raise InvalidToken("token signed by an unknown key")
        return keys

    def verify(self, token: str) -> Claims:
        last: Exception | None = None
        for key in self._key_for(token):
            try:
                c = jwt.decode(token, key, algorithms=["RS256"], audience=list(self.api_audiences),
                               issuer=self.issuer, options={"require": ["exp", "iat", "sub"], "verify_exp": False,
                                                            "verify_nbf": False, "verify_iat": False})
                break
            except jwt.InvalidSignatureError as exc:
                last = exc
            except jwt.InvalidAudienceError as exc:
                raise InvalidToken("token audiences do not match the apiserver's") from exc
            except jwt.PyJWTError as exc:
                raise InvalidToken(f"invalid token: {exc}") from exc
        else:
            raise InvalidToken("token signature is invalid") from last
        now = self.clock()          # times against our clock (PyJWT would use the wall clock)
        if not isinstance(c["exp"], (int, float)) or now > c["exp"] + LEEWAY:
            raise InvalidToken("token has expired")
        if isinstance(c.get("nbf"), (int, float)) and now < c["nbf"] - LEEWAY:
            raise InvalidToken("token is not valid yet")
        return _claims(c)


def _claims(c: dict) -> Claims:
    private = c.get("kubernetes.io")
    sub = c.get("sub", "")
    if not isinstance(private, dict) or not sub.startswith(PREFIX):
        raise InvalidToken("token lacks the kubernetes.io claims of a service account token")
    sa = private.get("serviceaccount") or {}
    ns, name = private.get("namespace", ""), sa.get("name", "")
    if sub != f"{PREFIX}{ns}:{name}" or not ns or not name:
        raise InvalidToken("token subject does not match its kubernetes.io claims")

    def ref(key):
        r = private.get(key)
        return (r.get("name", ""), r.get("uid", "")) if isinstance(r, dict) else None
    aud = c.get("aud")
    return Claims(ns, name, sa.get("uid", ""), tuple([aud] if isinstance(aud, str) else aud or ()),
                  int(c["exp"]), int(c["iat"]), c.get("jti", ""), ref("pod"), ref("secret"), c)
