"""Static bearer tokens (Kubernetes' --token-auth-file): a CSV file of
`token,user,uid,"group1,group2"` lines, read once at start. It is the
simplest way to give people (and tests) distinct identities before
certificates: `kubectl --token T`, the Python client's api_key, or gRPC
metadata `authorization: Bearer T`.

`StaticTokens` is a TokenAuthenticator (None for tokens it does not know)
in the Union authenticator's token list (apiserver/main.py); bearer tokens
work over HTTPS (gRPC requires a client certificate, which wins). Every
token user is in system:authenticated.
"""
from __future__ import annotations

import csv
import pathlib

from apiserver.auth.authn import TokenAuthenticator
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
