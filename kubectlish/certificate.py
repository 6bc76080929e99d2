"""`kctl certificate approve|deny NAME...` (kubectl's certificates.go): add the
Approved (reason KubectlApprove) or Denied (KubectlDeny) condition to each
CertificateSigningRequest through its status, unless it has it already;
refuse to approve a denied request and to deny an approved one. A write that
meets a concurrent change is retried on the fresh object."""
from __future__ import annotations

import click

from kubectlish.common import Ctx, Failed, run
from machinery import codec, errors

VERBS = {"approve": ("Approved", "Denied", "KubectlApprove", "approved"),
         "deny": ("Denied", "Approved", "KubectlDeny", "denied")}
ATTEMPTS = 5


def add_condition(csr, verb: str):
    """The CSR with the verb's condition added; None when it already has it; Failed when it has the opposite."""
    want, opposite, reason, past = VERBS[verb]
    types = {c.type for c in csr.status.conditions}
    if opposite in types:
        raise Failed(f'error: certificate signing request "{csr.metadata.name}" is already '
                     f"{VERBS[opposite_verb(verb)][3]}")
    if want in types:
        return None
    new = codec.copy(csr)
    c = new.status.conditions.add(type=want, status="True", reason=reason,
                                  message=f"This CSR was {past} by kubectl certificate {verb}.")
    c.last_update_time.GetCurrentTime()
    c.last_update_time.nanos = 0
    return new


def opposite_verb(verb: str) -> str:
    return "deny" if verb == "approve" else "approve"


async def run_modify(ctx: Ctx, verb: str, names) -> None:
    client = ctx.client()
    for name in names:
        for _ in range(ATTEMPTS):
            csr = await client.get("CertificateSigningRequest", name)
            new = add_condition(csr, verb)
            if new is None:
                break
            try:
                await client.update_status(new)
                break
            except errors.Conflict:
                continue
        click.echo(f"certificatesigningrequest.certificates.k8s.io/{name} {VERBS[verb][3]}")


@click.group("certificate")
def certificate_group():
    """Modify certificate resources: certificate approve|deny NAME..."""


def _command(verb: str):
    @certificate_group.command(verb)
    @click.argument("names", nargs=-1, required=True)
    @click.option("--force", is_flag=True, help="accepted for kubectl compatibility")
    @click.pass_obj
    def cmd(ctx: Ctx, names, force):
        run(ctx, run_modify, verb, names)
    cmd.__doc__ = f"{verb.capitalize()} certificate signing requests."
    return cmd


approve_cmd, deny_cmd = _command("approve"), _command("deny")
