"""Static bearer tokens (Kubernetes' --token-auth-file): a CSV file of
`token,user,uid,"group1,group2"` lines, read once at start. It is the
simplest way to give people (and tests) distinct identities before
certificates: `kubectl --token T`, the Python client's api_key, or gRPC
metadata `authorization: Bearer T`.

`StaticTokens` is a TokenAuthenticator (None for tokens it does not know).
`BearerOr(tokens, fallback)` asks the token authenticators when a request
carries `Authorization: Bearer ...` (an unknown token is 401) and the
fallback authenticator otherwise — with the pre-TLS `Insecure` fallback,
a request without a token stays system:unsecured. Every token user is in
system:authenticated.
"""
from __future__ import annotations

import csv
import pathlib

from apiserver.auth.authn import Authenticator, TokenAuthenticator
from apiserver.auth.user import AUTHENTICATED, UserInfo
from machinery import errors


class TokenFileError(errors.ConfigError):
    pass


class StaticTokens(TokenAuthenticator):
    def __init__(self, users: dict[str, UserInfo]):
        self.users = users

    @classmethod
    def load(cls, path: str) -> "StaticTokens":
        users: dict[str, UserInfo] = {}
        try:
            rows = list(csv.reader(pathlib.Path(path).read_text().splitlines()))
        except OSError as exc:
            raise TokenFileError(f"--token-auth-file {path}: {exc.strerror}") from exc
        for n, row in enumerate(rows, 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3 or not row[0] or not row[1]:
                raise TokenFileError(f"--token-auth-file {path}:{n}: want token,user,uid[,\"group1,group2\"]")
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            users[row[0]] = UserInfo(row[1], uid=row[2], groups=(*groups, AUTHENTICATED))
        return cls(users)

    async def token(self, token: str) -> UserInfo | None:
        return self.users.get(token)


def _bearer(value: str) -> str | None:
    scheme, _, token = (value or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class BearerOr(Authenticator):
    def __init__(self, tokens: list[TokenAuthenticator], fallback: Authenticator):
        self.tokens, self.fallback = tokens, fallback

    async def _token(self, token: str) -> UserInfo:
        for t in self.tokens:
            who = await t.token(token)
            if who is not None:
                return who
        raise errors.Unauthorized("Unauthorized")

    async def http(self, request) -> UserInfo | None:
        token = _bearer(request.headers.get("Authorization", ""))
        return await self._token(token) if token else await self.fallback.http(request)

    async def grpc(self, context) -> UserInfo | None:
        token = _bearer(dict(context.invocation_metadata() or ()).get("authorization", ""))
        return await self._token(token) if token else await self.fallback.grpc(context)
