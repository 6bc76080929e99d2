"""Table columns of CertificateSigningRequest, as kubectl's printers.go
prints them (printCertificateSigningRequest): NAME AGE SIGNERNAME REQUESTOR
REQUESTEDDURATION CONDITION; machinery.tables adds them to its PRINTERS."""
from __future__ import annotations

from machinery import csr as csrs
from machinery.tables import Printer, _all, _cols, age, human_duration


def _csr(c, wide, at):
    spec = c.spec
    duration = human_duration(spec.expiration_seconds) if spec.HasField("expiration_seconds") else "<none>"
    return [c.metadata.name, age(c.metadata.creation_timestamp, at), spec.signer_name or "<none>",
            spec.username, duration, csrs.condition_summary(c)]


CERTIFICATE_PRINTERS = {
    "CertificateSigningRequest": Printer(_cols("NAME|AGE|SIGNERNAME|REQUESTOR|REQUESTEDDURATION|CONDITION"),
                                         _all(_csr)),
}
