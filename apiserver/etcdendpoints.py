"""The etcd members the apiserver talks to, and when a failed call may be
tried on another one (`kctl-apiserver --etcd-servers URL[,URL...]`).

Why our own failover: the apiserver uses aetcd's generated stubs on grpc.aio
channels of its own (see apiserver.storage), so nothing balances across
members for us, and etcd's `grpc-proxy` in front would be one more process
per machine that can fail, with the same question behind it. This module
does what etcd's Go client (clientv3) does, reduced to what we need:

- **One channel per member, one current member.** Every call goes to the
  current member; a call that fails UNAVAILABLE or DEADLINE_EXCEEDED on it
  moves `current` to the next member (only if no concurrent failure moved it
  already), so the next calls go there. Why not one channel on grpc's
  `ipv4:a,b,c` target with pick_first: pick_first only sees TCP, and a
  member that has lost its quorum accepts connections but cannot serve —
  we must leave it on an etcd answer ("no leader"), which needs to know and
  choose the member a call went to; the same knowledge makes the retry
  rules below exact, lets the watch re-open on *another* member, and keeps
  TLS simple (each channel checks its own member's name; the credentials of
  --etcd-cafile/--etcd-certfile/--etcd-keyfile serve every member).

- **Every call requires a leader**: the metadata `hasleader=true`
  (clientv3.WithRequireLeader). etcd's unary interceptor then refuses a call
  with UNAVAILABLE "etcdserver: no leader" *before* the handler runs when
  the member knows no leader, instead of letting a read wait for a read
  index that never comes; on a watch stream, etcd cancels the stream with
  the same error once the member has had no leader for three election
  timeouts, so a watch on a member cut from the quorum ends and is re-opened
  elsewhere (apiserver.watchcache re-opens from its last revision).

- **Retry rules** (clientv3 retry.go: isSafeRetryImmutableRPC /
  isSafeRetryMutableRPC, with a deadline treated as etcd's own client treats
  it for reads). A read (`write=False`: Range, read-only Txn, Status) is
  tried on the next member after UNAVAILABLE or DEADLINE_EXCEEDED. A write
  (Txn with puts/deletes, Compact) is tried again only when it surely did not
  reach etcd's state machine: UNAVAILABLE because the channel could not
  connect at all ("failed to connect to all addresses": the call never left)
  or "etcdserver: no leader" (refused by the interceptor above, before any
  proposal). Anything else — a deadline, a reset connection, "request timed
  out" — may have been applied, so it fails as errors.Unavailable and is
  never acknowledged; the client sees a failure for a write that may exist.
  Other codes (a failed compare is not an error; compacted, too large) are
  answers, never retried.

- **Budget.** Each attempt gets the call's full timeout. A call tries every
  member once (so a cluster of hung members costs members × timeout before
  the error), then keeps going round — with a short back-off, while every
  member answers "no leader" during an election — only until the call's own
  timeout since its start has passed. With one member there is exactly one
  attempt: the same errors, at the same time, as before failover existed.

What this does not cover: a member that hangs without closing anything (a
SIGSTOP, a partition that drops packets) holds an open watch stream until
gRPC's keepalive gives up (storage.CHANNEL_OPTIONS: 10 s + 5 s; etcd
refuses pings more often than every 5 s); its unary calls fail at their
deadline and move on as above.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import grpc

from machinery import errors
from machinery.endpoints import CONNECT_FAILED

log = logging.getLogger(__name__)

REQUIRE_LEADER = (("hasleader", "true"),)
NO_LEADER = "etcdserver: no leader"
NOT_SENT = CONNECT_FAILED      # gRPC's words for a call that never left: safe to retry even a write
SCHEMES = ("http://", "https://", "grpc://")


def parse_servers(servers: str | list[str]) -> tuple[str, list[str]]:
    """`--etcd-servers`: a comma list of URLs (or of host:port) → (scheme, [host:port, ...]).
    Every member must use the same scheme: one set of TLS options serves all."""
    urls = [u.strip() for u in (servers.split(",") if isinstance(servers, str) else servers)]
    if not urls or any(not u for u in urls):
        raise errors.ConfigError(f"--etcd-servers: an empty URL in {servers!r}")
    schemes, addresses = set(), []
    for url in urls:
        scheme = next((s for s in SCHEMES if url.startswith(s)), "")
        schemes.add("http://" if scheme == "grpc://" else scheme or "http://")
        address = url[len(scheme):].rstrip("/")
        if ":" not in address or "/" in address:
            raise errors.ConfigError(f"--etcd-servers: {url!r} is not a URL of the form http(s)://HOST:PORT")
        addresses.append(address)
    if len(schemes) > 1:
        raise errors.ConfigError(f"--etcd-servers: members mix http:// and https:// ({servers!r}); "
                                 "use one scheme for all")
    if len(set(addresses)) != len(addresses):
        raise errors.ConfigError(f"--etcd-servers: a member is listed twice in {servers!r}")
    return schemes.pop(), addresses


def retryable(exc: grpc.aio.AioRpcError, *, write: bool) -> bool:
    """May this failed call be tried on another member? (module docstring)"""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return not write or details.startswith(NOT_SENT) or NO_LEADER in details
    return code == grpc.StatusCode.DEADLINE_EXCEEDED and not write


def member_failed(exc: grpc.aio.AioRpcError) -> bool:
    """Does this error say the member may be the problem (move to the next one)?"""
    return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Failed(Exception):
    """A call failed for good on `address` (the member it last tried)."""

    def __init__(self, exc: grpc.aio.AioRpcError, address: str):
        super().__init__(exc.details())
        self.rpc_error, self.address = exc, address


class Endpoints:
    """The members (`connect(address)` makes each one's stubs), the current one, and the retry loop."""

    backoff = (0.05, 0.5)                      # first and longest sleep after a round of failures

    def __init__(self, addresses: list[str], connect: Callable[[str], object]):
        self.addresses = list(addresses)
        self.members = [connect(a) for a in self.addresses]
        self.current = 0

    @property
    def address(self) -> str:
        return self.addresses[self.current]

    def failed(self, index: int, why: str) -> None:
        """Member `index` failed a call: the next calls go to the next member,
        unless another failure has moved on already."""
        if len(self.members) > 1 and self.current == index:
            self.current = (index + 1) % len(self.members)
            log.warning("etcd member %s failed (%s); using %s", self.addresses[index], why, self.address)

    async def call(self, pick: Callable, request, *, timeout: float, write: bool):
        """`pick(member)(request, timeout=..., metadata=REQUIRE_LEADER)` on the current
        member, tried on the next ones by the rules above; raises Failed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sleep = self.backoff[0]
        attempt = 0
        while True:
            index = self.current
            budget = timeout if attempt < len(self.members) else max(deadline - loop.time(), 0.01)
            try:
                return await pick(self.members[index])(request, timeout=budget, metadata=REQUIRE_LEADER)
            except grpc.aio.AioRpcError as exc:
                if member_failed(exc):
                    self.failed(index, f"{exc.code().name}: {(exc.details() or '').splitlines()[0][:120]}")
                attempt += 1
                remaining = deadline - loop.time()
                if (not retryable(exc, write=write) or len(self.members) == 1
                        or (attempt >= len(self.members) and remaining <= 0)):
                    raise Failed(exc, self.addresses[index]) from exc
                if attempt % len(self.members) == 0:     # every member failed once more: wait a little
                    await asyncio.sleep(min(sleep, remaining))
                    sleep = min(sleep * 2, self.backoff[1])
