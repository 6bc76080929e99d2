"""Bootstrap tokens: format, Secret, expiry, the detached JWS of
cluster-info, the CA pin, and the token authenticator."""
from __future__ import annotations

import asyncio
import hashlib

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from apiserver.auth.bootstraptoken import BootstrapTokenAuthenticator
from machinery import bootstraptoken as bt, clusterinfo, errors, kinds
from tests.unit.certs import make_ca

TOKEN = "abcdef.0123456789abcdef"
NOW = 1_800_000_000.0


def secret(token=TOKEN, ttl=3600.0, **kw):
    s = kinds.new("Secret")
    bt.fill_secret(s, token, ttl=ttl, now=NOW, **kw)
    return s


def test_generated_tokens_have_the_format_and_differ():
    a, b = bt.generate(), bt.generate()
    assert bt.TOKEN_RE.match(a) and a != b


@pytest.mark.parametrize("bad", ["", "abcdef", "ABCDEF.0123456789abcdef", "abcdef.0123456789abcde",
                                 "abcdefg.0123456789abcdef", "abcdef:0123456789abcdef"])
def test_malformed_tokens_are_refused_with_the_pattern(bad):
    with pytest.raises(bt.BadToken, match="was not of the form"):
        bt.parse(bad)


def test_secret_carries_kubeadms_keys():
    s = secret(description="for node1")
    assert s.metadata.name == "bootstrap-token-abcdef" and s.metadata.namespace == "kube-system"
    assert s.type == "bootstrap.kubernetes.io/token"
    d = {k: v.decode() for k, v in s.data.items()}
    assert d == {"token-id": "abcdef", "token-secret": "0123456789abcdef", "expiration": "2027-01-15T09:00:00Z",
                 "usage-bootstrap-authentication": "true",
                 "usage-bootstrap-signing": "true", "auth-extra-groups": bt.DEFAULT_EXTRA_GROUP,
                 "description": "for node1"}
    assert bt.token_of(s) == ("abcdef", "0123456789abcdef")


def test_no_ttl_means_no_expiration():
    s = secret(ttl=None)
    assert "expiration" not in s.data and not bt.is_expired(s, NOW + 10**9)


def test_expiry_and_unparsable_expiration():
    s = secret(ttl=60)
    assert not bt.is_expired(s, NOW + 59) and bt.is_expired(s, NOW + 60)
    s.data["expiration"] = b"tomorrow"
    assert bt.is_expired(s, NOW)


def test_bad_groups_and_usages_are_refused():
    with pytest.raises(bt.BadToken, match=r"bootstrap group 'system:nodes' is invalid \(must match"):
        secret(groups=["system:nodes"])
    with pytest.raises(bt.BadToken, match="invalid bootstrap token usage string: root"):
        secret(usages=["root"])


def test_secret_with_wrong_name_or_type_is_not_a_token():
    s = secret()
    s.metadata.name = "bootstrap-token-zzzzzz"
    assert bt.token_of(s) is None
    s = secret()
    s.type = "Opaque"
    assert bt.token_of(s) is None


# ------------------------------------------------------------------ JWS

def test_detached_signature_round_trip_and_tampering():
    content = clusterinfo.kubeconfig(b"CA", "https://10.0.0.1:6443")
    sig = bt.detached_signature(content, "abcdef", "0123456789abcdef")
    head, empty, _ = sig.split(".")
    assert empty == "" and bt._unb64(head) == b'{"alg":"HS256","kid":"abcdef"}'
    assert bt.signature_valid(sig, content, "abcdef", "0123456789abcdef")
    assert not bt.signature_valid(sig, content + " ", "abcdef", "0123456789abcdef")
    assert not bt.signature_valid(sig, content, "abcdef", "0123456789abcdeg")
    assert not bt.signature_valid(sig, content, "zzzzzz", "0123456789abcdef")
    assert not bt.signature_valid("garbage", content, "abcdef", "0123456789abcdef")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_signature_matches_an_independent_hs256_jws():
    """The same bytes a JOSE library produces for {"alg":"HS256","kid":id} (PyJWT here)."""
    content = "kubeconfig text"
    full = jwt.api_jws.encode(content.encode(), "0123456789abcdef", algorithm="HS256",
                              headers={"kid": "abcdef", "typ": None}, sort_headers=True)
    head, _, sig = full.split(".")
    assert bt.signature_valid(f"{head}..{sig}", content, "abcdef", "0123456789abcdef")


# ------------------------------------------------------------ CA pinning

def test_ca_hash_is_sha256_of_the_spki():
    ca, _ = make_ca()
    spki = x509.load_pem_x509_certificate(ca).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert bt.ca_hash(ca) == "sha256:" + hashlib.sha256(spki).hexdigest()


def test_cluster_info_verification():
    ca, _ = make_ca()
    other, _ = make_ca()
    content = clusterinfo.kubeconfig(ca, "https://10.0.0.1:6443")
    data = {"kubeconfig": content, **clusterinfo.signatures(content, {"abcdef": "0123456789abcdef"})}
    assert clusterinfo.verify(data, TOKEN, [bt.ca_hash(ca)]) == ("https://10.0.0.1:6443", ca)
    with pytest.raises(bt.BadToken, match="none of the public keys"):
        clusterinfo.verify(data, TOKEN, [bt.ca_hash(other)])
    with pytest.raises(bt.BadToken, match="token id 'zzzzzz' is invalid for this cluster"):
        clusterinfo.verify(data, "zzzzzz.0123456789abcdef", [bt.ca_hash(ca)])
    with pytest.raises(bt.BadToken, match="failed to verify JWS signature"):
        clusterinfo.verify({**data, "kubeconfig": content.replace("10.0.0.1", "10.6.6.6")}, TOKEN, [bt.ca_hash(ca)])
    with pytest.raises(bt.BadToken, match="expected a \"sha256:\" prefix"):
        clusterinfo.verify(data, TOKEN, ["md5:abc"])
    with pytest.raises(bt.BadToken, match="discovery-token-ca-cert-hash is required"):
        clusterinfo.verify(data, TOKEN, [])


# --------------------------------------------------------- authenticator

def authenticate(token, *secrets_, now=NOW):
    store = {(s.metadata.namespace, s.metadata.name): s for s in secrets_}

    async def get(kind, ns, name):
        assert kind == "Secret"
        return store.get((ns, name))
    return asyncio.run(BootstrapTokenAuthenticator(get, clock=lambda: now).token(token))


def test_valid_token_is_system_bootstrap_user():
    who = authenticate(TOKEN, secret(groups=["system:bootstrappers:worker"]))
    assert who.name == "system:bootstrap:abcdef"
    assert who.groups == ("system:bootstrappers", "system:bootstrappers:worker", "system:authenticated")


def test_other_token_shapes_are_not_ours():
    assert authenticate("eyJhbGciOiJSUzI1NiJ9.e30.sig", secret()) is None
    assert authenticate("ABCDEF.0123456789abcdef", secret()) is None


@pytest.mark.parametrize("case", ["missing", "wrong-secret", "expired", "unparsable-expiration", "no-auth-usage",
                                  "deleting", "bad-group", "not-a-token-type"])
def test_refused_tokens_are_401(case):
    s = secret(ttl=60)
    token, now = TOKEN, NOW
    if case == "missing":
        token = "zzzzzz.0123456789abcdef"
    elif case == "wrong-secret":
        token = "abcdef.0123456789abcdee"
    elif case == "expired":
        now = NOW + 61
    elif case == "unparsable-expiration":
        s.data["expiration"] = b"soon"
    elif case == "not-a-token-type":
        s.type = "Opaque"
    elif case == "no-auth-usage":
        del s.data["usage-bootstrap-authentication"]
    elif case == "deleting":
        s.metadata.deletion_timestamp.seconds = int(NOW)
    elif case == "bad-group":
        s.data["auth-extra-groups"] = b"system:masters"
    with pytest.raises(errors.Unauthorized):
        authenticate(token, s, now=now)
