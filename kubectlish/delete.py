"""`kctl delete -f FILE | KIND NAME... | KIND -l SEL | KIND --all`.

Follows kubectl's delete: `--grace-period=0` without `--force` becomes 1
(kubectl's guard against accidental immediate deletion), `--force` without a
grace period means 0, and forced deletion prints kubectl's warning and
`pod "x" force deleted`. `--cascade` maps to the propagation policy
(background, the default; orphan; foreground). Like kubectl, delete waits
(--wait, default on) until the objects are gone — a pod bound to a node is
only gone once its node agent has stopped it — polling Get until NotFound,
bounded by --timeout (0: wait as long as it takes).
"""
from __future__ import annotations

import asyncio
import time

import click

from kubectlish.common import (Ctx, Failed, decode_documents, err, format_api_error, manifest_files,
                               parse_targets, run, set_namespace)
from machinery import errors, kinds

FORCE_WARNING = ("Warning: Immediate deletion does not wait for confirmation that the running resource "
                 "has been terminated. The resource may continue to run on the cluster indefinitely.")
CONCURRENCY = 16
CASCADE = {"background": "Background", "true": "Background", "orphan": "Orphan", "false": "Orphan",
           "foreground": "Foreground"}


async def _wait_gone(client, pending, timeout: float) -> bool:
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while pending:
        still = []
        for info, name, ns, uid in pending:
            try:
                obj = await client.get(info, name, ns)
                if uid and obj.metadata.uid != uid:
                    continue  # a new object of that name: ours is gone
                still.append((info, name, ns, uid))
            except errors.NotFound:
                pass
        pending = still
        if not pending:
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def run_delete(ctx: Ctx, args, filenames, recursive, grace_period, force, cascade, delete_all,
                     selector, ignore_not_found, wait, timeout, all_namespaces) -> int:
    if grace_period == 0 and not force:
        grace_period = 1
    if force and grace_period < 0:
        grace_period = 0
    propagation = CASCADE.get(cascade.lower())
    if propagation is None:
        raise Failed(f'error: invalid cascade value ({cascade}). Must be "background", "foreground", or "orphan".')
    client = ctx.client()
    # (info, name, namespace, source) of everything to delete
    todo: list[tuple[kinds.KindInfo, str, str, str]] = []
    failures = 0
    if filenames:
        if args:
            raise Failed("error: cannot specify both resource names and -f")
        for path in manifest_files(filenames, recursive):
            for d in decode_documents(path):
                if d.error:
                    err(d.error)
                    failures += 1
                    continue
                set_namespace(ctx, d.obj)
                todo.append((kinds.of(d.obj), d.obj.metadata.name, d.obj.metadata.namespace, d.source))
    else:
        if not args:
            raise Failed("error: You must provide one or more resources by argument or filename.")
        targets = parse_targets(args)
        for t in targets:
            if t.names:
                if delete_all or selector:
                    raise Failed("error: name cannot be provided when a selector is specified")
                todo.extend((t.info, n, ctx.namespace, "") for n in t.names)
            elif delete_all or selector:
                ns = "" if all_namespaces else ctx.namespace
                items, _ = await client.list(t.info, ns, label_selector=selector)
                todo.extend((t.info, o.metadata.name, o.metadata.namespace, "") for o in items)
            else:
                raise Failed("error: resource(s) were provided, but no name was specified")
        if not todo:
            err("No resources found")
            return 0
    if force:
        err(FORCE_WARNING)
    pending = []
    word = "force deleted" if force and grace_period == 0 else "deleted"

    async def one(info, name, ns):
        try:
            return await client.delete(info, name, ns, propagation=propagation,
                                       grace_period=None if grace_period < 0 else grace_period)
        except errors.ApiError as exc:
            return exc

    # Deletes go out CONCURRENCY at a time; results are reported in order.
    for start in range(0, len(todo), CONCURRENCY):
        batch = todo[start:start + CONCURRENCY]
        results = await asyncio.gather(*(one(i, n, ns) for i, n, ns, _ in batch))
        for (info, name, ns, source), res in zip(batch, results):
            if isinstance(res, (errors.Unavailable, errors.Timeout)):
                raise res
            if isinstance(res, errors.NotFound) and ignore_not_found:
                continue
            if isinstance(res, errors.ApiError):
                err(format_api_error(res, "deleting", source))
                failures += 1
                continue
            obj, gone = res
            click.echo(f'{info.qualified_singular} "{name}" {word}')
            if not gone:   # graceful deletion or finalizers: wait for it
                pending.append((info, name, ns, obj.metadata.uid))
    if wait and pending:
        if not await _wait_gone(client, pending, timeout):
            err("error: timed out waiting for the condition")
            failures += 1
    return 1 if failures else 0


@click.command("delete")
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True, help="Delete the objects in these files.")
@click.option("-R", "--recursive", is_flag=True, help="Process directories in -f recursively.")
@click.option("--grace-period", type=int, default=-1,
              help="Seconds given to the resource to terminate gracefully (-1: the object's default).")
@click.option("--force", is_flag=True, help="Remove immediately, bypassing graceful deletion.")
@click.option("--now", is_flag=True, help="Same as --grace-period=1 (signal the resource to stop at once).")
@click.option("--cascade", default="background",
              help="background (default), orphan or foreground: what happens to dependents.")
@click.option("--all", "delete_all", is_flag=True, help="Delete all resources of the kinds given.")
@click.option("-l", "--selector", default="", help="Delete the objects matching this label selector.")
@click.option("-A", "--all-namespaces", is_flag=True, help="With --all or -l: in every namespace.")
@click.option("--ignore-not-found", is_flag=True, help="Treat missing objects as deleted.")
@click.option("--wait/--no-wait", default=True, help="Wait until the objects are gone (default on).")
@click.option("--timeout", type=float, default=0, help="Seconds to wait when --wait (0: forever).")
@click.pass_obj
def delete_cmd(ctx: Ctx, args, filenames, recursive, grace_period, force, now, cascade, delete_all, selector,
               all_namespaces, ignore_not_found, wait, timeout):
    """Delete resources by file names, stdin, resources and names, or by label selector."""
    if now:
        if grace_period != -1:
            raise click.UsageError("--now and --grace-period cannot be specified together")
        grace_period = 1
    run(ctx, run_delete, args, filenames, recursive, grace_period, force, cascade, delete_all, selector,
        ignore_not_found, wait, timeout, all_namespaces)
