"""`kctl apply` and `kctl create`.

apply, per document: decode, then get the live object; absent → create it
with the last-applied annotation; present → three-way merge (merge.py) of
last-applied, manifest and live, sent first as a dry-run Update. If the
dry-run result equals the live object (ignoring resourceVersion, the
last-applied annotation and managedFields) nothing is written and the object is `unchanged`;
otherwise the merged object is written (`configured`). A Conflict (someone
wrote in between) re-reads and re-merges, a few times.

Files are all-or-nothing at decode time: every document of a file is decoded
before any is sent, and a file with an undecodable document (unknown kind,
unknown field) applies nothing — each bad document is named — while the
other files go ahead. Server-side failures (Invalid, namespace missing) are
per document, as in kubectl. The exit code is 1 if anything failed.
Writes are recorded in managedFields as `kctl-client-side-apply`.
"""
from __future__ import annotations

import click

from kubectlish import merge
from kubectlish.common import (Ctx, Failed, decode_documents, err, format_api_error,
                               manifest_files, ref, set_namespace, warn)
from machinery import codec, errors, kinds

CONFLICT_RETRIES = 5
FIELD_MANAGER = "kctl-client-side-apply"   # kubectl's is kubectl-client-side-apply


def _prune(v):
    """Drop empty maps/lists: an unset and an empty sub-message mean the same."""
    if isinstance(v, dict):
        out = {k: _prune(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in ({}, [])}
    if isinstance(v, list):
        return [_prune(x) for x in v]
    return v


def _clean_for_compare(obj) -> dict:
    o = codec.copy(obj)
    o.metadata.resource_version = ""
    o.metadata.annotations.pop(merge.LAST_APPLIED, None)
    o.metadata.ClearField("managed_fields")      # bookkeeping of the write (its time), not a change
    return _prune(codec.to_dict(o))


def _print_warnings(client) -> None:
    for w in getattr(client, "warnings", None) or []:
        warn(w)
    client.warnings = []


async def apply_object(client, obj, dry_run: bool = False) -> str:
    """Create or three-way-update one decoded object; returns the verb printed
    after its name (`created`, `configured`, `unchanged`). Raises ApiError.
    With dry_run every write is a server-side dry run: validated and
    defaulted by the apiserver, stored nowhere."""
    info = kinds.of(obj)
    name, ns = obj.metadata.name, obj.metadata.namespace
    if not name:
        raise Failed("error: resource name may not be empty")
    manifest = merge.strip_server_fields(codec.to_dict(obj))
    desired = merge.with_last_applied(manifest)
    for attempt in range(CONFLICT_RETRIES):
        try:
            live = await client.get(info, name, ns)
        except errors.NotFound:
            try:
                await client.create(codec.from_dict(desired), dry_run=dry_run, field_manager=FIELD_MANAGER)
            except errors.AlreadyExists:
                continue  # created by someone else meanwhile: merge into it
            _print_warnings(client)
            return "created"
        live_d = codec.to_dict(live)
        last = merge.read_last_applied(live_d)
        if last is None:
            warn(f"resource {info.plural}/{name} is missing the {merge.LAST_APPLIED} annotation "
                 "which is required by kctl apply. kctl apply should only be used on resources "
                 "created declaratively by either kctl create --save-config or kctl apply. "
                 "The missing annotation will be patched automatically.")
        merged = codec.from_dict(merge.three_way(last, desired, live_d))
        merged.metadata.resource_version = live.metadata.resource_version
        try:
            preview = await client.update(merged, dry_run=True, field_manager=FIELD_MANAGER)
            if _clean_for_compare(preview) == _clean_for_compare(live):
                client.warnings = []
                return "unchanged"
            if not dry_run:
                await client.update(merged, field_manager=FIELD_MANAGER)
        except errors.Conflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
            continue
        _print_warnings(client)
        return "configured"
    raise errors.Conflict(f'Operation cannot be fulfilled on {info.resource} "{name}": '
                          "the object has been modified; please apply your changes to the latest version")


def _decode_files(ctx: Ctx, filenames, recursive) -> tuple[list, int]:
    """Decoded documents of all files, and the number of failures. A file
    with any bad document contributes no objects."""
    good, failures = [], 0
    for path in manifest_files(filenames, recursive):
        docs = decode_documents(path)
        bad = [d for d in docs if d.error]
        for d in docs:
            if d.obj is not None:
                try:
                    set_namespace(ctx, d.obj)
                except Failed as exc:
                    d.error = exc.message
                    bad.append(d)
        for d in bad:
            err(d.error)
        failures += len(bad)
        if bad:
            skipped = [d for d in docs if not d.error]
            if skipped:
                err(f'error: nothing from "{docs[0].source}" was applied: '
                    f'{len(bad)} of its {len(docs)} documents could not be decoded; '
                    f'not applied: {", ".join(ref(d.obj) for d in skipped)}')
            continue
        good.extend(docs)
    return good, failures


async def run_apply(ctx: Ctx, filenames, recursive, output, dry_run="none") -> int:
    docs, failures = _decode_files(ctx, filenames, recursive)
    if not docs and not failures:
        raise Failed("error: no objects passed to apply")
    client = ctx.client()
    for d in docs:
        try:
            verb = await apply_object(client, d.obj, dry_run=dry_run != "none")
        except (errors.Unavailable, errors.Timeout):
            raise
        except errors.ApiError as exc:
            action = "creating" if isinstance(exc, errors.NotFound) or not exc.name else "applying"
            err(format_api_error(exc, action, d.source))
            failures += 1
            continue
        except Failed as exc:
            err(exc.message)
            failures += 1
            continue
        suffix = {"none": "", "server": " (server dry run)", "client": " (dry run)"}[dry_run]
        click.echo(ref(d.obj) if output == "name" else f"{ref(d.obj)} {verb}{suffix}")
    return 1 if failures else 0


async def run_create(ctx: Ctx, filenames, recursive, save_config, output) -> int:
    docs, failures = _decode_files(ctx, filenames, recursive)
    if not docs and not failures:
        raise Failed("error: no objects passed to create")
    client = ctx.client()
    for d in docs:
        obj = d.obj
        if save_config:
            manifest = merge.strip_server_fields(codec.to_dict(obj))
            obj = codec.from_dict(merge.with_last_applied(manifest))
        try:
            created = await client.create(obj)
        except (errors.Unavailable, errors.Timeout):
            raise
        except errors.ApiError as exc:
            err(format_api_error(exc, "creating", d.source))
            failures += 1
            continue
        _print_warnings(client)
        click.echo(ref(created) if output == "name" else f"{ref(created)} created")
    return 1 if failures else 0


async def run_create_namespace(ctx: Ctx, name: str, output) -> int:
    from machinery import kinds as _k
    ns = _k.new("Namespace")
    ns.metadata.name = name
    created = await ctx.client().create(ns)
    click.echo(ref(created) if output == "name" else f"{ref(created)} created")
    return 0


def _file_options(f, required=True):
    f = click.option("-R", "--recursive", is_flag=True,
                     help="Process the directory used in -f recursively.")(f)
    f = click.option("-f", "--filename", "filenames", multiple=True, required=required,
                     help="File, directory or - (stdin) with the manifests.")(f)
    return click.option("-o", "--output", type=click.Choice(["name"]), default=None,
                        help="Print only resource/name.")(f)


@click.command("apply")
@_file_options
@click.option("--dry-run", type=click.Choice(["none", "server", "client"]), default="none",
              help="Only show what would happen. Both modes ask the apiserver (validation, "
                   "defaults) with a dry-run request; nothing is stored.")
@click.pass_obj
def apply_cmd(ctx: Ctx, filenames, recursive, output, dry_run):
    """Apply a configuration to a resource by file name or stdin (three-way merge)."""
    from kubectlish.common import run
    run(ctx, run_apply, filenames, recursive, output, dry_run)


class _CreateGroup(click.Group):
    """`create -f FILE` and `create namespace|deployment ...`; short names too."""
    ALIASES = {"ns": "namespace", "deploy": "deployment", "cm": "configmap"}

    def get_command(self, ctx, name):
        return super().get_command(ctx, self.ALIASES.get(name, name))


@click.group("create", cls=_CreateGroup, invoke_without_command=True)
@(lambda f: _file_options(f, required=False))
@click.option("--save-config", is_flag=True, help="Store the last-applied configuration (for a later apply).")
@click.pass_context
def create_cmd(click_ctx, filenames, recursive, output, save_config):
    """Create resources from files or stdin, or: create namespace|deployment|job|configmap|secret|token NAME ..."""
    from kubectlish.common import run
    if click_ctx.invoked_subcommand is not None:
        if filenames:
            raise click.UsageError("use either -f FILE or a subcommand")
        return
    if not filenames:
        raise click.UsageError("Missing option '-f' / '--filename'.")
    run(click_ctx.obj, run_create, filenames, recursive, save_config, output)


@create_cmd.command("namespace")
@click.argument("name")
@click.option("-o", "--output", type=click.Choice(["name"]), default=None)
@click.pass_obj
def create_namespace_cmd(ctx: Ctx, name, output):
    """Create a namespace."""
    from kubectlish.common import run
    run(ctx, run_create_namespace, name, output)


def _add_generators():
    from kubectlish.create_data import create_configmap_cmd, create_secret_group
    from kubectlish.create_job import create_job_cmd
    from kubectlish.create_token import create_token_cmd
    from kubectlish.generators import create_deployment_cmd
    create_cmd.add_command(create_deployment_cmd)
    create_cmd.add_command(create_configmap_cmd)
    create_cmd.add_command(create_secret_group)
    create_cmd.add_command(create_job_cmd)
    create_cmd.add_command(create_token_cmd)
    from kubectlish import create_rbac
    for cmd in (create_rbac.create_role_cmd, create_rbac.create_clusterrole_cmd, create_rbac.create_rolebinding_cmd,
                create_rbac.create_clusterrolebinding_cmd):
        create_cmd.add_command(cmd)


_add_generators()
