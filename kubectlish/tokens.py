"""`kctl token create|list|delete` (kubeadm token): bootstrap tokens as
Secrets in kube-system (machinery/bootstraptoken.py).

    kctl token create [TOKEN] [--ttl 24h] [--usages signing,authentication]
                      [--groups system:bootstrappers:...] [--description ...]
                      [--print-join-command]
    kctl token list
    kctl token delete TOKEN|ID...

`--print-join-command` prints the `kctl join` line a new node runs: the
server and CA come from the kube-public/cluster-info ConfigMap the
controller manager's bootstrap signer publishes, the CA hash is computed
from that CA.
"""
from __future__ import annotations

import time

import click

from kubectlish.common import Ctx, Failed, run
from machinery import bootstraptoken as bt, clusterinfo, errors, kinds
from machinery.tables import human_duration

DEFAULT_TTL = "24h"


def parse_ttl(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise click.BadParameter(f"invalid duration {text!r} (e.g. 24h, 30m, 0 for never)", param_hint="--ttl") \
            from None


async def join_command(client, token: str) -> str:
    try:
        cm = await client.get("ConfigMap", bt.CLUSTER_INFO, bt.CLUSTER_INFO_NAMESPACE)
    except errors.NotFound:
        raise Failed("error: there is no kube-public/cluster-info ConfigMap to take the server and CA from: run "
                     "the controller manager with --cluster-signing-cert-file and --cluster-info-server") from None
    server, ca = clusterinfo.cluster(cm.data.get(bt.KUBECONFIG_KEY, ""))
    return f"kctl join {server} --token {token} --discovery-token-ca-cert-hash {bt.ca_hash(ca)}"


async def _create(ctx: Ctx, token, ttl, usages, groups, description, print_join):
    token = token or bt.generate()
    secret = kinds.new("Secret")
    try:
        bt.fill_secret(secret, token, ttl=ttl or None, now=time.time(), usages=usages, groups=groups,
                       description=description)
    except bt.BadToken as exc:
        raise Failed(f"error: {exc}") from None
    client = ctx.client()
    line = await join_command(client, token) if print_join else token
    try:
        await client.create(secret)
    except errors.AlreadyExists:
        raise Failed(f'error: a token with id "{token.split(".")[0]}" already exists') from None
    click.echo(line)


async def _list(ctx: Ctx):
    secrets, _ = await ctx.client().list("Secret", bt.NAMESPACE)
    now = time.time()
    rows = [("TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS")]
    for s in sorted(secrets, key=lambda s: s.metadata.name):
        held = bt.token_of(s)
        if held is None:
            continue
        when = bt.expiration(s)
        ttl = "<forever>" if when is None and not bt.data(s, bt.EXPIRATION) else \
            "<invalid>" if when is None or when <= now else human_duration(when - now)
        usages = ",".join(sorted(u for u in bt.USAGES if bt.usage(s, u))) or "<none>"
        rows.append((f"{held[0]}.{held[1]}", ttl, bt.data(s, bt.EXPIRATION) or "<never>", usages,
                     bt.data(s, bt.DESCRIPTION) or "<none>", ",".join(bt.extra_groups(s))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


async def _delete(ctx: Ctx, tokens):
    client = ctx.client()
    for t in tokens:
        tid = t.split(".")[0]
        if not bt.ID_RE.match(tid):
            raise Failed(f"error: given token or token id {t!r} didn't match pattern {bt.ID_RE.pattern!r} or "
                         f"{bt.TOKEN_RE.pattern!r}")
        try:
            await client.delete("Secret", bt.secret_name(tid), bt.NAMESPACE)
        except errors.NotFound:
            raise Failed(f'error: bootstrap token "{tid}" not found') from None
        click.echo(f'bootstrap token "{tid}" deleted')


@click.group("token")
def token_group():
    """Manage bootstrap tokens (kubeadm token)."""


@token_group.command("create")
@click.argument("token", required=False)
@click.option("--ttl", default=DEFAULT_TTL, help="Time before the token expires (e.g. 1s, 2m, 3h; 0: never).")
@click.option("--usages", default="signing,authentication", help="Ways the token can be used.")
@click.option("--groups", default=bt.DEFAULT_EXTRA_GROUP, help="Extra groups the token authenticates as.")
@click.option("--description", default="", help="A human friendly description of the token's use.")
@click.option("--print-join-command", is_flag=True, help="Print the full `kctl join` line for this token.")
@click.pass_obj
def create_cmd(ctx: Ctx, token, ttl, usages, groups, description, print_join_command):
    """Create a bootstrap token on the server (a random one unless TOKEN is given)."""
    run(ctx, _create, token, parse_ttl(ttl), [u for u in usages.split(",") if u],
        [g for g in groups.split(",") if g], description, print_join_command)


@token_group.command("list")
@click.pass_obj
def list_cmd(ctx: Ctx):
    """List bootstrap tokens on the server."""
    run(ctx, _list)


@token_group.command("delete")
@click.argument("tokens", nargs=-1, required=True)
@click.pass_obj
def delete_cmd(ctx: Ctx, tokens):
    """Delete bootstrap tokens (by token or token id)."""
    run(ctx, _delete, tokens)
