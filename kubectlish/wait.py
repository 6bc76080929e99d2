"""`kctl wait`: block until objects meet a condition, for scripts and tests.

    kctl wait --for=condition=Ready pod/web-1 --timeout=60s
    kctl wait --for=condition=Available=true deploy -l app=web
    kctl wait --for=jsonpath='{.status.phase}'=Running pod/x
    kctl wait --for=delete pod/x

Each object is polled (Get every 0.2 s) until its condition holds; output
and messages are kubectl's (`pod/x condition met`, `error: timed out
waiting for the condition on pods/x`). Polling rather than watching keeps
it simple and is cheap at this cadence for the handful of objects a wait
names.
"""
from __future__ import annotations

import asyncio
import time

import click

from kubectlish.common import Ctx, Failed, err, resolve_refs, run
from machinery import errors


def parse_for(spec: str):
    """-> (mode, a, b): ("delete",), ("condition", type, status), ("jsonpath", template, value)."""
    if spec == "delete":
        return ("delete", None, None)
    if spec.startswith("condition="):
        cond = spec[len("condition="):]
        ctype, _, status = cond.partition("=")
        if not ctype:
            raise Failed(f"error: unrecognized condition: {spec!r}")
        return ("condition", ctype, status or "true")
    if spec.startswith("jsonpath="):
        expr = spec[len("jsonpath="):]
        close = expr.rfind("}")
        if close < 0 or not expr[close + 1:].startswith("="):
            raise Failed(f"error: jsonpath wait format must be --for=jsonpath='{{JSONPath expression}}'=value")
        return ("jsonpath", expr[:close + 1], expr[close + 2:])
    raise Failed(f"error: unrecognized condition: {spec!r}")


def condition_met(obj, mode, a, b) -> bool:
    from kubectlish import jsonpath, printers
    if mode == "condition":
        return any(c.type.lower() == a.lower() and c.status.lower() == b.lower()
                   for c in getattr(obj.status, "conditions", ()))
    if mode == "jsonpath":
        return jsonpath.render(a, printers.manifest(obj)) == b
    return False


async def _run_wait(ctx: Ctx, args, for_, timeout, selector, all_):
    mode, a, b = parse_for(for_)
    client = ctx.client()
    refs = await resolve_refs(ctx, args, selector, all_)
    if not refs:
        raise Failed("error: no matching resources found")
    deadline = time.monotonic() + timeout
    failed = 0
    for info, name in refs:
        if await _wait_one(client, info, name, ctx.namespace, mode, a, b, deadline):
            click.echo(f"{info.qualified_singular}/{name} {'deleted' if mode == 'delete' else 'condition met'}")
        else:
            err(f"error: timed out waiting for the condition on {info.resource}/{name}")
            failed += 1
    return 1 if failed else 0


async def _wait_one(client, info, name, namespace, mode, a, b, deadline) -> bool:
    """True once the object meets the condition (or is gone, for delete)."""
    uid = None
    while True:
        try:
            obj = await client.get(info, name, namespace)
            if mode == "delete":
                if uid is not None and obj.metadata.uid != uid:
                    return True        # replaced by a new object of that name
                uid = obj.metadata.uid
            elif condition_met(obj, mode, a, b):
                return True
        except errors.NotFound:
            if mode == "delete":
                return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


@click.command("wait")
@click.argument("args", nargs=-1, required=True)
@click.option("--for", "for_", required=True,
              help="condition=TYPE[=STATUS], jsonpath='{EXPR}'=VALUE, or delete.")
@click.option("--timeout", default="30s", help="How long to wait (e.g. 30s, 2m).")
@click.option("-l", "--selector", default="", help="Wait for the objects matching this selector.")
@click.option("--all", "all_", is_flag=True, help="Wait for every object of the kind.")
@click.pass_obj
def wait_cmd(ctx: Ctx, args, for_, timeout, selector, all_):
    """Wait for a specific condition on one or many resources."""
    from kubectlish.main import parse_duration
    run(ctx, _run_wait, args, for_, parse_duration(timeout) or 0.0, selector, all_)
