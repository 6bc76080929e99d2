"""`kctl get`: tables, -o wide|yaml|json|name, selectors, -A, --watch.

Objects named on the command line are fetched one by one (missing ones are
reported after the rest, as kubectl does, and make the exit code 1); bare
kinds are listed with the label/field selectors. Several kinds (`pods,svc`,
`all`) print one table per kind, separated by a blank line, with names
prefixed by the kind. `--watch` lists, prints, then watches from the list's
resourceVersion and prints one row per change, aligned to the first table's
columns; it ends on Ctrl-C or after --request-timeout. As in kubectl,
metadata.managedFields are left out of every output unless
--show-managed-fields.

One deliberate difference from kubectl: `get events` lists events oldest
first (by last timestamp) instead of in name order, which is what people
usually read them for.
"""
from __future__ import annotations

import asyncio

import click

from kubectlish import printers
from kubectlish.common import Ctx, Failed, err, format_api_error, parse_targets, run
from machinery import errors


async def fetch(ctx: Ctx, target, *, all_namespaces: bool, selector: str, field_selector: str):
    """(objects, list resourceVersion, errors) for one Target."""
    client = ctx.client()
    ns = "" if all_namespaces else ctx.namespace
    if not target.names:
        items, rv = await client.list(target.info, ns, label_selector=selector,
                                      field_selector=field_selector)
        if target.info.kind == "Event":
            items.sort(key=printers.event_sort_key)
        return items, rv, []
    if selector:
        raise Failed("error: name cannot be provided when a selector is specified")
    objs, errs = [], []
    for name in target.names:
        try:
            objs.append(await client.get(target.info, name, ctx.namespace))
        except errors.NotFound as exc:
            errs.append(exc)
    return objs, "", errs


def _no_resources(ctx: Ctx, all_namespaces: bool, namespaced: bool) -> str:
    if all_namespaces or not namespaced:
        return "No resources found"
    return f"No resources found in {ctx.namespace} namespace."


def sort_objects(objs: list, expr: str) -> list:
    """--sort-by: order by a jsonpath value (numbers numerically; missing first)."""
    from kubectlish import jsonpath
    tmpl = expr if expr.startswith("{") else "{" + expr + "}"

    def key(o):
        v = jsonpath.render(tmpl, printers.manifest(o))
        try:
            return (1, float(v), "")
        except ValueError:
            return (1 if v else 0, 0.0, v)
    return sorted(objs, key=key)


def custom_columns(spec: str, objs: list, no_headers: bool) -> str:
    """-o custom-columns=HEADER:.json.path,...; empty cells print <none>."""
    from kubectlish import jsonpath
    cols = []
    for part in spec.split(","):
        head, sep, path = part.partition(":")
        if not sep or not head or not path:
            raise Failed(f"error: custom-columns format must be HEADER:JSONPATH[,...], got {part!r}")
        cols.append((head, path if path.startswith("{") else "{" + path + "}"))
    lines = [] if no_headers else ["\t".join(h for h, _ in cols)]
    for o in objs:
        m = printers.manifest(o)
        cells = []
        for _, path in cols:
            try:
                v = jsonpath.render(path, m)
            except jsonpath.JSONPathError as exc:
                raise Failed(f"error: {exc}") from None
            cells.append(v.replace(" ", ",") if v else printers.NONE)
        lines.append("\t".join(cells))
    return printers.tabwrite(lines)


def _omit_managed_fields(objs) -> None:
    """kubectl's OmitManagedFieldsPrinter: managedFields are shown only with --show-managed-fields."""
    for o in objs:
        o.metadata.ClearField("managed_fields")


async def run_get(ctx: Ctx, args, output, selector, field_selector, all_namespaces, watch, watch_only,
                  show_labels, no_headers, show_kind, ignore_not_found, sort_by="",
                  show_managed_fields=False) -> int:
    template = None
    if output and output.startswith("jsonpath="):
        template, output = output[len("jsonpath="):], "jsonpath"
    elif output and output.startswith("custom-columns="):
        template, output = output[len("custom-columns="):], "custom-columns"
    elif output not in (None, "wide", "yaml", "json", "name"):
        raise Failed(f"error: unable to match a printer suitable for the output format \"{output}\", "
                     "allowed formats are: custom-columns,json,jsonpath,name,wide,yaml")
    targets = parse_targets(args)
    multi = len(targets) > 1
    show_kind = show_kind or multi
    wide = output == "wide"
    results = []
    failures = []
    for t in targets:
        objs, rv, errs = await fetch(ctx, t, all_namespaces=all_namespaces, selector=selector,
                                     field_selector=field_selector)
        if not show_managed_fields:
            _omit_managed_fields(objs)
        if sort_by:
            objs = sort_objects(objs, sort_by)
        results.append((t, objs, rv))
        if not ignore_not_found:
            failures.extend(errs)
    if watch or watch_only:
        if multi or len(targets[0].names) > 1:
            raise Failed("error: you may only specify a single resource type")
    all_objs = [o for _, objs, _ in results for o in objs]
    if not watch_only:
        if output == "jsonpath":
            from kubectlish import jsonpath
            single = not multi and len(targets[0].names) == 1
            data = (printers.manifest(all_objs[0]) if single and all_objs else
                    {"apiVersion": "v1", "kind": "List", "items": [printers.manifest(o) for o in all_objs]})
            try:
                click.echo(jsonpath.render(template, data), nl=False)
            except jsonpath.JSONPathError as exc:
                raise Failed(f"error: error parsing jsonpath {template}, {exc}") from None
        elif output == "custom-columns":
            click.echo(custom_columns(template, all_objs, no_headers), nl=False)
        elif output in ("yaml", "json", "name"):
            single = not multi and len(targets[0].names) == 1
            if all_objs or not single:
                if output != "name" or all_objs:
                    click.echo(printers.render(all_objs, output, single=single), nl=False)
        else:
            first = True
            for t, objs, _ in results:
                if not objs:
                    continue
                if not first:
                    click.echo("")
                first = False
                click.echo(printers.table(t.info.kind, objs, wide=wide, all_namespaces=all_namespaces,
                                          show_labels=show_labels, show_kind=show_kind,
                                          no_headers=no_headers), nl=False)
        if not all_objs and not failures and not any(t.names for t in targets) \
                and output not in ("yaml", "json", "jsonpath", "custom-columns"):
            err(_no_resources(ctx, all_namespaces, targets[0].info.namespaced))
    for exc in failures:
        err(format_api_error(exc))
    if watch or watch_only:
        t, objs, rv = results[0]
        fs = field_selector
        if t.names:
            fs = ",".join(x for x in (fs, f"metadata.name={t.names[0]}") if x)
            if objs:  # a Get has no list revision: watch from the object's own
                rv = objs[0].metadata.resource_version
        await _watch(ctx, t, rv, output=output, selector=selector, field_selector=fs,
                     all_namespaces=all_namespaces, show_labels=show_labels, show_kind=show_kind,
                     header_printed=bool(objs) and not watch_only and not no_headers, template=template,
                     show_managed_fields=show_managed_fields)
    return 1 if failures else 0


async def _watch(ctx: Ctx, target, rv, *, output, selector, field_selector, all_namespaces,
                 show_labels, show_kind, header_printed, template=None, show_managed_fields=False):
    client = ctx.client()
    kind = target.info.kind
    wide = output == "wide"
    hdr = "\t".join(printers.headers(kind, wide=wide, all_namespaces=all_namespaces,
                                     show_labels=show_labels))

    async def loop():
        printed_header = header_printed
        stream = client.watch(target.info, "" if all_namespaces else ctx.namespace, resource_version=rv,
                              label_selector=selector, field_selector=field_selector)
        async for ev in stream:
            if ev.object is None or ev.type == "BOOKMARK":
                continue
            if not show_managed_fields:
                _omit_managed_fields([ev.object])
            if output in ("yaml", "json"):
                if output == "yaml":
                    click.echo("---")
                click.echo(printers.render([ev.object], output, single=True), nl=False)
                continue
            if output == "name":
                click.echo(printers.render([ev.object], "name", single=True), nl=False)
                continue
            if output == "jsonpath":
                from kubectlish import jsonpath
                click.echo(jsonpath.render(template, printers.manifest(ev.object)), nl=False)
                continue
            cells = printers.row(ev.object, wide=wide, all_namespaces=all_namespaces,
                                 show_labels=show_labels, show_kind=show_kind)
            lines = printers.tabwrite([hdr, "\t".join(cells)]).splitlines()
            if not printed_header:
                click.echo(lines[0])
                printed_header = True
            click.echo(lines[1])

    try:
        if ctx.request_timeout:
            await asyncio.wait_for(loop(), ctx.request_timeout)
        else:
            await loop()
    except asyncio.TimeoutError:
        pass


@click.command("get")
@click.argument("args", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output format: wide, yaml, json, name, jsonpath=TEMPLATE, custom-columns=H:PATH,...")
@click.option("-l", "--selector", default="", help="Label selector (e.g. app=web,tier!=db).")
@click.option("--field-selector", default="", help="Field selector (e.g. spec.nodeName=node1).")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-w", "--watch", is_flag=True, help="After listing, watch for changes.")
@click.option("--watch-only", is_flag=True, help="Watch for changes without listing first.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
@click.option("--no-headers", is_flag=True, help="Omit the header line.")
@click.option("--show-kind", is_flag=True, help="Prefix names with their kind.")
@click.option("--ignore-not-found", is_flag=True, help="Missing named objects are not an error.")
@click.option("--sort-by", default="", help="Sort by a jsonpath field, e.g. .metadata.creationTimestamp.")
@click.option("--show-managed-fields", is_flag=True, help="Keep metadata.managedFields in -o json|yaml|jsonpath.")
@click.pass_obj
def get_cmd(ctx: Ctx, args, output, selector, field_selector, all_namespaces, watch, watch_only,
            show_labels, no_headers, show_kind, ignore_not_found, sort_by, show_managed_fields):
    """Display one or many resources (get pods, get deploy/web, get pods,svc, get all)."""
    run(ctx, run_get, args, output, selector, field_selector, all_namespaces, watch, watch_only,
        show_labels, no_headers, show_kind, ignore_not_found, sort_by, show_managed_fields)
