"""`kctl patch KIND NAME -p PATCH [--type strategic|merge|json]`.

The server has no Patch verb, so kctl patches client-side: get the object,
apply the patch to its manifest, Update with the read resourceVersion, and
on Conflict start again from a fresh read.

* strategic (default): a map merge where lists with a Kubernetes merge key
  (containers, env, ports, volumes, ...) merge item by item — merge.py's
  three-way merge with an empty "last applied"; `null` deletes a field.
* merge: RFC 7386 JSON merge patch (lists replaced whole, `null` deletes).
* json: RFC 6902 operations add / remove / replace / test on JSON pointers.
"""
from __future__ import annotations

import copy

import click

from kubectlish import merge
from kubectlish.common import Ctx, Failed, run, typed_name
from machinery import codec, errors


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list:
    if path == "":
        return []
    if not path.startswith("/"):
        raise Failed(f"error: invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops: list):
    """RFC 6902 add/remove/replace/test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if not parts:
            raise Failed("error: patching the whole object is not supported")
        parent = doc
        try:
            for p in parts[:-1]:
                parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        except (KeyError, IndexError, ValueError) as exc:
            raise Failed(f"error: path {op.get('path')!r} does not exist") from exc
        last = parts[-1]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
        if kind == "add":
            if isinstance(parent, list):
                parent.insert(idx, op["value"])
            else:
                parent[last] = op["value"]
        elif kind in ("remove", "replace", "test"):
            try:
                cur = parent[idx] if isinstance(parent, list) else parent[last]
            except (KeyError, IndexError) as exc:
                raise Failed(f"error: path {op.get('path')!r} does not exist") from exc
            if kind == "test":
                if cur != op.get("value"):
                    raise Failed(f"error: test failed at {op.get('path')!r}")
            elif kind == "remove":
                del parent[idx if isinstance(parent, list) else last]
            else:
                parent[idx if isinstance(parent, list) else last] = op["value"]
        else:
            raise Failed(f"error: unsupported JSON patch operation {kind!r}")
    return doc


def apply_patch(live: dict, patch, kind: str) -> dict:
    if kind == "strategic":
        if not isinstance(patch, dict):
            raise Failed("error: a strategic merge patch must be a JSON object")
        return merge.three_way({}, patch, live, live_order=True)
    if kind == "merge":
        return merge_patch(live, patch)
    if not isinstance(patch, list):
        raise Failed("error: a JSON patch must be a list of operations")
    return json_patch(live, patch)


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
        patched = apply_patch(live_d, patch, kind)
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
