"""`kctl api-resources` (from the kind registry) and `kctl version`."""
from __future__ import annotations

import click

from kubectlish.common import Ctx, run
from kubectlish.printers import tabwrite

CLIENT_VERSION = "v0.1.0"


def api_resources_table(namespaced: bool | None = None, output: str | None = None,
                        no_headers: bool = False) -> str:
    from machinery import kinds
    rows = sorted(kinds.KINDS, key=lambda k: (k.group, k.plural))
    rows = [k for k in rows if namespaced is None or k.namespaced == namespaced]
    if output == "name":
        return "".join(f"{k.resource}\n" for k in rows)
    lines = [] if no_headers else ["NAME\tSHORTNAMES\tAPIVERSION\tNAMESPACED\tKIND"]
    for k in rows:
        lines.append("\t".join([k.plural, ",".join(k.short_names), k.api_version,
                                "true" if k.namespaced else "false", k.kind]))
    return tabwrite(lines)


@click.command("api-resources")
@click.option("--namespaced", type=bool, default=None, help="true: only namespaced kinds; false: only cluster-scoped.")
@click.option("-o", "--output", type=click.Choice(["name"]), default=None)
@click.option("--no-headers", is_flag=True)
def api_resources_cmd(namespaced, output, no_headers):
    """Print the supported API resources (kinds kctl serves)."""
    click.echo(api_resources_table(namespaced, output, no_headers), nl=False)


async def _run_version(ctx: Ctx, client_only: bool, output):
    import json
    client_info = {"gitVersion": CLIENT_VERSION}
    if client_only:
        if output == "json":
            click.echo(json.dumps({"clientVersion": client_info}, indent=2))
        else:
            click.echo(f"Client Version: {CLIENT_VERSION}")
        return 0
    v = await ctx.client().version()
    if output == "json":
        click.echo(json.dumps({"clientVersion": client_info,
                               "serverVersion": {"gitVersion": v.git_version, "platform": v.platform,
                                                 "etcdVersion": v.etcd_version}}, indent=2))
        return 0
    click.echo(f"Client Version: {CLIENT_VERSION}")
    click.echo(f"Server Version: {v.git_version}")
    if v.etcd_version:
        click.echo(f"etcd Version: {v.etcd_version}")
    return 0


@click.command("version")
@click.option("--client", "client_only", is_flag=True, help="Only the client version (no server needed).")
@click.option("-o", "--output", type=click.Choice(["json"]), default=None)
@click.pass_obj
def version_cmd(ctx: Ctx, client_only, output):
    """Print the client and server version information."""
    run(ctx, _run_version, client_only, output)
