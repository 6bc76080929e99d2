"""The ServiceAccount token authenticator (pkg/serviceaccount/jwt.go and
legacy/validator): a bearer JWT from our issuer -> the account's identity.

    user   system:serviceaccount:NS:NAME     uid: the ServiceAccount's uid
    groups system:serviceaccounts, system:serviceaccounts:NS, system:authenticated
    extra  authentication.kubernetes.io/pod-name, pod-uid, credential-id (the jti)

A token whose (unverified) issuer is not ours is not this authenticator's
(None: another may know it). One of ours that fails — bad signature,
expired, wrong audience, its ServiceAccount gone or re-created (uid), its
bound Pod/Secret gone, re-created or being deleted — is 401 Unauthorized;
the reason goes to the log only, as in Kubernetes. The liveness checks read
the objects through `getter(kind, namespace, name) -> message | None`
(the apiserver gives one reading the Store).

`WithBearerTokens` is the minimal wiring until the PKI work's Union
authenticator lands: it hands an `Authorization: Bearer` token (HTTP header
or gRPC metadata) to its token authenticators, and a request without one,
or with one none of them recognises, to the fallback (Insecure today).
"""
from __future__ import annotations

import logging

from apiserver.auth.authn import Authenticator, TokenAuthenticator
from apiserver.auth.user import AUTHENTICATED, UserInfo
from apiserver.serviceaccount.tokens import InvalidToken, Issuer
from machinery import errors

log = logging.getLogger(__name__)

ALL_GROUP = "system:serviceaccounts"
POD_NAME, POD_UID = "authentication.kubernetes.io/pod-name", "authentication.kubernetes.io/pod-uid"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


def groups_of(namespace: str) -> tuple[str, ...]:
    return ALL_GROUP, f"{ALL_GROUP}:{namespace}", AUTHENTICATED


class ServiceAccountTokens(TokenAuthenticator):
    def __init__(self, issuer: Issuer, getter):
        self.issuer, self.getter = issuer, getter

    async def token(self, token: str) -> UserInfo | None:
        if not Issuer.looks_like_ours(token, self.issuer.issuer):
            return None
        try:
            c = self.issuer.verify(token)
            await self._alive(c)
        except InvalidToken as exc:
            log.info("service account token refused: %s", exc)
            raise errors.Unauthorized("Unauthorized") from exc
        extra = {CREDENTIAL_ID: (f"JTI={c.jti}",)} if c.jti else {}
        if c.pod is not None:
            extra[POD_NAME], extra[POD_UID] = (c.pod[0],), (c.pod[1],)
        return UserInfo(c.username, uid=c.uid, groups=groups_of(c.namespace), extra=extra)

    async def _alive(self, c) -> None:
        sa = await self.getter("ServiceAccount", c.namespace, c.name)
        if sa is None:
            raise InvalidToken(f"service account {c.namespace}/{c.name} not found")
        if c.uid and sa.metadata.uid != c.uid:
            raise InvalidToken(f"service account UID ({sa.metadata.uid}) does not match claim ({c.uid})")
        if sa.metadata.HasField("deletion_timestamp"):
            raise InvalidToken(f"service account {c.namespace}/{c.name} has been deleted")
        for kind, ref in (("Pod", c.pod), ("Secret", c.secret)):
            if ref is None:
                continue
            obj = await self.getter(kind, c.namespace, ref[0])
            if obj is None:
                raise InvalidToken(f"{kind.lower()} {c.namespace}/{ref[0]} not found")
            if obj.metadata.uid != ref[1]:
                raise InvalidToken(f"{kind} UID ({obj.metadata.uid}) does not match claim ({ref[1]})")
            if obj.metadata.HasField("deletion_timestamp"):
                raise InvalidToken(f"{kind} {c.namespace}/{ref[0]} has been deleted")


def bearer(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer T` value (None when there is none)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class WithBearerTokens(Authenticator):
    def __init__(self, fallback: Authenticator, tokens: list[TokenAuthenticator]):
        self.fallback, self.tokens = fallback, list(tokens)

    async def _token(self, token: str | None) -> UserInfo | None:
        for t in self.tokens if token else ():
            who = await t.token(token)
            if who is not None:
                return who
        return None

    async def http(self, request) -> UserInfo | None:
        who = await self._token(bearer(request.headers.get("Authorization")))
        return who if who is not None else await self.fallback.http(request)

    async def grpc(self, context) -> UserInfo | None:
        md = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        who = await self._token(bearer(md.get("authorization")))
        return who if who is not None else await self.fallback.grpc(context)
