"""The service proxy's Proxier (nodeagent/proxy.py) against FakeIptables: syncs, hooks, stale
chains, failures and retries, the rate-limited loop, UDP conntrack clearing, cleanup.

The payloads themselves are tested in test_proxy_rules.py.
"""
from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from nodeagent.errors import AgentConfigError, ProxyError
from nodeagent.iptables import FakeIptables
from nodeagent.proxy import Proxier, cleanup
from nodeagent.proxyrules import HOOKS, count_rules, with_stale_deletions
from tests.unit.proxy_objects import (MASQ_CIDR, NODE_IP, POD_CIDR, WEB_EXT, WEB_SEP, WEB_SVC, do_render, eps,
                                      svc, web)


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def proxier(fake, **kw):
    kw = {"node_ip": NODE_IP, "pod_cidr": POD_CIDR, "masquerade_cidr": MASQ_CIDR, "node_name": "unit", **kw}
    return Proxier(fake, **kw)


HOOK_COUNTS = {"filter/INPUT": 1, "filter/FORWARD": 2, "filter/OUTPUT": 1,
               "nat/PREROUTING": 1, "nat/OUTPUT": 1, "nat/POSTROUTING": 1}


def builtin_counts(fake):
    return {f"{t}/{c}": len(rules) for (t, c), rules in fake.builtin.items() if rules}


def hook_calls(fake, op):
    return [c for c in fake.calls if c[0] == "iptables" and c[3] == op]


async def test_first_sync_restores_once_then_hooks_every_builtin_chain():
    fake = FakeIptables()
    p = proxier(fake)
    assert await p.sync(*web("10.244.1.2")) is True
    assert [c[0] for c in fake.calls if c[0] != "iptables"] == ["save", "restore"]
    assert fake.restores == [do_render(*web("10.244.1.2"))]
    assert len(hook_calls(fake, "-C")) == len(HOOKS) and len(hook_calls(fake, "-I")) == len(HOOKS)
    assert fake.kctl_state()["hooks"] == sorted([
        "filter/FORWARD -> KCTL-EXTERNAL-SERVICES", "filter/FORWARD -> KCTL-SERVICES",
        "filter/INPUT -> KCTL-EXTERNAL-SERVICES", "filter/OUTPUT -> KCTL-SERVICES",
        "nat/OUTPUT -> KCTL-SERVICES", "nat/POSTROUTING -> KCTL-POSTROUTING", "nat/PREROUTING -> KCTL-SERVICES"])
    assert p.applied_payload == fake.restores[0]


async def test_unchanged_state_is_not_restored_again():
    fake = FakeIptables()
    p = proxier(fake)
    before = metric("kctl_nodeagent_proxy_syncs_total", node="unit", result="unchanged")
    await p.sync(*web("10.244.1.2"))
    n_calls = len(fake.calls)
    assert await p.sync(*web("10.244.1.2")) is False
    assert len(fake.calls) == n_calls                   # no save, no restore, no hook check
    assert len(fake.restores) == 1
    assert metric("kctl_nodeagent_proxy_syncs_total", node="unit", result="unchanged") == before + 1


async def test_changes_restore_with_stale_chains_deleted_and_hooks_added_once():
    fake = FakeIptables()
    p = proxier(fake)
    await p.sync(*web("10.244.1.2", "10.244.1.3", node_port=30080))
    await p.sync(*web("10.244.1.2"))                     # one endpoint and the NodePort gone
    assert p.last_stale == [WEB_EXT, WEB_SEP["10.244.1.3"]]
    assert fake.restores[1] == with_stale_deletions(do_render(*web("10.244.1.2")), p.last_stale)
    assert fake.kctl_state()["nat"] == sorted(["KCTL-SERVICES", "KCTL-NODEPORTS", "KCTL-POSTROUTING",
                                               "KCTL-MARK-MASQ", WEB_SVC, WEB_SEP["10.244.1.2"]])
    await p.sync([], [])                                 # the service deleted: its chains go
    assert WEB_SVC not in fake.kctl_state()["nat"] and WEB_SEP["10.244.1.2"] not in fake.kctl_state()["nat"]
    assert len(hook_calls(fake, "-I")) == len(HOOKS)     # only the first sync checked and added hooks
    assert builtin_counts(fake) == HOOK_COUNTS
    # a new Proxier (agent restart) finds the hooks in place and adds nothing
    p2 = proxier(fake)
    await p2.sync(*web("10.244.1.2"))
    assert len(hook_calls(fake, "-I")) == len(HOOKS)
    assert builtin_counts(fake) == HOOK_COUNTS


async def test_a_failed_restore_raises_counts_and_is_retried_in_full():
    fake = FakeIptables(fail_restore=1)
    p = proxier(fake)
    errors = metric("kctl_nodeagent_proxy_sync_errors_total", node="unit")
    with pytest.raises(ProxyError, match="injected"):
        await p.sync(*web("10.244.1.2"))
    assert metric("kctl_nodeagent_proxy_sync_errors_total", node="unit") == errors + 1
    assert p.applied_payload is None and fake.kctl_state()["nat"] == []
    assert await p.sync(*web("10.244.1.2")) is True      # same state, applied this time
    assert len(fake.restores) == 2 and fake.kctl_state()["hooks"]
    assert metric("kctl_nodeagent_proxy_rules", node="unit", table="nat") == count_rules(fake.restores[1])["nat"]
    assert REGISTRY.get_sample_value("kctl_nodeagent_proxy_sync_duration_seconds_count") >= 1


async def test_cleanup_removes_every_kctl_chain_and_hook_and_nothing_else():
    fake = FakeIptables()
    fake.chains["filter"]["klkctl-part"] = ["-s 172.30.0.1/32 -j DROP"]        # the lab's partition chain
    fake.builtin[("filter", "INPUT")] = [("-j", "klkctl-part")]
    p = proxier(fake)
    await p.sync(*web("10.244.1.2", node_port=30080))
    removed = await p.cleanup()
    assert "nat/PREROUTING -> KCTL-SERVICES" in removed and f"nat/{WEB_SVC}" in removed
    assert fake.kctl_state() == {"filter": [], "nat": [], "hooks": ["filter/INPUT -> klkctl-part"]}
    assert fake.chains["filter"] == {"klkctl-part": ["-s 172.30.0.1/32 -j DROP"]}
    assert await cleanup(fake) == []                     # idempotent
    assert await p.sync(*web("10.244.1.2")) is True      # and the Proxier starts over after a cleanup
    assert fake.kctl_state()["hooks"] != ["filter/INPUT -> klkctl-part"]


class Clock:
    """A clock that only moves when told; sleep() records the delay and advances it."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def __call__(self):
        return self.now

    async def sleep(self, delay):
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


async def wait_for_restores(fake, n):
    async with asyncio.timeout(10):
        while len(fake.restores) < n:
            await asyncio.sleep(0.001)


async def test_run_syncs_at_start_and_coalesces_a_burst_into_one_rate_limited_sync():
    fake, clock = FakeIptables(), Clock()
    state = {"v": web("10.244.1.2")}
    reads = []

    def source():
        reads.append(state["v"])
        return state["v"]

    p = proxier(fake, source=source, min_sync_interval=2.0, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(p.run())
    try:
        await wait_for_restores(fake, 1)
        clock.now += 0.5                                  # 0.5 s after the first sync ...
        state["v"] = web("10.244.1.2", "10.244.1.3")
        for _ in range(50):                               # ... a burst of informer events
            p.request_sync()
        await wait_for_restores(fake, 2)
        assert len(reads) == 2                            # the burst became one sync of the newest state
        assert clock.sleeps == [1.5]                      # which waited out the rest of min_sync_interval
        assert fake.restores[1].startswith(do_render(*state["v"]).split("COMMIT")[0])
        p.request_sync()                                  # an unchanged state: read, rendered, not restored
        async with asyncio.timeout(10):
            while len(reads) < 3:
                await asyncio.sleep(0.001)
        assert len(fake.restores) == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_retries_a_failed_sync_with_backoff():
    fake = FakeIptables(fail_restore=2)
    p = proxier(fake, source=lambda: web("10.244.1.2"), min_sync_interval=0.0, retry_delay=0.01)
    task = asyncio.create_task(p.run())
    try:
        await wait_for_restores(fake, 3)                  # two failures, then success without any request
        async with asyncio.timeout(10):
            while p.applied_payload is None:
                await asyncio.sleep(0.001)
        assert fake.kctl_state()["nat"] and fake.kctl_state()["hooks"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_proxier_clears_udp_conntrack_only_when_endpoints_go():
    fake = FakeIptables()
    p = proxier(fake)
    dns = [svc("dns", "10.96.0.53", ("dns", 53, "UDP", 0), ns="kube-system")]

    def dns_eps(*ips):
        return [eps("dns", ips, ("dns", 5353, "UDP"), ns="kube-system")]

    await p.sync(dns, dns_eps("10.244.1.2", "10.244.1.3"))
    assert [c for c in fake.calls if c[0] == "conntrack"] == [
        ("conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53", "--orig-port-dst", "53")]
    fake.calls.clear()
    await p.sync(dns, dns_eps("10.244.1.2", "10.244.1.3", "10.244.1.4"))
    assert [c for c in fake.calls if c[0] == "conntrack"] == []
    await p.sync(dns, dns_eps("10.244.1.2"))
    assert [c for c in fake.calls if c[0] == "conntrack"] == [
        ("conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53", "--dst-nat", ip)
        for ip in ("10.244.1.3", "10.244.1.4")]


async def test_a_sync_removing_many_endpoints_deletes_their_conntrack_entries_in_one_process():
    # a rollout takes several endpoints out in one sync: one process for all deletions, not one each
    fake = FakeIptables()
    p = proxier(fake)
    web = [svc("web", "10.96.0.80", ("http", 80, "TCP", 30080))]
    await p.sync(web, [eps("web", [f"10.244.1.{i}" for i in range(2, 7)], ("http", 8080, "TCP"))])
    fake.calls.clear()
    await p.sync(web, [eps("web", ["10.244.1.2", "10.244.1.3"], ("http", 8080, "TCP"))])
    assert [c for c in fake.calls if c[0] == "conntrack-batch"] == [("conntrack-batch", 3)]
    assert [c for c in fake.calls if c[0] == "conntrack"] == [
        ("conntrack", "-D", "-p", "tcp", "--state", "SYN_SENT", "--dst-nat", f"10.244.1.{i}", "--reply-port-src",
         "8080") for i in (4, 5, 6)]
    fake.calls.clear()
    await p.sync(web, [eps("web", ["10.244.1.2", "10.244.1.3", "10.244.1.7"], ("http", 8080, "TCP"))])
    assert not [c for c in fake.calls if c[0].startswith("conntrack")]     # nothing removed: no process


async def test_the_runner_sends_every_deletion_to_one_conntrack_load_file_from_stdin(monkeypatch):
    from nodeagent.iptables import IptablesRunner, Result
    runner, seen = IptablesRunner(), []

    async def fake_exec(argv, stdin=None):
        seen.append((argv, stdin))
        return Result(0, "", "")

    monkeypatch.setattr(runner, "_exec", fake_exec)
    await runner.conntrack_delete([("-p", "udp", "--orig-dst", "10.96.0.53", "--dst-nat", "10.244.1.3"),
                                   ("-p", "tcp", "--state", "SYN_SENT", "--dst-nat", "10.244.1.4")])
    [(argv, stdin)] = seen
    assert argv[0].endswith("conntrack") and argv[1:] == ["-R", "-"]
    assert stdin == ("-D -p udp --orig-dst 10.96.0.53 --dst-nat 10.244.1.3\n"
                     "-D -p tcp --state SYN_SENT --dst-nat 10.244.1.4\n")


async def test_a_slow_applied_sync_is_a_warning(caplog):
    p = proxier(FakeIptables())
    p.slow_sync = 0.0                       # every applied sync counts as slow
    web = [svc("web", "10.96.0.80", ("http", 80, "TCP", 0))]
    await p.sync(web, [eps("web", ["10.244.1.2"], ("http", 8080, "TCP"))])
    [msg] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert msg.startswith("proxy: full sync of 1 service ports took "), msg


def test_proxier_refuses_bad_settings_at_construction():
    with pytest.raises(AgentConfigError):
        Proxier(FakeIptables(), node_ip=NODE_IP, pod_cidr="10.244.1.0/24", masquerade_cidr="10.244.0.0/16")


async def test_attach_to_informers_follows_services_and_endpoints():
    from machinery.fakeclient import FakeClient
    from machinery.informer import Informer

    client, fake = FakeClient(), FakeIptables()
    services, endpoints = Informer(client, "Service"), Informer(client, "Endpoints")
    p = proxier(fake, min_sync_interval=0.0)
    p.attach(services, endpoints)
    s, [e] = web("10.244.1.2")
    await client.create(s[0])
    await client.create(e)
    tasks = [asyncio.create_task(t) for t in (services.run(), endpoints.run(), p.run())]
    try:
        async with asyncio.timeout(10):
            while p.applied_payload is None or WEB_SEP["10.244.1.2"] not in fake.kctl_state()["nat"]:
                await asyncio.sleep(0.005)
        assert len(fake.restores) == 1            # the first sync waited for both caches
        await client.delete("Service", "web", "default")
        async with asyncio.timeout(10):
            while WEB_SVC in fake.kctl_state()["nat"]:
                await asyncio.sleep(0.005)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
