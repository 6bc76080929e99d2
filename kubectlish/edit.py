"""Imperative edits: `label`, `annotate`, `taint`, `scale`, `set image`.

Each is a read-modify-write of one object: get, apply a pure mutation,
update with the read resourceVersion, and on Conflict read again and redo
the mutation (`mutate_object`). The argument parsers (`parse_kv_args`,
`parse_taints`) are pure so they are unit-tested on their own; their error
messages are kubectl's.
"""
from __future__ import annotations

import click

from kubectlish.common import Ctx, Failed, parse_targets, resolve_refs, run, warn
from machinery import errors, kinds

RETRIES = 5


async def mutate_object(client, info, name: str, namespace: str, mutate):
    """get → mutate(obj) → update, retried on Conflict. mutate returns a
    result value, or raises Failed; when it returns the NOCHANGE sentinel
    nothing is written."""
    for attempt in range(RETRIES):
        obj = await client.get(info, name, namespace)
        result = mutate(obj)
        if result is NOCHANGE:
            return obj, result
        try:
            return await client.update(obj), result
        except errors.Conflict:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


NOCHANGE = object()


# ------------------------------------------------------------ label/annotate

def parse_kv_args(args, what: str = "label"):
    """Split `RESOURCE... k=v k2- ...` into (resource words, {k: v}, [removed])."""
    resources, sets, removes = [], {}, []
    for a in args:
        if "=" in a:
            k, _, v = a.partition("=")
            if not k:
                raise Failed(f"error: invalid {what} spec: {a}")
            if k in sets or k in removes:
                raise Failed(f"error: can not both modify and remove the following {what}(s) in the "
                             f"same command: {k}")
            sets[k] = v
        elif a.endswith("-") and len(a) > 1 and resources:
            # A trailing '-' marks a removal once the resource has been named.
            k = a[:-1]
            if k in sets:
                raise Failed(f"error: can not both modify and remove the following {what}(s) in the "
                             f"same command: {k}")
            removes.append(k)
        else:
            resources.append(a)
    if not sets and not removes:
        raise Failed(f"error: at least one {what} update is required")
    return resources, sets, removes


def apply_kv(current: dict, sets: dict, removes: list, overwrite: bool, what: str) -> bool:
    """Mutate `current` (a protobuf map); True if anything changed."""
    changed = False
    for k, v in sets.items():
        if k in current and current[k] != v and not overwrite:
            raise Failed(f"error: '{k}' already has a value ({current[k]}), and --overwrite is false")
        if current.get(k) != v or k not in current:
            current[k] = v
            changed = True
    for k in removes:
        if k in current:
            del current[k]
            changed = True
        else:
            click.echo(f'{what} "{k}" not found.')
    return changed


async def _run_kv(ctx: Ctx, args, overwrite, selector, all_, what: str, past: str) -> int:
    resource_words, sets, removes = parse_kv_args(args, what)
    client = ctx.client()
    refs = await resolve_refs(ctx, resource_words, selector, all_)
    for info, name in refs:
        def mutate(obj):
            field = obj.metadata.labels if what == "label" else obj.metadata.annotations
            before = len(field)
            if not apply_kv(field, sets, removes, overwrite, what):
                return NOCHANGE
            return len(field) < before
        _, shrank = await mutate_object(client, info, name, ctx.namespace, mutate)
        for w in client.warnings if shrank is not NOCHANGE else []:
            warn(w)                   # e.g. Pod Security about a namespace's existing pods
        if shrank is NOCHANGE:
            word = f"not {past}"
        elif what == "label" and shrank and not overwrite:
            word = "unlabeled"
        else:
            word = past
        click.echo(f"{info.qualified_singular}/{name} {word}")
    return 0


def _kv_command(name: str, what: str, past: str, doc: str):
    @click.command(name, help=doc)
    @click.argument("args", nargs=-1, required=True)
    @click.option("--overwrite", is_flag=True, help=f"Allow changing an existing {what}.")
    @click.option("-l", "--selector", default="", help="Apply to the objects matching this selector.")
    @click.option("--all", "all_", is_flag=True, help="Apply to every object of the kind.")
    @click.pass_obj
    def cmd(ctx: Ctx, args, overwrite, selector, all_):
        run(ctx, _run_kv, args, overwrite, selector, all_, what, past)
    return cmd


label_cmd = _kv_command("label", "label", "labeled",
                        "Update the labels on a resource: KIND NAME k=v ... k- (remove).")
annotate_cmd = _kv_command("annotate", "annotation", "annotated",
                           "Update the annotations on a resource: KIND NAME k=v ... k- (remove).")


# --------------------------------------------------------------------- taint

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def parse_taints(specs) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """`k=v:Effect`, `k:Effect` to add; `k-`, `k:Effect-` to remove.
    Returns (adds as (key, value, effect), removes as (key, effect or ''))."""
    adds, removes = [], []
    for spec in specs:
        if spec.endswith("-"):
            body = spec[:-1]
            key, _, effect = body.partition(":")
            key = key.partition("=")[0]
            if effect and effect not in EFFECTS:
                raise Failed(f"error: invalid taint effect: {effect}, unsupported taint effect")
            if not key:
                raise Failed(f"error: invalid taint spec: {spec}")
            removes.append((key, effect))
            continue
        if ":" not in spec:
            raise Failed(f"error: invalid taint spec: {spec}, unknown taint spec format")
        kv, _, effect = spec.rpartition(":")
        key, _, value = kv.partition("=")
        if not effect:
            raise Failed(f"error: invalid taint spec: {spec}, taint effect is required")
        if effect not in EFFECTS:
            raise Failed(f"error: invalid taint effect: {effect}, unsupported taint effect")
        if not key:
            raise Failed(f"error: invalid taint spec: {spec}")
        adds.append((key, value, effect))
    return adds, removes


def apply_taints(node, adds, removes, overwrite: bool) -> str:
    """Mutate node.spec.taints; returns kubectl's verb (tainted/untainted/modified)."""
    from machinery.pb import core_pb2
    taints = list(node.spec.taints)
    for key, effect in removes:
        keep = [t for t in taints if not (t.key == key and (not effect or t.effect == effect))]
        if len(keep) == len(taints):
            shown = f"{key}:{effect}" if effect else key
            raise Failed(f'error: taint "{shown}" not found')
        taints = keep
    for key, value, effect in adds:
        same = [t for t in taints if t.key == key and t.effect == effect]
        if same and not overwrite:
            raise Failed(f"error: node {node.metadata.name} already has {key} taint(s) with same "
                         f"effect(s) and --overwrite is false")
        taints = [t for t in taints if not (t.key == key and t.effect == effect)]
        taints.append(core_pb2.Taint(key=key, value=value, effect=effect))
    del node.spec.taints[:]
    node.spec.taints.extend(taints)
    if adds and removes:
        return "modified"
    return "tainted" if adds else "untainted"


async def _run_taint(ctx: Ctx, kind, args, overwrite, selector, all_):
    info = kinds.resolve(kind) if "/" not in kind else kinds.resolve(kind.split("/")[0])
    if info.kind != "Node":
        raise Failed(f'error: invalid resource type {kind}, only node types are supported')
    names = [kind.split("/", 1)[1]] if "/" in kind else []
    specs = []
    for a in args:
        if ":" in a or a.endswith("-") or "=" in a:
            specs.append(a)
        else:
            names.append(a)
    if not specs:
        raise Failed("error: at least one taint update is required")
    adds, removes = parse_taints(specs)
    client = ctx.client()
    if not names:
        if not (selector or all_):
            raise Failed("error: resource(s) were provided, but no name was specified")
        items, _ = await client.list(info, label_selector=selector)
        names = [n.metadata.name for n in items]
    for name in names:
        _, verb = await mutate_object(client, info, name, "",
                                      lambda n: apply_taints(n, adds, removes, overwrite))
        click.echo(f"node/{name} {verb}")


@click.command("taint")
@click.argument("kind")
@click.argument("args", nargs=-1, required=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing taint with the same key and effect.")
@click.option("-l", "--selector", default="", help="Taint the nodes matching this selector.")
@click.option("--all", "all_", is_flag=True, help="Taint every node.")
@click.pass_obj
def taint_cmd(ctx: Ctx, kind, args, overwrite, selector, all_):
    """Update the taints on nodes: taint nodes NODE key=value:Effect | key:Effect- | key-."""
    run(ctx, _run_taint, kind, args, overwrite, selector, all_)


# --------------------------------------------------------------------- scale

async def _run_scale(ctx: Ctx, args, replicas, current):
    client = ctx.client()
    refs = []
    for t in parse_targets(args, allow_all=False):
        if not t.names:
            raise Failed("error: resource(s) were provided, but no name was specified")
        if t.info.kind not in ("Deployment", "ReplicaSet", "StatefulSet"):
            raise Failed(f'error: the server does not allow this method on the requested resource '
                         f'({t.info.resource} cannot be scaled)')
        refs.extend((t.info, n) for n in t.names)
    for info, name in refs:
        def mutate(obj):
            have = obj.spec.replicas if obj.spec.HasField("replicas") else 1
            if current is not None and have != current:
                raise Failed(f"error: Expected replicas to be {current}, was {have}")
            obj.spec.replicas = replicas
        await mutate_object(client, info, name, ctx.namespace, mutate)
        click.echo(f"{info.qualified_singular}/{name} scaled")


@click.command("scale")
@click.argument("args", nargs=-1, required=True)
@click.option("--replicas", type=click.IntRange(min=0), required=True, help="The new number of replicas.")
@click.option("--current-replicas", type=int, default=None,
              help="Precondition: only scale if the current replicas match.")
@click.pass_obj
def scale_cmd(ctx: Ctx, args, replicas, current_replicas):
    """Set a new size for a deployment or replica set."""
    run(ctx, _run_scale, args, replicas, current_replicas)


# ----------------------------------------------------------------- set image

def pod_spec_of(obj):
    return obj.spec if kinds.of(obj).kind == "Pod" else obj.spec.template.spec


def set_images(obj, images: dict[str, str]) -> bool:
    spec = pod_spec_of(obj)
    names = {c.name for c in spec.containers}
    for cname in images:
        if cname != "*" and cname not in names:
            raise Failed(f'error: unable to find container named "{cname}"')
    changed = False
    for c in spec.containers:
        img = images.get(c.name, images.get("*"))
        if img is not None and c.image != img:
            c.image = img
            changed = True
    return changed


async def _run_set_image(ctx: Ctx, resource, rest):
    names = [a for a in rest if "=" not in a]
    pairs = [a for a in rest if "=" in a]
    if not pairs:
        raise Failed("error: at least one image update is required")
    images = {}
    for p in pairs:
        c, _, img = p.partition("=")
        if not c or not img:
            raise Failed(f"error: invalid image update: {p}")
        images[c] = img
    targets = parse_targets([resource] + names, allow_all=False)
    client = ctx.client()
    for t in targets:
        if t.info.kind not in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Pod"):
            raise Failed(f"error: {t.info.resource} have no pod template")
        for name in t.names:
            _, changed = await mutate_object(
                client, t.info, name, ctx.namespace,
                lambda o: True if set_images(o, images) else NOCHANGE)
            if changed is not NOCHANGE:
                click.echo(f"{t.info.qualified_singular}/{name} image updated")


@click.group("set")
def set_group():
    """Set specific features on objects."""


@set_group.command("image")
@click.argument("resource")
@click.argument("rest", nargs=-1, required=True)
@click.pass_obj
def set_image_cmd(ctx: Ctx, resource, rest):
    """Update the image of containers: set image deploy/web nginx=nginx:1.25 (or *=img)."""
    run(ctx, _run_set_image, resource, rest)

