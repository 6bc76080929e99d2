"""Where kctl finds the apiserver and the default namespace.

Precedence follows kubectl: a flag beats the environment, which beats the
kubeconfig file.

* server:    --server, then $KCTL_SERVER, then the current context's
             cluster in the kubeconfig (see below), then 127.0.0.1:6443.
* kubeconfig: --kubeconfig, then the first existing file in $KUBECONFIG
             (colon-separated, like kubectl), then ~/.kctl/config.
* namespace: -n/--namespace, then the current context's `namespace`, then
             `default`.

The file is kubectl's kubeconfig format (clusters / contexts / users /
current-context), read by machinery.kubeconfig (also the gRPC address
extension `kctl.dev/grpc` and the credentials: the cluster's CA, the user's
client certificate and key or token); `Settings.credentials` carries them
to the Client. With --server (or $KCTL_SERVER) the address changes and the
credentials stay those of the current context, as with `kubectl --server`.

A kubeconfig that cannot be used raises machinery.errors.ConfigError (the
one ConfigError of the exception tree; re-exported here as
`config.ConfigError`) with a message that says why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from machinery import kubeconfig as kc
from machinery.errors import ConfigError  # noqa: F401 - re-exported

DEFAULT_SERVER = "127.0.0.1:6443"
DEFAULT_CONFIG = kc.DEFAULT_CONFIG
GRPC_EXTENSION = kc.GRPC_EXTENSION
GRPC_PORT = kc.GRPC_PORT
grpc_server = kc.grpc_server
_named = kc.named


@dataclass
class Settings:
    server: str
    namespace: str
    namespace_explicit: bool  # -n given: manifests in another namespace are refused
    kubeconfig: str | None    # the file that was read, if any
    context: str | None
    credentials: kc.Credentials = field(default_factory=kc.Credentials)


def kubeconfig_path(flag: str | None, env: dict | None = None) -> str | None:
    """The kubeconfig file to read, or None when there is none."""
    if flag:
        return flag  # an explicit file must exist; load() says so if not
    return kc.default_path(env)


def load(path: str, context: str | None = None) -> tuple[str | None, str | None, str | None]:
    """Read a kubeconfig: (server, namespace, context name) of the chosen context."""
    sel = kc.select(path, context)
    return sel.grpc, sel.namespace, sel.context


def resolve(*, server: str | None, kubeconfig: str | None, namespace: str | None,
            context: str | None = None, env: dict | None = None) -> Settings:
    env = os.environ if env is None else env
    path = kubeconfig_path(kubeconfig, env)
    sel = kc.Selected(None, None, None, None, kc.Credentials())
    if path:
        sel = kc.select(path, context)
    elif context:
        raise ConfigError(f'context "{context}" does not exist')
    chosen = server or env.get("KCTL_SERVER") or sel.grpc or DEFAULT_SERVER
    return Settings(server=strip_scheme(chosen), namespace=namespace or sel.namespace or "default",
                    namespace_explicit=bool(namespace), kubeconfig=path, context=sel.context,
                    credentials=sel.credentials)


def strip_scheme(server: str) -> str:
    for prefix in ("grpc://", "http://", "https://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    return server.rstrip("/")
