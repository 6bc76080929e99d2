"""`kctl certificate approve|deny NAME...` (kubectl certificate).

Each CSR gets an Approved (reason KubectlApprove) or Denied (KubectlDeny)
condition through the approval subresource, kubectl's messages and
refusals: a request already in the other state is refused unless --force
(then the server refuses it: Approved and Denied are mutually exclusive and
never removed); one already in the asked state is reported again and left
alone.

`describe_csr` is kubectl's describeCertificateSigningRequest (the requestor,
signer, requested duration, status and the request's subject).
"""
from __future__ import annotations

import click

from kubectlish.common import Ctx, Failed, run
from kubectlish.describe_blocks import _meta, events_lines
from machinery import csr as csrs, errors, kinds
from machinery.tables import human_duration

QUALIFIED = "certificatesigningrequest.certificates.k8s.io"
RETRIES = 5


async def _decide(ctx: Ctx, names, approve: bool, force: bool):
    client = ctx.client()
    ctype = csrs.APPROVED if approve else csrs.DENIED
    other = csrs.DENIED if approve else csrs.APPROVED
    word = "approved" if approve else "denied"
    info = kinds.resolve("csr")
    for raw in names:
        name = raw.split("/", 1)[1] if "/" in raw else raw
        for attempt in range(RETRIES):
            csr = await client.get(info, name)
            if csrs.condition(csr, other) is not None and not force:
                raise Failed(f"error: {QUALIFIED}/{name} is already {other}")
            if csrs.condition(csr, ctype) is None:
                how = "approve" if approve else "deny"
                csrs.set_condition(csr, ctype, f"Kubectl{how.capitalize()}",
                                   f"This CSR was {word} by kctl certificate {how}.")
                try:
                    await client.update_status(csr, subresource="approval")
                except errors.Conflict:
                    if attempt < RETRIES - 1:
                        continue
                    raise
            break
        click.echo(f"{QUALIFIED}/{name} {word}")


def _command(approve: bool):
    verb = "approve" if approve else "deny"
    other = "denied" if approve else "approved"

    @click.command(verb)
    @click.argument("names", nargs=-1, required=True)
    @click.option("--force", is_flag=True, help=f"Update the CSR even if it is already {other}.")
    @click.pass_obj
    def cmd(ctx: Ctx, names, force):
        run(ctx, _decide, names, approve, force)
    cmd.__doc__ = f"{verb.capitalize()} a certificate signing request."
    return cmd


@click.group("certificate")
def certificate_group():
    """Modify certificate resources (approve or deny certificate signing requests)."""


certificate_group.add_command(_command(True))
certificate_group.add_command(_command(False))


def describe_csr(c, events) -> list[str]:
    spec = c.spec
    lines = _meta(c, with_ns=False)
    lines += [f"Requesting User:\t{spec.username}", f"Signer:\t{spec.signer_name}"]
    if spec.HasField("expiration_seconds"):
        lines.append(f"Requested Duration:\t{human_duration(spec.expiration_seconds)}")
    lines.append(f"Status:\t{csrs.condition_summary(c)}")
    try:
        req = csrs.parse_request(spec.request)
    except csrs.BadRequestPEM as exc:
        return lines + [f"Error:\t{exc}"] + events_lines(events)
    cn, orgs = csrs.subject(req)
    lines += ["Subject:", f"  Common Name:\t{cn}", "  Serial Number:\t"]
    if orgs:
        lines.append(f"  Organization:\t{', '.join(orgs)}")
    return lines + events_lines(events)
