"""apiserver.auth.authn: the x509 authenticator (CN -> name, O -> groups)
and the Union (certificate first, then each TokenAuthenticator; refusals)."""
from __future__ import annotations

import pytest

from apiserver.auth import UserInfo
from apiserver.auth.authn import TokenAuthenticator, Union, X509, user_of_certificate
from machinery import errors, pki

CA = pki.CA.create()
CERT, _ = CA.issue("jane", ("dev", "qa"))


class Ctx:
    """grpc.aio ServicerContext: auth_context() and invocation_metadata()."""

    def __init__(self, pem: bytes | None = None, metadata=()):
        self.pem, self.metadata = pem, metadata

    def auth_context(self):
        return {"x509_pem_cert": [self.pem]} if self.pem else {"transport_security_type": [b"ssl"]}

    def invocation_metadata(self):
        return self.metadata


class SSLObj:
    def __init__(self, der):
        self.der = der

    def getpeercert(self, binary_form=False):
        return self.der


class Transport:
    def __init__(self, der):
        self.der = der

    def get_extra_info(self, name):
        return SSLObj(self.der) if name == "ssl_object" else None


class Request:
    def __init__(self, der: bytes | None = None, headers=None):
        self.transport = Transport(der)
        self.headers = headers or {}


class Tokens(TokenAuthenticator):
    def __init__(self, known: dict, refuse: str = ""):
        self.known, self.refuse, self.seen = known, refuse, []

    async def token(self, token):
        self.seen.append(token)
        if token == self.refuse:
            raise errors.Unauthorized("token has expired")
        return self.known.get(token)


def der(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.DER)


def test_certificate_subject_is_the_user():
    u = user_of_certificate(CERT)
    assert (u.name, u.groups) == ("jane", ("dev", "qa", "system:authenticated"))


async def test_x509_over_both_transports():
    assert (await X509().grpc(Ctx(pki.cert_pem(CERT)))).name == "jane"
    assert (await X509().http(Request(der(CERT)))).name == "jane"
    assert await X509().grpc(Ctx()) is None
    assert await X509().http(Request(None)) is None


async def test_union_certificate_first_then_tokens():
    bob = UserInfo("bob", groups=("system:authenticated",))
    a, b = Tokens({}), Tokens({"t-bob": bob})
    union = Union(tokens=[a, b])
    assert (await union.http(Request(der(CERT), {"Authorization": "Bearer t-bob"}))).name == "jane"
    assert a.seen == []                                     # a certificate answers first
    assert await union.http(Request(None, {"Authorization": "Bearer t-bob"})) is bob
    assert a.seen == ["t-bob"]
    assert await union.grpc(Ctx(None, [("authorization", "Bearer t-bob")])) is bob
    assert await union.http(Request(None, {"Authorization": "Basic Ym9iOng="})) is None
    assert await union.http(Request(None, {})) is None


async def test_union_refusal_wins_only_when_nobody_accepts():
    bob = UserInfo("bob")
    union = Union(tokens=[Tokens({}, refuse="old"), Tokens({"old": bob})])
    assert await union.http(Request(None, {"Authorization": "Bearer old"})) is bob
    union = Union(tokens=[Tokens({}, refuse="old"), Tokens({})])
    with pytest.raises(errors.Unauthorized, match="expired"):
        await union.http(Request(None, {"Authorization": "Bearer old"}))


async def test_x509_checks_validity_per_request_and_parses_a_certificate_once(monkeypatch, caplog):
    """Kubernetes' x509 authenticator checks the certificate's validity on every request: a
    connection that outlives its certificate gets 401. The parse is kept by the bytes."""
    now = [CERT.not_valid_before_utc.timestamp() + 60]
    auth = X509(clock=lambda: now[0])
    pem = pki.cert_pem(CERT)
    loads = []
    from cryptography import x509
    real = x509.load_pem_x509_certificate
    monkeypatch.setattr(x509, "load_pem_x509_certificate", lambda raw: loads.append(raw) or real(raw))
    for _ in range(3):
        assert (await auth.grpc(Ctx(pem))).name == "jane"
    assert loads == [pem]
    assert (await auth.http(Request(der(CERT)))).groups[:2] == ("dev", "qa")
    now[0] = CERT.not_valid_after_utc.timestamp() + 1
    caplog.set_level("INFO", "kctl.apiserver.authn")
    with pytest.raises(errors.Unauthorized, match="^Unauthorized$"):        # Kubernetes' bare 401 ...
        await auth.grpc(Ctx(pem))
    with pytest.raises(errors.Unauthorized, match="^Unauthorized$"):
        await auth.http(Request(der(CERT)))
    assert "x509: certificate has expired or is not yet valid: current time" in caplog.text   # ... the log says why
    assert "(user jane)" in caplog.text
    now[0] = CERT.not_valid_before_utc.timestamp() - 1
    with pytest.raises(errors.Unauthorized):
        await auth.grpc(Ctx(pem))


def test_x509_cache_is_bounded(monkeypatch):
    from apiserver.auth import authn
    monkeypatch.setattr(authn, "CERT_CACHE", 2)
    auth = X509()
    from cryptography import x509
    certs = [CA.issue(f"u{i}")[0] for i in range(3)]
    for c in certs:
        auth._user(pki.cert_pem(c), x509.load_pem_x509_certificate)
    assert list(auth._seen) == [pki.cert_pem(c) for c in certs[1:]]
