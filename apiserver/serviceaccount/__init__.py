"""ServiceAccounts in the apiserver (issue 14), Kubernetes' design:

* keys.py      the signing key pair (`--service-account-signing-key-file`,
               `--service-account-key-file`; generated as sa.key/sa.pub in
               a directory when not given)
* tokens.py    JWTs with Kubernetes' claims: issue (TokenRequest) and verify
* tokenrequest.py  the `serviceaccounts/token` subresource, for both transports
* authn.py     the bearer-token authenticator (system:serviceaccount:NS:NAME)
* admission.py the ServiceAccount admission plugin (serviceAccountName,
               the projected kube-api-access-* volume)
"""
from __future__ import annotations

import argparse

from apiserver.serviceaccount import keys
from apiserver.serviceaccount.authn import ServiceAccountTokens
from apiserver.serviceaccount.tokens import DEFAULT_ISSUER, Issuer
from machinery import codec, errors, kinds


def add_flags(p: argparse.ArgumentParser) -> None:
    """The apiserver's ServiceAccount flags, named as Kubernetes names them."""
    p.add_argument("--service-account-signing-key-file", metavar="FILE",
                   help="PEM RSA private key that signs ServiceAccount tokens; default: "
                        f"{keys.DEFAULT_DIR}/{keys.SIGNING_KEY}, generated (with {keys.PUBLIC_KEY}) if missing")
    p.add_argument("--service-account-key-file", metavar="FILE", action="append", default=[],
                   help="PEM public (or private) key that verifies ServiceAccount tokens; repeatable "
                        "(the signing key always verifies)")
    p.add_argument("--service-account-issuer", default=DEFAULT_ISSUER,
                   help="the `iss` of the tokens issued and accepted (default %(default)s)")
    p.add_argument("--api-audiences", default="",
                   help="comma-separated audiences the API accepts in tokens (default: the issuer)")


def issuer_from(args, directory=None) -> Issuer:
    """The Issuer the flags describe (`directory`: where sa.key/sa.pub live without flags)."""
    key_set = keys.load(args.service_account_signing_key_file, args.service_account_key_file, directory)
    auds = tuple(a.strip() for a in args.api_audiences.split(",") if a.strip())
    return Issuer(key_set, args.service_account_issuer, auds)


def store_getter(store):
    """getter(kind, ns, name) -> the object or None, reading the Store."""
    async def get(kind: str, namespace: str, name: str):
        try:
            return codec.unpack(await store.get(kinds.BY_KIND[kind], namespace, name))
        except errors.NotFound:
            return None
    return get


def token_authenticators(issuer: Issuer, store, objects=None) -> list:
    """The bearer-token authenticators for apiserver.auth.authn.Union:
    ServiceAccount JWTs, then bootstrap tokens. `objects`: the getter they read
    on every request (apiserver.auth.tokencache.WatchedObjects on the watch
    cache); the Store is read when it is not given, and before any refusal."""
    from apiserver.auth.bootstraptoken import BootstrapTokenAuthenticator
    get = store_getter(store)
    if objects is None:
        return [ServiceAccountTokens(issuer, get), BootstrapTokenAuthenticator(get)]
    return [ServiceAccountTokens(issuer, objects, recheck=get), BootstrapTokenAuthenticator(objects, recheck=get)]
