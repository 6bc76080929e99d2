"""The bootstrap token authenticator (Kubernetes'
plugin/pkg/auth/authenticator/token/bootstrap): a bearer token
`<id>.<secret>` is looked up as the Secret kube-system/bootstrap-token-<id>
and, when that Secret is a bootstrap token (type, id), holds the same
secret (constant-time compare), allows `usage-bootstrap-authentication`,
is not being deleted and has not expired, the request is
`system:bootstrap:<id>` in `system:bootstrappers` plus the Secret's
auth-extra-groups.

Tokens of another shape are not this authenticator's (None: the next
TokenAuthenticator may know them); a token of this shape that fails any
check is refused with 401 (errors.Unauthorized), as a node joining with an
expired token must be. The Secret is read through `getter`: the apiserver
gives one reading its watch cache (apiserver/auth/tokencache.WatchedObjects),
so a deleted Secret stops authenticating as soon as the watch delivers the
deletion, and `recheck` reading the Store, asked once more before a
refusal (a Secret created a moment ago is not refused for an index behind).

The apiserver puts it after the ServiceAccount token authenticator in the
Union authenticator's token list (apiserver.serviceaccount.token_authenticators).
"""
from __future__ import annotations

import hmac
import logging
import time

from apiserver.auth.authn import TokenAuthenticator
from apiserver.auth.user import AUTHENTICATED, UserInfo
from machinery import bootstraptoken as bt, errors

log = logging.getLogger("kctl.apiserver.auth.bootstrap")


def _refuse(token_id: str, why: str) -> errors.Unauthorized:
    log.info("bootstrap token %s refused: %s", token_id, why)
    return errors.Unauthorized("Unauthorized")


class BootstrapTokenAuthenticator(TokenAuthenticator):
    def __init__(self, getter, clock=time.time, recheck=None):
        """getter(kind, namespace, name) -> the object, or None when absent (async;
        apiserver.serviceaccount.store_getter reads the Store); `recheck`: another
        getter asked before refusing."""
        self.getter, self.recheck = getter, recheck
        self.clock = clock

    async def token(self, token: str) -> UserInfo | None:
        try:
            token_id, token_secret = bt.parse(token)
        except bt.BadToken:
            return None
        try:
            return await self._check(token_id, token_secret, self.getter)
        except errors.Unauthorized:
            if self.recheck is None:
                raise
        return await self._check(token_id, token_secret, self.recheck)

    async def _check(self, token_id: str, token_secret: str, getter) -> UserInfo:
        secret = await getter("Secret", bt.NAMESPACE, bt.secret_name(token_id))
        if secret is None:
            raise _refuse(token_id, f"no secret {bt.NAMESPACE}/{bt.secret_name(token_id)}")
        if secret.metadata.HasField("deletion_timestamp"):
            raise _refuse(token_id, "secret is being deleted")
        held = bt.token_of(secret)
        if held is None or held[0] != token_id:
            raise _refuse(token_id, f"secret is not a valid {bt.SECRET_TYPE} secret")
        if not hmac.compare_digest(held[1].encode(), token_secret.encode()):
            raise _refuse(token_id, "token secret does not match")
        if bt.is_expired(secret, self.clock()):
            raise _refuse(token_id, f"token expired at {bt.data(secret, bt.EXPIRATION)}")
        if not bt.usage(secret, "authentication"):
            raise _refuse(token_id, f"{bt.USAGE_AUTH} is not true")
        extra = bt.extra_groups(secret)
        try:
            bt.validate_groups(extra)
        except bt.BadToken as exc:
            raise _refuse(token_id, str(exc)) from exc
        return UserInfo(bt.USER_PREFIX + token_id, groups=(bt.GROUP, *extra, AUTHENTICATED))

