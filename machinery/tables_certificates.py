"""Table columns of CertificateSigningRequests as kubectl prints them
(printCertificateSigningRequest): NAME AGE SIGNERNAME REQUESTOR
REQUESTEDDURATION CONDITION, the condition being `Approved,Issued`,
`Denied`, `Pending`, ...; machinery.tables adds them to its PRINTERS."""
from __future__ import annotations

from machinery.tables import Printer, _all, _cols, age, human_duration


def csr_condition(csr) -> str:
    conds = [c.type for c in csr.status.conditions]
    out = [t for t in ("Approved", "Denied", "Failed") if t in conds]
    if csr.status.certificate:
        out.append("Issued")
    return ",".join(out) or "Pending"


def _csr(c, wide, at):
    dur = human_duration(c.spec.expiration_seconds) if c.spec.HasField("expiration_seconds") else "<none>"
    return [c.metadata.name, age(c.metadata.creation_timestamp, at), c.spec.signer_name, c.spec.username, dur,
            csr_condition(c)]


CERTIFICATE_PRINTERS = {
    "CertificateSigningRequest": Printer(_cols("NAME|AGE|SIGNERNAME|REQUESTOR|REQUESTEDDURATION|CONDITION"),
                                         _all(_csr)),
}
