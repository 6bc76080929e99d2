"""Lease-based leader election, after client-go's tools/leaderelection.

Candidates share one coordination.k8s.io Lease. Every `retry_period` a
candidate reads it and:
* creates it if missing (create fails with AlreadyExists for all but one);
* takes it if it is free (empty holderIdentity: released by a clean shutdown)
  or expired: not renewed for leaseDurationSeconds, measured on OUR clock
  from the moment WE last saw the record change (client-go's observedTime),
  so clock skew between candidates does not matter;
* renews it if we hold it.
Every write is an update with the resourceVersion we read, so two candidates
racing for a free or expired lease cannot both win: the loser gets Conflict.

The leader renews every `retry_period`. If it cannot renew for
`renew_deadline` (< lease_duration) it stops leading: its work is cancelled
before any other candidate may take the lease over. Seeing another holder on a
valid lease stops leadership at once. On a clean stop (cancel, or the leading
coroutine returning) the leader releases the lease (holderIdentity "",
leaseDurationSeconds 1) so the next candidate takes over on its next retry.

With several apiservers the client fails over by itself
(machinery/endpoints.py): a renewal refused by a dead apiserver is sent to
the next at once; one left unanswered (a partitioned apiserver whose
connection looks alive) is given up after renew_deadline/2 and the client
sends the next renewal to another apiserver, still within renew_deadline
(tests/integration/test_client_failover.py).

Time comes from `clock()` (seconds, wall time; injectable for tests);
waiting uses asyncio.sleep.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import time
import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import codec, errors, kinds

log = logging.getLogger("kctl.leaderelection")


class LeadershipLost(errors.ControlFlow):
    """Raised by LeaderElector.run() when the lease could not be kept."""


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


async def _maybe_await(fn, *args) -> None:
    if fn is None:
        return
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


class LeaderElector:
    def __init__(self, client, lease_name: str, identity: str | None = None, *,
                 lease_namespace: str = "kube-system", lease_duration: float = 15,
                 renew_deadline: float = 10, retry_period: float = 2,
                 release_on_cancel: bool = True, on_new_leader=None, clock=time.time):
        if not lease_duration > renew_deadline > 0 or retry_period <= 0:
            raise ValueError("need lease_duration > renew_deadline > 0 and retry_period > 0")
        self.client = client
        self.lease_name, self.lease_namespace = lease_name, lease_namespace
        self.identity = identity or default_identity()
        self.lease_duration, self.renew_deadline = lease_duration, renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.on_new_leader = on_new_leader
        self.clock = clock
        self.is_leader = False
        self.leader = ""                        # the holder we last observed
        self._lease = None                      # the Lease as last read or written
        self._observed_record: tuple = ()
        self._observed_time = 0.0

    def __repr__(self) -> str:
        return f"LeaderElector({self.lease_namespace}/{self.lease_name} as {self.identity})"

    # ------------------------------------------------------------ one attempt

    def _stamp(self, now: float) -> Timestamp:
        ts = Timestamp()
        ts.FromMicroseconds(int(now * 1_000_000))     # MicroTime
        return ts

    def _observe(self, lease, now: float) -> None:
        s = lease.spec
        record = (s.holder_identity, s.renew_time.ToMicroseconds(), s.lease_duration_seconds,
                  lease.metadata.resource_version)
        if record != self._observed_record:
            self._observed_record, self._observed_time = record, now
        if s.holder_identity != self.leader:
            self.leader = s.holder_identity
            if s.holder_identity and self.on_new_leader is not None:
                try:
                    self.on_new_leader(s.holder_identity)
                except Exception:
                    log.exception("%r: on_new_leader failed", self)
        self._lease = lease

    def held_by_other(self) -> bool:
        """Another candidate holds a lease that has not expired (by our observation)."""
        if not self._lease:
            return False
        s = self._lease.spec
        return bool(s.holder_identity) and s.holder_identity != self.identity and \
            self._observed_time + s.lease_duration_seconds > self.clock()

    async def try_acquire_or_renew(self) -> bool:
        """One read-modify-write of the Lease; True when we hold it afterwards."""
        now = self.clock()
        try:
            lease = await self.client.get("Lease", self.lease_name, self.lease_namespace)
        except errors.NotFound:
            lease = kinds.new("Lease")
            lease.metadata.name, lease.metadata.namespace = self.lease_name, self.lease_namespace
            lease.spec.holder_identity = self.identity
            lease.spec.lease_duration_seconds = max(1, round(self.lease_duration))
            lease.spec.acquire_time.CopyFrom(self._stamp(now))
            lease.spec.renew_time.CopyFrom(self._stamp(now))
            lease.spec.lease_transitions = 0
            try:
                self._observe(await self.client.create(lease), now)
                return True
            except errors.ApiError as exc:
                log.debug("%r: create failed: %s", self, exc)
                return False
        self._observe(lease, now)
        if self.held_by_other():
            return False
        new = codec.copy(lease)
        s = new.spec
        if s.holder_identity != self.identity:
            s.acquire_time.CopyFrom(self._stamp(now))
            s.lease_transitions = s.lease_transitions + 1
            s.holder_identity = self.identity
        s.lease_duration_seconds = max(1, round(self.lease_duration))
        s.renew_time.CopyFrom(self._stamp(now))
        try:
            self._observe(await self.client.update(new), now)
            return True
        except errors.ApiError as exc:      # Conflict: someone else wrote first
            log.debug("%r: update failed: %s", self, exc)
            return False

    async def _attempt(self, timeout: float) -> bool:
        """One try, given at most half the renew deadline: a renewal stuck on
        a silent apiserver leaves time for another through the next one."""
        try:
            async with asyncio.timeout(max(min(timeout, self.renew_deadline / 2), 0.001)):
                return await self.try_acquire_or_renew()
        except TimeoutError:
            return False
        except errors.ApiError as exc:
            log.warning("%r: %s", self, exc)
            return False

    # ------------------------------------------------------------ loops

    async def _acquire(self) -> None:
        log.info("%r: attempting to acquire the lease", self)
        while not await self._attempt(self.renew_deadline):
            await asyncio.sleep(self.retry_period)
        log.info("%r: acquired the lease", self)

    async def _renew_loop(self) -> None:
        """Returns when leadership is lost."""
        last_ok = self.clock()
        while True:
            await asyncio.sleep(self.retry_period)
            ok = await self._attempt(self.renew_deadline - (self.clock() - last_ok))
            if ok:
                last_ok = self.clock()
            elif self.held_by_other():
                log.error("%r: lease taken over by %s", self, self.leader)
                return
            elif self.clock() - last_ok >= self.renew_deadline:
                log.error("%r: failed to renew the lease within %.1fs", self, self.renew_deadline)
                return

    async def release(self) -> None:
        """Give the lease up if we hold it (holderIdentity "", 1 s duration)."""
        if not self._lease or self._lease.spec.holder_identity != self.identity:
            return
        new = codec.copy(self._lease)
        now = self.clock()
        new.spec.holder_identity = ""
        new.spec.lease_duration_seconds = 1
        new.spec.renew_time.CopyFrom(self._stamp(now))
        new.spec.acquire_time.CopyFrom(self._stamp(now))
        try:
            async with asyncio.timeout(self.renew_deadline):
                self._observe(await self.client.update(new), now)
            log.info("%r: released the lease", self)
        except (errors.ApiError, TimeoutError) as exc:
            log.warning("%r: could not release the lease: %s", self, exc)

    async def run(self, on_started_leading, on_stopped_leading=None) -> None:
        """Wait to become leader, then run on_started_leading() while renewing.

        on_started_leading is a coroutine function; it is cancelled when
        leadership is lost, after which on_stopped_leading() (plain or
        coroutine) is called and LeadershipLost is raised: a component should
        then exit and start over. If on_started_leading returns or raises, or
        run() is cancelled, the lease is released (unless release_on_cancel is
        False) and on_stopped_leading() is called.
        """
        await self._acquire()
        self.is_leader = True
        lead = asyncio.create_task(on_started_leading(), name=f"{self!r} leading")
        renew = asyncio.create_task(self._renew_loop(), name=f"{self!r} renew")
        lost = False
        try:
            await asyncio.wait({lead, renew}, return_when=asyncio.FIRST_COMPLETED)
            lost = renew.done()
        finally:
            self.is_leader = False
            for t in (lead, renew):
                t.cancel()
            await asyncio.gather(lead, renew, return_exceptions=True)
            if not lost and (self.release_on_cancel or lead.done() and not lead.cancelled()):
                await self.release()
            await _maybe_await(on_stopped_leading)
        if lost:
            raise LeadershipLost(f"{self!r}: leadership lost")
        if not lead.cancelled() and lead.exception() is not None:
            raise lead.exception()
