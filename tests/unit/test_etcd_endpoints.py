"""apiserver.etcdendpoints: --etcd-servers parsing and the failover/retry
rules, with fake members that fail as real etcd and grpc fail (the details
strings are the ones grpc 1.85 and etcd 3.4 produce)."""
from __future__ import annotations

import grpc
import pytest

from apiserver import etcdendpoints as ep
from machinery import errors

REFUSED = (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: "
           "ipv4:127.0.0.1:2379: Failed to connect to remote host: Connection refused")
RESET = (grpc.StatusCode.UNAVAILABLE, "Stream removed (recvmsg:Connection reset by peer (104))")
NO_LEADER = (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
TIMED_OUT = (grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out")
DEADLINE = (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
COMPACTED = (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")


def rpc_error(code, details):
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class FakeMember:
    """Answers "ok from ADDRESS", or fails with the next scripted error."""

    def __init__(self, address: str, script: dict):
        self.address = address
        self.failures = list(script.get(address, []))
        self.calls: list[tuple] = []

    async def Range(self, request, *, timeout, metadata):  # noqa: N802 - etcd's name
        self.calls.append((request, timeout, metadata))
        if self.failures:
            f = self.failures.pop(0)
            if f == "forever":
                self.failures.insert(0, f)
                raise rpc_error(*NO_LEADER)
            raise rpc_error(*f)
        return f"ok from {self.address}"


def endpoints(script: dict, n: int = 3) -> ep.Endpoints:
    e = ep.Endpoints([f"m{i}:2379" for i in range(n)], lambda a: FakeMember(a, script))
    e.backoff = (0.001, 0.002)
    return e


def calls(e: ep.Endpoints) -> list[int]:
    return [len(m.calls) for m in e.members]


@pytest.mark.parametrize("failure", [REFUSED, RESET, NO_LEADER, TIMED_OUT, DEADLINE])
async def test_a_read_moves_to_the_next_member_and_stays_there(failure):
    e = endpoints({"m0:2379": [failure]})
    assert await e.call(lambda m: m.Range, "req", timeout=3, write=False) == "ok from m1:2379"
    assert e.current == 1 and e.address == "m1:2379"
    assert await e.call(lambda m: m.Range, "req", timeout=3, write=False) == "ok from m1:2379"
    assert calls(e) == [1, 2, 0]
    assert e.members[0].calls[0][2] == (("hasleader", "true"),)      # every call requires a leader


@pytest.mark.parametrize("failure", [REFUSED, NO_LEADER])
async def test_a_write_that_surely_did_not_reach_etcd_is_retried(failure):
    e = endpoints({"m0:2379": [failure]})
    assert await e.call(lambda m: m.Range, "put", timeout=3, write=True) == "ok from m1:2379"


@pytest.mark.parametrize("failure", [RESET, TIMED_OUT, DEADLINE])
async def test_a_write_that_may_have_reached_etcd_fails_but_the_next_call_moves_on(failure):
    e = endpoints({"m0:2379": [failure]})
    with pytest.raises(ep.Failed) as exc:
        await e.call(lambda m: m.Range, "put", timeout=3, write=True)
    assert exc.value.address == "m0:2379" and exc.value.rpc_error.code() == failure[0]
    assert calls(e) == [1, 0, 0] and e.current == 1                    # not retried; later calls go to m1


@pytest.mark.parametrize("write", [False, True])
async def test_answers_are_not_retried_and_keep_the_member(write):
    e = endpoints({"m0:2379": [COMPACTED]})
    with pytest.raises(ep.Failed):
        await e.call(lambda m: m.Range, "req", timeout=3, write=write)
    assert calls(e) == [1, 0, 0] and e.current == 0


async def test_during_an_election_calls_go_round_until_a_leader_answers():
    e = endpoints({a: [NO_LEADER] * 3 for a in ("m0:2379", "m1:2379", "m2:2379")})
    assert await e.call(lambda m: m.Range, "put", timeout=3, write=True) == "ok from m0:2379"
    assert calls(e) == [4, 3, 3]


async def test_no_leader_anywhere_ends_with_the_last_error_within_the_deadline():
    e = endpoints({a: ["forever"] for a in ("m0:2379", "m1:2379", "m2:2379")})
    with pytest.raises(ep.Failed) as exc:
        await e.call(lambda m: m.Range, "req", timeout=0.05, write=False)
    assert "no leader" in exc.value.rpc_error.details()
    assert min(calls(e)) >= 1


async def test_one_member_means_one_attempt():
    e = endpoints({"m0:2379": [REFUSED]}, n=1)
    with pytest.raises(ep.Failed):
        await e.call(lambda m: m.Range, "req", timeout=3, write=False)
    assert calls(e) == [1] and e.current == 0


async def test_concurrent_failures_of_one_member_move_on_once():
    e = endpoints({})
    e.failed(0, "x")
    e.failed(0, "x")                  # a second caller that failed on m0 too
    assert e.current == 1


def test_retry_rules_table():
    assert [ep.retryable(rpc_error(*f), write=True) for f in (REFUSED, NO_LEADER, RESET, TIMED_OUT, DEADLINE)] == [
        True, True, False, False, False]
    assert [ep.retryable(rpc_error(*f), write=False) for f in (REFUSED, NO_LEADER, RESET, TIMED_OUT, DEADLINE,
                                                                 COMPACTED)] == [True] * 5 + [False]


@pytest.mark.parametrize("servers,expected", [
    ("http://127.0.0.1:2379", ("http://", ["127.0.0.1:2379"])),
    ("https://a:2379, https://b:2379/,https://c:2379", ("https://", ["a:2379", "b:2379", "c:2379"])),
    ("a:1,b:2", ("http://", ["a:1", "b:2"])),
])
def test_parse_servers(servers, expected):
    assert ep.parse_servers(servers) == expected


@pytest.mark.parametrize("servers,message", [
    ("http://a:1,https://b:2", "mix http:// and https://"),
    ("http://a:1,,http://b:2", "an empty URL"),
    ("http://a", "not a URL of the form"),
    ("http://a:1,http://a:1", "listed twice"),
])
def test_parse_servers_refuses(servers, message):
    with pytest.raises(errors.ConfigError, match=message) as exc:
        ep.parse_servers(servers)
    assert str(exc.value).startswith("--etcd-servers: ")
