"""`kctl auth can-i` and `kctl auth whoami`, as kubectl prints them
(k8s.io/kubectl/pkg/cmd/auth):

    kctl auth can-i create pods [-n NS | -A]       yes / no (exit 0 / 1)
    kctl auth can-i get pods/web                    a name after the slash
    kctl auth can-i get pods web --subresource=log
    kctl auth can-i get /healthz                    a non-resource URL
    kctl auth can-i --list [-n NS]                  the rules that apply (SelfSubjectRulesReview)
    kctl auth whoami [-o json|yaml]                 ATTRIBUTE / VALUE (SelfSubjectReview)

With `--as`/`--as-group` (global flags) an admin checks someone else's
rights. The questions go over gRPC as create-only reviews
(Client.review); the server answers with its own authorizers.
"""
from __future__ import annotations

import json

import click
from google.protobuf import json_format

from kubectlish.common import Ctx, run, warn
from kubectlish.printers import tabwrite
from machinery import codec, kinds
from machinery.pb import authorization_pb2 as pb

ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "use", "bind",
             "impersonate", "escalate", "*", "proxy")


@click.group("auth")
def auth_group():
    """Inspect authorization."""


def _resource(word: str) -> tuple[str, str]:
    """(group, plural) of what the user typed; unknown names are sent as they are, with kubectl's warning."""
    if word == "*":
        return "*", "*"
    try:
        info = kinds.resolve(word)
    except kinds.UnknownKind:
        plural, _, group = word.partition(".")
        warn(f"the server doesn't have a resource type '{plural}'")
        return group, plural
    return info.group, info.plural


async def _can_i(ctx: Ctx, verb: str, what: str, name: str, subresource: str, all_namespaces: bool, quiet: bool):
    review = pb.SelfSubjectAccessReview(api_version="authorization.k8s.io/v1", kind="SelfSubjectAccessReview")
    if what.startswith("/"):
        review.spec.non_resource_attributes.path, review.spec.non_resource_attributes.verb = what, verb
    else:
        word, _, slash_name = what.partition("/")
        group, plural = _resource(word)
        if verb not in ALL_VERBS:
            warn(f"verb '{verb}' is not a known verb")
        r = review.spec.resource_attributes
        r.verb, r.group, r.resource, r.subresource = verb, group, plural, subresource
        r.name = slash_name or name
        r.namespace = "" if all_namespaces else ctx.namespace
    out = await ctx.client().review(review)
    if not quiet:
        answer = "yes" if out.status.allowed else "no"
        reason = out.status.reason if not out.status.allowed else ""
        click.echo(f"{answer} - {reason}" if reason else answer)
    return 0 if out.status.allowed else 1


def _cell(values) -> str:
    return "[" + " ".join(values) + "]"


async def _list(ctx: Ctx):
    review = pb.SelfSubjectRulesReview(api_version="authorization.k8s.io/v1", kind="SelfSubjectRulesReview")
    review.spec.namespace = ctx.namespace
    out = await ctx.client().review(review)
    lines = ["Resources\tNon-Resource URLs\tResource Names\tVerbs"]
    for r in out.status.resource_rules:
        for g in r.api_groups or [""]:
            for res in r.resources:
                qualified = f"{res}.{g}" if g else res
                lines.append(f"{qualified}\t[]\t{_cell(r.resource_names)}\t{_cell(r.verbs)}")
    for r in out.status.non_resource_rules:
        lines.append(f"\t{_cell(r.non_resource_urls)}\t[]\t{_cell(r.verbs)}")
    click.echo(tabwrite(lines), nl=False)
    return 0


@auth_group.command("can-i")
@click.argument("verb", required=False)
@click.argument("resource", required=False)
@click.argument("name", required=False, default="")
@click.option("-A", "--all-namespaces", is_flag=True, help="Check in all namespaces.")
@click.option("--subresource", default="", help="SubResource such as pod/log or deployment/scale.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; only the exit code says yes (0) or no (1).")
@click.option("--list", "list_", is_flag=True, help="List all allowed actions in the namespace.")
@click.pass_obj
def can_i_cmd(ctx: Ctx, verb, resource, name, all_namespaces, subresource, quiet, list_):
    """Check whether an action is allowed."""
    if list_:
        run(ctx, _list)
    if not verb or not resource:
        raise click.UsageError("you must specify two arguments: verb resource or verb resource/resourceName.")
    run(ctx, _can_i, verb, resource, name, subresource, all_namespaces, quiet)


async def _whoami(ctx: Ctx, output: str):
    out = await ctx.client().review(pb.SelfSubjectReview(api_version="authentication.k8s.io/v1",
                                                         kind="SelfSubjectReview"))
    if output:
        data = json_format.MessageToDict(out)
        click.echo(json.dumps(data, indent=4) if output == "json" else codec.to_yaml(data), nl=output == "json")
        return 0
    ui = out.status.user_info
    lines = ["ATTRIBUTE\tVALUE", f"Username\t{ui.username}"]
    if ui.uid:
        lines.append(f"UID\t{ui.uid}")
    if ui.groups:
        lines.append(f"Groups\t{_cell(ui.groups)}")
    for key, values in sorted(json_format.MessageToDict(ui.extra).items()):
        lines.append(f"Extra: {key}\t{_cell(values if isinstance(values, list) else [values])}")
    click.echo(tabwrite(lines), nl=False)
    return 0


@auth_group.command("whoami")
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default=None, help="Output format.")
@click.pass_obj
def whoami_cmd(ctx: Ctx, output):
    """Print who the server says you are."""
    run(ctx, _whoami, output)
