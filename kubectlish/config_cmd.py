"""`kctl config`: read and switch kubeconfig contexts, as kubectl's does.

    kctl config view | current-context | get-contexts
    kctl config use-context NAME
    kctl config set-context --current --namespace=NS

Reads the same file kctl uses (--kubeconfig, else the first existing
$KUBECONFIG entry, else ~/.kctl/config); writes go to that file (or to
~/.kctl/config when there is none yet), atomically.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

from kubectlish import config


def _path() -> str:
    ctx = click.get_current_context()
    flag = ctx.find_root().params.get("kubeconfig")
    return config.kubeconfig_path(flag) or str(Path(config.DEFAULT_CONFIG).expanduser())


def _load(path: str) -> dict:
    import yaml
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f'error loading config file "{path}": {exc}') from None


def _save(path: str, data: dict) -> None:
    import yaml
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)


def _fail(msg: str):
    click.echo(f"error: {msg}", err=True)
    raise SystemExit(1)


@click.group("config")
def config_group():
    """Show or switch the kubeconfig's contexts."""


@config_group.command("view")
def view_cmd():
    """Print the kubeconfig."""
    import yaml
    data = _load(_path()) or {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                              "current-context": "", "users": []}
    click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


@config_group.command("current-context")
def current_context_cmd():
    """Print the current context's name."""
    cur = _load(_path()).get("current-context")
    if not cur:
        _fail("current-context is not set")
    click.echo(cur)


@config_group.command("get-contexts")
def get_contexts_cmd():
    """List the contexts (CURRENT NAME CLUSTER AUTHINFO NAMESPACE)."""
    from kubectlish.printers import tabwrite
    data = _load(_path())
    cur = data.get("current-context")
    lines = ["CURRENT\tNAME\tCLUSTER\tAUTHINFO\tNAMESPACE"]
    for c in data.get("contexts") or []:
        ctx = c.get("context") or {}
        lines.append("\t".join(["*" if c.get("name") == cur else "", c.get("name", ""), ctx.get("cluster", ""),
                                ctx.get("user", ""), ctx.get("namespace", "")]))
    click.echo(tabwrite(lines), nl=False)


@config_group.command("use-context")
@click.argument("name")
def use_context_cmd(name):
    """Make NAME the current context."""
    path = _path()
    data = _load(path)
    if name not in {c.get("name") for c in data.get("contexts") or []}:
        _fail(f'no context exists with the name: "{name}"')
    data["current-context"] = name
    _save(path, data)
    click.echo(f'Switched to context "{name}".')


@config_group.command("set-context")
@click.argument("name", required=False)
@click.option("--current", is_flag=True, help="Modify the current context.")
@click.option("--namespace", "ns", default=None, help="Default namespace of the context.")
@click.option("--cluster", default=None)
def set_context_cmd(name, current, ns, cluster):
    """Create or modify a context (e.g. set-context --current --namespace=dev)."""
    path = _path()
    data = _load(path)
    if current:
        name = data.get("current-context")
        if not name:
            _fail("no current context is set")
    if not name:
        _fail("you must specify a context name or --current")
    contexts = data.setdefault("contexts", []) or []
    data["contexts"] = contexts
    entry = next((c for c in contexts if c.get("name") == name), None)
    created = entry is None
    if created:
        entry = {"name": name, "context": {}}
        contexts.append(entry)
    ctx = entry.setdefault("context", {}) or {}
    entry["context"] = ctx
    if ns is not None:
        ctx["namespace"] = ns
    if cluster is not None:
        ctx["cluster"] = cluster
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Config")
    _save(path, data)
    click.echo(f'Context "{name}" {"created" if created else "modified"}.')
