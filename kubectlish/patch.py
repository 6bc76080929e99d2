"""`kctl patch KIND NAME -p PATCH [--type strategic|merge|json]`.

The server has no Patch verb, so kctl patches client-side: get the object,
apply the patch to its manifest, Update with the read resourceVersion, and
on Conflict start again from a fresh read.

The patch code is the apiserver's (machinery.patch), so kctl and kubectl
patch alike:

* strategic (default): Kubernetes' strategic merge patch — lists with a
  merge key (containers, env, ports, volumes, ...) merge item by item,
  `$patch` directives, `null` deletes a field.
* merge: RFC 7386 JSON merge patch (lists replaced whole, `null` deletes).
* json: RFC 6902 operations on JSON pointers.
"""
from __future__ import annotations

import json

import click

from kubectlish.common import Ctx, Failed, run, typed_name
from machinery import codec, errors
from machinery import patch as patches


_MEDIA = {"strategic": patches.STRATEGIC_MERGE_PATCH, "merge": patches.MERGE_PATCH, "json": patches.JSON_PATCH}


def apply_patch(live: dict, patch, kind: str, info) -> dict:
    """The server's own patch code (machinery.patch), run client-side: kctl's API has no Patch verb."""
    if kind == "strategic" and not isinstance(patch, dict):
        raise Failed("error: a strategic merge patch must be a JSON object")
    if kind == "json" and not isinstance(patch, list):
        raise Failed("error: a JSON patch must be a list of operations")
    try:
        return patches.apply_patch(_MEDIA[kind], live, json.dumps(patch).encode(), info)
    except errors.ApiError as exc:
        detail = "; ".join(c.message for c in exc.causes)
        raise Failed(f"error: {exc.message}" + (f": {detail}" if detail else "")) from exc


async def _run_patch(ctx: Ctx, resource, name, patch_text, kind):
    import yaml
    info, name = typed_name(resource, name)
    try:
        patch = yaml.safe_load(patch_text)
    except yaml.YAMLError as exc:
        raise Failed(f"error: unable to parse the patch: {exc}") from exc
    client = ctx.client()
    for attempt in range(5):
        live = await client.get(info, name, ctx.namespace)
        live_d = codec.to_dict(live)
        patched = apply_patch(live_d, patch, kind, info)
        if patched == live_d:
            click.echo(f"{info.qualified_singular}/{name} patched (no change)")
            return 0
        try:
            obj = codec.from_dict(patched)
        except codec.DecodeError as exc:
            raise Failed(f"error: {exc}") from exc
        obj.metadata.resource_version = live.metadata.resource_version
        try:
            await client.update(obj)
        except errors.Conflict:
            if attempt == 4:
                raise
            continue
        click.echo(f"{info.qualified_singular}/{name} patched")
        return 0


@click.command("patch")
@click.argument("resource")
@click.argument("name", required=False)
@click.option("-p", "--patch", "patch_text", required=True, help="The patch, JSON or YAML.")
@click.option("--type", "kind", type=click.Choice(["strategic", "merge", "json"]), default="strategic",
              help="strategic (default, keyed lists merge), merge (RFC 7386) or json (RFC 6902).")
@click.pass_obj
def patch_cmd(ctx: Ctx, resource, name, patch_text, kind):
    """Update fields of a resource with a patch (applied client-side, then Update)."""
    run(ctx, _run_patch, resource, name, patch_text, kind)
