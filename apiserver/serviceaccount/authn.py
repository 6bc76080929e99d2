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
the objects through `getter(kind, namespace, name) -> message | None`:
the apiserver gives one reading its watch cache
(apiserver/auth/tokencache.WatchedObjects) and, as `recheck`, one reading
the Store, asked once more before a refusal (an index a moment behind a
new ServiceAccount does not refuse its first token). Verified claims are
kept a few seconds (tokencache.VerifiedCache) so a client's repeated
requests skip the signature check; liveness is checked on every request.

apiserver.auth.authn.Union asks it (and the bootstrap-token authenticator)
for the bearer token of a request that has no client certificate.
"""
from __future__ import annotations

import logging

from apiserver.auth.authn import TokenAuthenticator
from apiserver.auth.tokencache import VerifiedCache
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
    def __init__(self, issuer: Issuer, getter, recheck=None, verified: VerifiedCache | None = None):
        self.issuer, self.getter, self.recheck = issuer, getter, recheck
        self.verified = verified or VerifiedCache(clock=issuer.clock)    # the issuer's clock decides expiry

    def _verify(self, token: str):
        c = self.verified.get(token)
        if c is None:
            c = self.issuer.verify(token)
            self.verified.put(token, c, not_after=c.expires)
        return c

    async def token(self, token: str) -> UserInfo | None:
        if not Issuer.looks_like_ours(token, self.issuer.issuer):
            return None
        try:
            c = self._verify(token)
            try:
                await self._alive(c, self.getter)
            except InvalidToken:
                if self.recheck is None:
                    raise
                await self._alive(c, self.recheck)
        except InvalidToken as exc:
            log.info("service account token refused: %s", exc)
            raise errors.Unauthorized("Unauthorized") from exc
        extra = {CREDENTIAL_ID: (f"JTI={c.jti}",)} if c.jti else {}
        if c.pod is not None:
            extra[POD_NAME], extra[POD_UID] = (c.pod[0],), (c.pod[1],)
        return UserInfo(c.username, uid=c.uid, groups=groups_of(c.namespace), extra=extra)

    @staticmethod
    async def _alive(c, getter) -> None:
        sa = await getter("ServiceAccount", c.namespace, c.name)
        if sa is None:
            raise InvalidToken(f"service account {c.namespace}/{c.name} not found")
        if c.uid and sa.metadata.uid != c.uid:
            raise InvalidToken(f"service account UID ({sa.metadata.uid}) does not match claim ({c.uid})")
        if sa.metadata.HasField("deletion_timestamp"):
            raise InvalidToken(f"service account {c.namespace}/{c.name} has been deleted")
        for kind, ref in (("Pod", c.pod), ("Secret", c.secret)):
            if ref is None:
                continue
            obj = await getter(kind, c.namespace, ref[0])
            if obj is None:
                raise InvalidToken(f"{kind.lower()} {c.namespace}/{ref[0]} not found")
            if obj.metadata.uid != ref[1]:
                raise InvalidToken(f"{kind} UID ({obj.metadata.uid}) does not match claim ({ref[1]})")
            if obj.metadata.HasField("deletion_timestamp"):
                raise InvalidToken(f"{kind} {c.namespace}/{ref[0]} has been deleted")
