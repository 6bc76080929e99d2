"""Extra gRPC metadata on every call of a channel: how a client acts as
someone else (`impersonate-user`, `impersonate-group`, ... — the names of
Kubernetes' Impersonate-* headers in lower case, which the apiserver's
Gate reads; `kctl --as/--as-group`).

grpc.aio files a client interceptor under one call shape only, so
`interceptors(pairs)` returns one per shape (unary-unary, unary-stream,
stream-unary, stream-stream), each adding the same pairs.
"""
from __future__ import annotations

from typing import Sequence

import grpc


def impersonation(user: str = "", groups: Sequence[str] = (), uid: str = "") -> list[tuple[str, str]]:
    pairs = [("impersonate-user", user)] if user else []
    pairs += [("impersonate-group", g) for g in groups]
    if uid:
        pairs.append(("impersonate-uid", uid))
    return pairs


def _with(details, pairs):
    return grpc.aio.ClientCallDetails(details.method, details.timeout, list(details.metadata or ()) + list(pairs),
                                      details.credentials, details.wait_for_ready)


class _Base:
    def __init__(self, pairs):
        self.pairs = list(pairs)


class _UU(_Base, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(_with(details, self.pairs), request)


class _US(_Base, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(_with(details, self.pairs), request)


class _SU(_Base, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(_with(details, self.pairs), request_iterator)


class _SS(_Base, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(_with(details, self.pairs), request_iterator)


def interceptors(pairs: Sequence[tuple[str, str]]) -> list:
    return [cls(pairs) for cls in (_UU, _US, _SU, _SS)] if pairs else []
