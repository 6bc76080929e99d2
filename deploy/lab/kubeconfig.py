"""The lab's entries in a kubeconfig: `up` adds a cluster, context and user
named ``kctl-lab-<name>`` and makes the context current (other entries are
kept); `down` removes them again and gives back the context that was current
before. The file is written atomically (temp file + rename). The same file
serves kubectl (the cluster's `server` is the HTTP API) and kctl (its gRPC
address is the `kctl.dev/grpc` cluster extension); when the user has no
~/.kube/config, `up` links it to this file and `down` removes that link.
"""
from __future__ import annotations

import os

import yaml


def kube_config() -> str:
    """kubectl's default file (read at call time: HOME may change)."""
    return os.path.expanduser("~/.kube/config")


def kubeconfig_path(path: str | None = None) -> str:
    return os.path.expanduser(path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kctl/config")


def current_context(path: str) -> str:
    try:
        cfg = yaml.safe_load(open(path)) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return (cfg.get("current-context") or "") if isinstance(cfg, dict) else ""


def write_kubeconfig(name: str, server: str, path: str | None = None, http: str | None = None,
                     credentials=None) -> str:
    """Add/replace the lab's cluster and context in the kubeconfig and make it current.

    One file for both tools (kubectlish/config.py): the cluster's `server`
    is the HTTP URL kubectl uses, kctl's gRPC address is in the
    `kctl.dev/grpc` extension (`server` may be a comma list: every apiserver of
    an HA lab, written as the extension's `servers`). `credentials` (machinery.kubeconfig.Credentials:
    the lab's CA and admin certificate) are embedded (`*-data`), so the file
    is written 0600. When the user has no ~/.kube/config and no
    $KUBECONFIG, ~/.kube/config becomes a symlink to this file, so plain
    `kubectl` finds the lab too; an existing ~/.kube/config is left alone."""
    explicit = path or os.environ.get("KUBECONFIG")
    path = kubeconfig_path(path)
    cfg: dict = {}
    if os.path.exists(path):
        cfg = yaml.safe_load(open(path)) or {}
    ctx = f"kctl-lab-{name}"
    cfg.setdefault("apiVersion", "v1")
    cfg.setdefault("kind", "Config")
    from machinery import kubeconfig
    doc = kubeconfig.document(ctx, ctx, https_url=http or server, grpc=server,
                              ca_pem=credentials.ca_pem if credentials else None,
                              cert_pem=credentials.cert_pem if credentials else None,
                              key_pem=credentials.key_pem if credentials else None, context=ctx)
    for key, entry in (("clusters", doc["clusters"][0]), ("contexts", doc["contexts"][0]),
                       ("users", doc["users"][0])):
        items = [i for i in (cfg.get(key) or []) if i.get("name") != ctx]
        items.append(entry)
        cfg[key] = items
    cfg["current-context"] = ctx
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write(path, cfg)
    kube = kube_config()
    if not explicit and not os.path.lexists(kube):
        os.makedirs(os.path.dirname(kube), exist_ok=True)
        os.symlink(path, kube)
    return path


def _drop_kube_link(path: str) -> None:
    """~/.kube/config was made a link to `path` by `up`: remove it with the file."""
    kube = kube_config()
    if os.path.islink(kube) and os.path.realpath(kube) == os.path.realpath(path):
        os.unlink(kube)


def remove_kubeconfig_entries(name: str, path: str, previous: str = "") -> bool:
    """Drop the lab's cluster/context/user from kubeconfig `path`; if the lab's
    context was current, `previous` (the context current before `up`) is again.

    The file is removed when nothing else is left in it (it was ours alone).
    Returns True if something was removed.
    """
    ctx = f"kctl-lab-{name}"
    try:
        cfg = yaml.safe_load(open(path)) or {}
    except (OSError, yaml.YAMLError):
        return False
    if not isinstance(cfg, dict):
        return False
    changed = False
    for key in ("clusters", "contexts", "users"):
        items = cfg.get(key) or []
        kept = [i for i in items if not (isinstance(i, dict) and i.get("name") == ctx)]
        changed |= len(kept) != len(items)
        cfg[key] = kept
    if cfg.get("current-context") == ctx:
        names = {c.get("name") for c in cfg.get("contexts") or [] if isinstance(c, dict)}
        cfg["current-context"] = previous if previous in names else ""
        changed = True
    if not changed:
        return False
    if not any(cfg.get(k) for k in ("clusters", "contexts", "users")) and not cfg.get("current-context"):
        _drop_kube_link(path)
        os.unlink(path)
        return True
    _write(path, cfg)
    return True


def _write(path: str, cfg: dict) -> None:
    """Atomically, 0600 (the file carries private keys)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
