"""Bootstrap tokens (plugin/pkg/auth/authenticator/token/bootstrap): the
`TOKEN_ID.TOKEN_SECRET` bearer tokens (`[a-z0-9]{6}.[a-z0-9]{16}`) a new
node presents before it has a certificate, kept as Secrets
`kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`:

    data: token-id, token-secret, expiration (RFC 3339, optional),
          usage-bootstrap-authentication: "true",
          auth-extra-groups: "system:bootstrappers:kubeadm:default-node-token,..."

A token of that shape is this authenticator's; it authenticates as
`system:bootstrap:<id>` in `system:bootstrappers` (+ the extra groups, each
of which must start with `system:bootstrappers:`) and
`system:authenticated` when its Secret exists, is not being deleted, holds
the same secret (compared in constant time), is usable for authentication
and has not expired. Anything else is 401 (reason in the log only).
"""
from __future__ import annotations

import hmac
import logging
import re
import time

from apiserver.auth.authn import TokenAuthenticator
from apiserver.auth.user import AUTHENTICATED, UserInfo
from machinery import errors
from machinery.bootstraptoken import NAMESPACE, SECRET_PREFIX as PREFIX, SECRET_TYPE, expired, text as _text

log = logging.getLogger(__name__)

TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
GROUP = "system:bootstrappers"
USER_PREFIX = "system:bootstrap:"


class BootstrapTokens(TokenAuthenticator):
    def __init__(self, getter, clock=time.time):
        self.getter, self.clock = getter, clock

    async def token(self, token: str) -> UserInfo | None:
        m = TOKEN.match(token)
        if not m:
            return None
        token_id, token_secret = m.groups()
        secret = await self.getter("Secret", NAMESPACE, PREFIX + token_id)
        why = self._refuse(secret, token_id, token_secret)
        if why:
            log.info("bootstrap token %s refused: %s", token_id, why)
            raise errors.Unauthorized("Unauthorized")
        data = {k: _text(v) for k, v in secret.data.items()}
        extra = [g.strip() for g in data.get("auth-extra-groups", "").split(",") if g.strip()]
        return UserInfo(USER_PREFIX + token_id, groups=(GROUP, *extra, AUTHENTICATED))

    def _refuse(self, secret, token_id: str, token_secret: str) -> str:
        if secret is None:
            return "no such bootstrap token secret"
        if secret.metadata.HasField("deletion_timestamp"):
            return "its secret is being deleted"
        if secret.type != SECRET_TYPE:
            return f"its secret has type {secret.type!r}, not {SECRET_TYPE!r}"
        data = {k: _text(v) for k, v in secret.data.items()}
        if data.get("token-id") != token_id:
            return "token-id does not match"
        if not hmac.compare_digest(data.get("token-secret", "").encode(), token_secret.encode()):
            return "token-secret does not match"
        if expired(secret, self.clock()):
            return "the token has expired"
        if data.get("usage-bootstrap-authentication") != "true":
            return "the token is not marked usage-bootstrap-authentication"
        bad = [g for g in data.get("auth-extra-groups", "").split(",")
               if g.strip() and not g.strip().startswith(GROUP + ":")]
        if bad:
            return f"auth-extra-groups {bad} do not start with {GROUP}:"
        return ""
