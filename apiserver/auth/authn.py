"""Authenticators: the credentials of a request -> UserInfo.

An authenticator answers a UserInfo, or None when the request carries no
credentials it understands; a credential it understands but rejects
(expired token, bad signature) raises errors.Unauthorized. The gate turns
"nobody recognised it" into 401 Unauthorized (anonymous requests are not
allowed).

`Insecure` is kctl's behaviour before TLS: every request acts as
`system:unsecured` (system:masters), like Kubernetes' old insecure port.
"""
from __future__ import annotations

from apiserver.auth.user import UNSECURED, UserInfo


class Authenticator:
    async def http(self, request) -> UserInfo | None:
        """The identity of an aiohttp request (TLS peer certificate, Authorization header)."""
        raise NotImplementedError

    async def grpc(self, context) -> UserInfo | None:
        """The identity of a grpc.aio call (auth_context(), invocation metadata)."""
        raise NotImplementedError


class TokenAuthenticator:
    """Bearer tokens (HTTP `Authorization: Bearer T`, gRPC metadata
    `authorization: Bearer T`): ServiceAccount JWTs, bootstrap tokens, ...
    None when the token is not one of this kind; errors.Unauthorized when it
    is, but invalid or expired."""

    async def token(self, token: str) -> UserInfo | None:
        raise NotImplementedError


class Insecure(Authenticator):
    async def http(self, request) -> UserInfo | None:
        return UNSECURED

    async def grpc(self, context) -> UserInfo | None:
        return UNSECURED
