"""`kctl create token SERVICE_ACCOUNT [--duration 1h] [--audience A]... [--bound-object-kind Pod|Secret
--bound-object-name N [--bound-object-uid U]]`: kubectl's TokenOptions
(k8s.io/kubectl/pkg/cmd/create/create_token.go). It asks the apiserver's
`serviceaccounts/token` subresource for a TokenRequest and prints the token
alone, so `TOKEN=$(kctl create token robot)` works. `--duration 0` (the
default) leaves the lifetime to the server (one hour); the server refuses
less than 10 minutes.
"""
from __future__ import annotations

import re

import click

from kubectlish.common import Ctx, Failed, run
from machinery.pb import serviceaccount_pb2

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
BOUND_KINDS = ("Pod", "Secret")


def go_duration(text: str) -> float:
    """Go's time.ParseDuration: `1h30m`, `600s`, `0`; ValueError otherwise."""
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def token_request(duration: str, audiences, bound_kind: str, bound_name: str, bound_uid: str):
    """The TokenRequest kubectl would send; Failed with kubectl's messages."""
    try:
        seconds = go_duration(duration)
    except ValueError as exc:
        raise Failed(f'error: invalid argument "{duration}" for "--duration" flag: {exc}') from None
    if seconds < 0:
        raise Failed("error: --duration must be greater than or equal to 0")
    if seconds != int(seconds):
        raise Failed("error: --duration cannot be expressed in units less than seconds")
    tr = serviceaccount_pb2.TokenRequest(api_version="authentication.k8s.io/v1", kind="TokenRequest")
    for a in audiences:
        if not a:
            raise Failed("error: --audience must not be an empty string")
        tr.spec.audiences.append(a)
    if seconds:
        tr.spec.expiration_seconds = int(seconds)
    if bound_kind:
        if bound_kind not in BOUND_KINDS:
            raise Failed(f"error: supported --bound-object-kind values are {', '.join(BOUND_KINDS)}")
        if not bound_name:
            raise Failed("error: --bound-object-name is required if --bound-object-kind is provided")
        ref = tr.spec.bound_object_ref
        ref.kind, ref.api_version, ref.name, ref.uid = bound_kind, "v1", bound_name, bound_uid
    elif bound_name or bound_uid:
        raise Failed("error: --bound-object-name and --bound-object-uid can only be set if "
                     "--bound-object-kind is provided")
    return tr


async def run_create_token(ctx: Ctx, name: str, tr) -> None:
    out = await ctx.client().create_token(ctx.namespace, name, tr)
    click.echo(out.status.token)


@click.command("token")
@click.argument("name")
@click.option("--duration", default="0s", help="requested lifetime (e.g. 1h); 0: the server's default")
@click.option("--audience", "audiences", multiple=True, help="an intended audience of the token (repeatable)")
@click.option("--bound-object-kind", default="", help="Pod or Secret the token is bound to")
@click.option("--bound-object-name", default="")
@click.option("--bound-object-uid", default="")
@click.pass_obj
def create_token_cmd(ctx: Ctx, name, duration, audiences, bound_object_kind, bound_object_name,
                     bound_object_uid):
    """Request a service account token: create token SERVICE_ACCOUNT [--duration 1h] [--audience A]."""
    tr = token_request(duration, audiences, bound_object_kind, bound_object_name, bound_object_uid)
    run(ctx, run_create_token, name, tr)
