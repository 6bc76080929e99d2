"""Authenticators: the credentials of a request -> UserInfo.

An authenticator answers a UserInfo, or None when the request carries no
credentials it understands; a credential it understands but rejects
(expired token, bad signature) raises errors.Unauthorized. The gate turns
"nobody recognised it" into 401 Unauthorized. The only anonymous requests
are those `Union`'s `anonymous` authenticator admits (apiserver/auth/anonymous.py:
reading kube-public's cluster-info, for nodes joining).

`Union` is the apiserver's: x509 client certificates (`X509`, the CN the
user, each O a group), then the bearer token of the `Authorization`
header (gRPC: the `authorization` metadata) through each
`TokenAuthenticator` (static tokens, ServiceAccount JWTs, bootstrap
tokens: apiserver/main.py's token_authenticators). gRPC's Python server can only *require* a client
certificate in the TLS handshake (there is no "request, verify if sent"
mode), so on gRPC a connection without a certificate of the cluster CA is
refused before any call; HTTPS asks for one optionally and answers 401
with Kubernetes' Status when a request brings neither certificate nor an
accepted token.

`Insecure` is kctl's behaviour before TLS: every request acts as
`system:unsecured` (system:masters), like Kubernetes' old insecure port.
Only unit tests use it now.
"""
from __future__ import annotations

import collections
import logging
import time

from apiserver.auth.user import AUTHENTICATED, UNSECURED, UserInfo
from machinery import errors

log = logging.getLogger("kctl.apiserver.authn")


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


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


def _bearer(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer T` value (None if not a bearer credential)."""
    scheme, _, token = (value or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def user_of_certificate(cert) -> UserInfo:
    """A verified client certificate -> its user: CN is the name, each O a
    group (Kubernetes' x509 authenticator, CommonNameUserConversion)."""
    from machinery import pki
    name, groups = pki.subject(cert)
    return UserInfo(name, groups=tuple(dict.fromkeys((*groups, AUTHENTICATED))))


CERT_CACHE = 1024      # parsed client certificates kept (a cluster has a few per component and node)


class X509(Authenticator):
    """Client certificates the TLS layer has already verified against the
    client CA (--client-ca-file): gRPC's auth_context carries the peer's PEM,
    aiohttp's SSL object the DER. A request without a certificate is not
    ours (None).

    The handshake checked the certificate's validity once per connection; as
    Kubernetes' x509 authenticator does per request, each request checks it
    again, so a connection outliving its certificate gets 401 ("x509:
    certificate has expired or is not yet valid" in the log, a bare
    "Unauthorized" to the client, as Kubernetes answers). The user and validity of
    a certificate are parsed once and kept by its bytes (CERT_CACHE, least
    recently used out): a gRPC call used to parse the PEM again (~15 us here;
    a cache hit ~0.2 us)."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self._seen: collections.OrderedDict[bytes, tuple[UserInfo, float, float]] = collections.OrderedDict()

    def _user(self, raw: bytes, load) -> UserInfo:
        hit = self._seen.get(raw)
        if hit is None:
            cert = load(raw)
            hit = (user_of_certificate(cert), cert.not_valid_before_utc.timestamp(),
                   cert.not_valid_after_utc.timestamp())
            self._seen[raw] = hit
            if len(self._seen) > CERT_CACHE:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(raw)
        user, not_before, not_after = hit
        now = self.clock()
        if not not_before <= now <= not_after:
            # As Kubernetes: the reason goes to the log, the client gets a bare 401 "Unauthorized"
            log.info("Unable to authenticate the request due to an error: x509: certificate has expired or is "
                     "not yet valid: current time %s is %s %s (user %s)", _utc(now),
                     "after" if now > not_after else "before", _utc(not_after if now > not_after else not_before),
                     user.name)
            raise errors.Unauthorized("Unauthorized")
        return user

    async def http(self, request) -> UserInfo | None:
        from cryptography import x509
        transport = request.transport
        sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if not der:
            return None
        return self._user(der, x509.load_der_x509_certificate)

    async def grpc(self, context) -> UserInfo | None:
        from cryptography import x509
        pems = context.auth_context().get("x509_pem_cert") or []
        if not pems:
            return None
        return self._user(pems[0], x509.load_pem_x509_certificate)


class Union(Authenticator):
    """Kubernetes' union authenticator: the client certificate first, then each
    TokenAuthenticator on the bearer token; the first that recognises the
    request wins. When none does and one of them refused the credential
    (expired, bad signature), that refusal is the answer. A request with no
    credential at all goes to `anonymous` last (apiserver/auth/anonymous.py:
    the few paths anyone may read, such as kube-public's cluster-info)."""

    def __init__(self, x509: Authenticator | None = None, tokens: list[TokenAuthenticator] | None = None,
                 anonymous: Authenticator | None = None):
        self.x509 = x509 or X509()
        self.tokens = list(tokens or [])
        self.anonymous = anonymous

    async def _token(self, token: str | None) -> UserInfo | None:
        refused = None
        for t in self.tokens if token else ():
            try:
                who = await t.token(token)
            except errors.Unauthorized as exc:
                refused = refused or exc
                continue
            if who is not None:
                return who
        if refused is not None:
            raise refused
        return None

    async def http(self, request) -> UserInfo | None:
        who = await self.x509.http(request) or await self._token(_bearer(request.headers.get("Authorization")))
        if who is None and self.anonymous is not None:
            who = await self.anonymous.http(request)
        return who

    async def grpc(self, context) -> UserInfo | None:
        found = await self.x509.grpc(context)
        if found is not None:
            return found
        md = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        return await self._token(_bearer(md.get("authorization")))
