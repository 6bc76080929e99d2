"""The lab's entries in a kubeconfig: `up` adds a cluster, context and user
named ``kctl-lab-<name>`` and makes the context current (other entries are
kept); `down` removes them again and gives back the context that was current
before. The file is written atomically (temp file + rename).
"""
from __future__ import annotations

import os

import yaml


def kubeconfig_path(path: str | None = None) -> str:
    return os.path.expanduser(path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kctl/config")


def current_context(path: str) -> str:
    try:
        cfg = yaml.safe_load(open(path)) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return (cfg.get("current-context") or "") if isinstance(cfg, dict) else ""


def write_kubeconfig(name: str, server: str, path: str | None = None) -> str:
    """Add/replace the lab's cluster and context in the kubeconfig and make it current."""
    path = kubeconfig_path(path)
    cfg: dict = {}
    if os.path.exists(path):
        cfg = yaml.safe_load(open(path)) or {}
    ctx = f"kctl-lab-{name}"
    cfg.setdefault("apiVersion", "v1")
    cfg.setdefault("kind", "Config")
    for key, entry in (("clusters", {"name": ctx, "cluster": {"server": server}}),
                       ("contexts", {"name": ctx, "context": {"cluster": ctx, "user": ctx}}),
                       ("users", {"name": ctx, "user": {}})):
        items = [i for i in (cfg.get(key) or []) if i.get("name") != ctx]
        items.append(entry)
        cfg[key] = items
    cfg["current-context"] = ctx
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
    return path


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
        os.unlink(path)
        return True
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
    return True
