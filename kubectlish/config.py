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
current-context), so one written for kctl reads like one written for
kubectl; `users` is accepted and ignored (no authentication yet).

A kubeconfig that cannot be used raises machinery.errors.ConfigError (the
one ConfigError of the exception tree; re-exported here as
`config.ConfigError`) with a message that says why.

One file serves both tools. A cluster's `server` is what kubectl uses,
the apiserver's HTTP URL (`http://10.0.0.1:8080`); kctl speaks gRPC and
finds its address in the cluster's extension named `kctl.dev/grpc`
(`extensions: [{name: kctl.dev/grpc, extension: {server: 10.0.0.1:6443}}]`,
which kubectl carries along unread). Without that extension, a `server`
with no scheme (or `grpc://`) is the gRPC address itself, as kctl wrote it
before the HTTP API existed, and an `http(s)://` URL means the same host on
gRPC's default port 6443.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from machinery.errors import ConfigError

DEFAULT_SERVER = "127.0.0.1:6443"
DEFAULT_CONFIG = "~/.kctl/config"
GRPC_EXTENSION = "kctl.dev/grpc"
GRPC_PORT = 6443


@dataclass
class Settings:
    server: str
    namespace: str
    namespace_explicit: bool  # -n given: manifests in another namespace are refused
    kubeconfig: str | None    # the file that was read, if any
    context: str | None


def kubeconfig_path(flag: str | None, env: dict | None = None) -> str | None:
    """The kubeconfig file to read, or None when there is none."""
    env = os.environ if env is None else env
    if flag:
        return flag  # an explicit file must exist; load() says so if not
    if env.get("KUBECONFIG"):
        for part in env["KUBECONFIG"].split(os.pathsep):
            if part and Path(part).expanduser().is_file():
                return str(Path(part).expanduser())
        return None
    default = Path(DEFAULT_CONFIG).expanduser()
    return str(default) if default.is_file() else None


def _named(items, kind: str, path: str) -> dict[str, dict]:
    out = {}
    for item in items or []:
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{path}: every entry of {kind} needs a name")
        out[item["name"]] = item.get(kind[:-1]) or {}
    return out


def load(path: str, context: str | None = None) -> tuple[str | None, str | None, str | None]:
    """Read a kubeconfig: (server, namespace, context name) of the chosen context."""
    import yaml

    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"stat {path}: no such file or directory") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"error loading config file \"{path}\": {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"error loading config file \"{path}\": not a mapping")
    clusters = _named(data.get("clusters"), "clusters", path)
    contexts = _named(data.get("contexts"), "contexts", path)
    name = context or data.get("current-context") or None
    if not name:
        # No context chosen: a single cluster is unambiguous.
        if len(clusters) == 1:
            return grpc_server(next(iter(clusters.values()))), None, None
        return None, None, None
    if name not in contexts:
        raise ConfigError(f'context "{name}" does not exist')
    ctx = contexts[name]
    cluster = clusters.get(ctx.get("cluster", ""))
    if cluster is None:
        raise ConfigError(f'cluster "{ctx.get("cluster", "")}" of context "{name}" does not exist')
    return grpc_server(cluster), ctx.get("namespace") or None, name


def grpc_server(cluster: dict) -> str | None:
    """kctl's gRPC address for a kubeconfig cluster entry (see the module docstring)."""
    for ext in cluster.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == GRPC_EXTENSION:
            found = (ext.get("extension") or {}).get("server")
            if found:
                return found
    server = cluster.get("server")
    if server and server.startswith(("http://", "https://")):
        host = server.split("://", 1)[1].split("/", 1)[0]
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return f"{host}:{GRPC_PORT}"
    return server


def resolve(*, server: str | None, kubeconfig: str | None, namespace: str | None,
            context: str | None = None, env: dict | None = None) -> Settings:
    env = os.environ if env is None else env
    path = kubeconfig_path(kubeconfig, env)
    cfg_server = cfg_ns = ctx_name = None
    if path:
        cfg_server, cfg_ns, ctx_name = load(path, context)
    elif context:
        raise ConfigError(f'context "{context}" does not exist')
    chosen = server or env.get("KCTL_SERVER") or cfg_server or DEFAULT_SERVER
    return Settings(server=strip_scheme(chosen), namespace=namespace or cfg_ns or "default",
                    namespace_explicit=bool(namespace), kubeconfig=path, context=ctx_name)


def strip_scheme(server: str) -> str:
    for prefix in ("grpc://", "http://", "https://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    return server.rstrip("/")
