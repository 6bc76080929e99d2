"""The CSR cleaner (Kubernetes' pkg/controller/certificates/cleaner):
CertificateSigningRequests do not pile up.

Deleted are a CSR approved more than 1 hour ago, denied or failed more
than 1 hour ago, still pending after 24 hours, or whose issued
certificate has expired. A CSR that is not due yet comes back when it is
(the earliest of those times); the delete carries its UID as precondition.
"""
from __future__ import annotations

import time

from machinery import csr as csrs, errors

from controllers.csrapproving import CSRController

APPROVED_EXPIRATION = 3600.0
DENIED_EXPIRATION = 3600.0
PENDING_EXPIRATION = 24 * 3600.0


def due_at(csr) -> float:
    """When csr is to be deleted (UNIX time)."""
    times = [csr.metadata.creation_timestamp.seconds + PENDING_EXPIRATION]
    for ctype, keep in ((csrs.APPROVED, APPROVED_EXPIRATION), (csrs.DENIED, DENIED_EXPIRATION),
                        (csrs.FAILED, DENIED_EXPIRATION)):
        c = csrs.condition(csr, ctype)
        if c is not None:
            times.append(max(c.last_update_time.seconds, c.last_transition_time.seconds) + keep)
    if csr.status.certificate:
        try:
            times.append(csrs.load_certificate(csr.status.certificate).not_valid_after_utc.timestamp())
        except errors.KctlError:
            pass
    return min(times)


class CSRCleaner(CSRController):
    name = "csrcleaner"

    def __init__(self, client, factory, recorder=None, workers: int = 1, *, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.clock = clock

    async def sync(self, key: str) -> None:
        csr = self.csr_inf.get_by_key(key)
        if csr is None:
            return
        left = due_at(csr) - self.clock()
        if left > 0:
            self.queue.add_after(key, left + 0.05)
            return
        try:
            await self.client.delete("CertificateSigningRequest", csr.metadata.name, uid=csr.metadata.uid)
        except (errors.NotFound, errors.Conflict):
            return
        self.log.info("%s: deleted (%s)", key, csrs.condition_summary(csr))
