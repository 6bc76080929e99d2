"""`kctl config`: read and switch kubeconfig contexts, as kubectl's does.

    kctl config view [--raw] | current-context | get-contexts
    kctl config use-context NAME
    kctl config set-context --current --namespace=NS
    kctl config set-context NAME --cluster=C --user=U [--namespace=NS]
    kctl config set-credentials NAME --client-certificate=F --client-key=F [--embed-certs] | --token=T
    kctl config set-cluster NAME --server=https://H:P --certificate-authority=F [--embed-certs]
                            [--grpc-server=H:P[,H:P...]]   (several: an HA control plane)

Adding a user, as with kubectl: `kctl pki user jane --group dev` makes the
certificate, `set-credentials jane --client-certificate=... --client-key=...
--embed-certs` adds it, `set-context jane@kctl --cluster=... --user=jane`
and `use-context` use it. Without --embed-certs the file paths are stored
(read at each use, relative paths from the kubeconfig's directory).

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
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)    # it may hold keys
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)


def _fail(msg: str):
    click.echo(f"error: {msg}", err=True)
    raise SystemExit(1)


@click.group("config")
def config_group():
    """Show or switch the kubeconfig's contexts."""


REDACTED = {"client-key-data": "REDACTED", "token": "REDACTED", "client-certificate-data": "DATA+OMITTED",
            "certificate-authority-data": "DATA+OMITTED"}


@config_group.command("view")
@click.option("--raw", is_flag=True, help="Show keys, tokens and certificates as they are.")
def view_cmd(raw):
    """Print the kubeconfig (secrets redacted as kubectl does, unless --raw)."""
    import yaml
    data = _load(_path()) or {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                              "current-context": "", "users": []}
    if not raw:
        for section, key in (("clusters", "cluster"), ("users", "user")):
            for entry in data.get(section) or []:
                inner = entry.get(key) if isinstance(entry, dict) else None
                for field, shown in REDACTED.items():
                    if isinstance(inner, dict) and inner.get(field):
                        inner[field] = shown
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
@click.option("--user", default=None, help="The user (set-credentials NAME) of the context.")
def set_context_cmd(name, current, ns, cluster, user):
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
    if user is not None:
        ctx["user"] = user
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Config")
    _save(path, data)
    click.echo(f'Context "{name}" {"created" if created else "modified"}.')


def _entry(data: dict, section: str, name: str) -> dict:
    """The inner mapping of the named entry of clusters/users (created if missing)."""
    items = data.get(section) or []
    data[section] = items
    entry = next((e for e in items if e.get("name") == name), None)
    if entry is None:
        entry = {"name": name}
        items.append(entry)
    key = section[:-1]
    entry[key] = entry.get(key) or {}
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Config")
    return entry[key]


def _material(inner: dict, field: str, file: str | None, embed: bool) -> None:
    """Set FIELD (a path) or FIELD-data (embedded base64), dropping the other form."""
    import base64
    if file is None:
        return
    if embed:
        try:
            data = Path(file).expanduser().read_bytes()
        except OSError as exc:
            _fail(f"error reading {field} {file}: {exc.strerror}")
        inner[f"{field}-data"] = base64.b64encode(data).decode()
        inner.pop(field, None)
    else:
        inner[field] = str(Path(file).expanduser().resolve())
        inner.pop(f"{field}-data", None)


@config_group.command("set-credentials")
@click.argument("name")
@click.option("--client-certificate", default=None, help="Path to a client certificate (PEM).")
@click.option("--client-key", default=None, help="Path to its private key (PEM).")
@click.option("--token", default=None, help="A bearer token.")
@click.option("--embed-certs", is_flag=True, help="Embed the certificate and key in the kubeconfig.")
def set_credentials_cmd(name, client_certificate, client_key, token, embed_certs):
    """Add or change a user entry (kubectl's set-credentials)."""
    if (client_certificate is None) != (client_key is None):
        _fail("--client-certificate and --client-key must be given together")
    path = _path()
    data = _load(path)
    user = _entry(data, "users", name)
    _material(user, "client-certificate", client_certificate, embed_certs)
    _material(user, "client-key", client_key, embed_certs)
    if token is not None:
        user["token"] = token
    _save(path, data)
    click.echo(f'User "{name}" set.')


@config_group.command("set-cluster")
@click.argument("name")
@click.option("--server", default=None, help="The apiserver's HTTPS URL (kubectl's).")
@click.option("--grpc-server", default=None,
              help="kctl's gRPC HOST:PORT, or several comma-separated (extension kctl.dev/grpc).")
@click.option("--certificate-authority", default=None, help="Path to the cluster's CA certificate.")
@click.option("--embed-certs", is_flag=True, help="Embed the CA certificate in the kubeconfig.")
def set_cluster_cmd(name, server, grpc_server, certificate_authority, embed_certs):
    """Add or change a cluster entry (kubectl's set-cluster)."""
    from machinery.kubeconfig import GRPC_EXTENSION, grpc_extension
    path = _path()
    data = _load(path)
    cluster = _entry(data, "clusters", name)
    if server is not None:
        cluster["server"] = server
    if grpc_server is not None:
        exts = [e for e in cluster.get("extensions") or [] if e.get("name") != GRPC_EXTENSION]
        cluster["extensions"] = exts + [grpc_extension(grpc_server)]
    _material(cluster, "certificate-authority", certificate_authority, embed_certs)
    _save(path, data)
    click.echo(f'Cluster "{name}" set.')
