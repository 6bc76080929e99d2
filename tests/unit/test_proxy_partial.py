"""Partial proxy syncs (nodeagent/proxy.py) proven equal to full syncs: after any sequence of
changes, the tables a Proxier built with partial syncs (and the occasional failed restore, which
forces a full one) hold exactly what one full sync of the final state writes into empty tables."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings, strategies as st

from nodeagent.errors import ProxyError
from nodeagent.iptables import FakeIptables
from nodeagent.proxy import Proxier
from tests.unit.proxy_objects import MASQ_CIDR, NODE_IP, POD_CIDR
from tests.unit.proxy_slices import endpoint_slice, service

IPS = [f"10.244.{n}.{h}" for n in (1, 2) for h in (2, 3, 4)]

endpoint = st.tuples(st.sampled_from(IPS), st.booleans(), st.booleans(), st.booleans(), st.sampled_from(["n1", "n2"]))
one_service = st.fixed_dictionaries({
    "nodeport": st.booleans(), "udp": st.booleans(), "itp": st.sampled_from(["", "Local"]),
    "etp": st.sampled_from(["Cluster", "Local"]), "affinity": st.sampled_from([None, 0, 60]),
    "endpoints": st.lists(endpoint, max_size=4, unique_by=lambda e: e[0]), "port": st.sampled_from([8080, 9090]),
})
state = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), one_service, max_size=4)
step = st.tuples(state, st.booleans())      # (the new state, does the restore fail)


def objects(s: dict):
    services, slices = [], []
    for i, (name, d) in enumerate(sorted(s.items())):
        ports = [("http", 80, "TCP", 30000 + i if d["nodeport"] else 0)]
        sports = [("http", d["port"], "TCP")]
        if d["udp"]:
            ports.append(("dns", 53, "UDP", 0))
            sports.append(("dns", 5353, "UDP"))
        services.append(service(name, f"10.96.0.{i + 10}", ports, itp=d["itp"],
                                etp=d["etp"] if d["nodeport"] else "", affinity=d["affinity"]))
        slices.append(endpoint_slice(name, d["endpoints"], sports))
    return services, slices


def kctl_tables(fake: FakeIptables) -> dict:
    return {t: {c: rules for c, rules in cs.items() if c.startswith("KCTL-")} for t, cs in fake.chains.items()}


def proxier(fake):
    return Proxier(fake, node_ip=NODE_IP, pod_cidr=POD_CIDR, masquerade_cidr=MASQ_CIDR, node_name="n1")


async def run(steps) -> None:
    fake = FakeIptables()
    p = proxier(fake)
    for s, fail in steps:
        fake.fail_restore = 1 if fail else 0
        try:
            await p.sync(*objects(s))
        except ProxyError:
            await p.sync(*objects(s))             # the retry: a full sync
            assert p.last_sync_kind == "full"
        fresh = FakeIptables()
        await proxier(fresh).sync(*objects(s))
        assert kctl_tables(fake) == kctl_tables(fresh)
        assert p.applied_payload == fresh.restores[0]


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=8))
def test_partial_syncs_equal_a_full_sync_after_any_sequence_of_changes(steps):
    asyncio.run(run(steps))


async def test_a_partial_sync_rewrites_only_the_changed_service_and_the_top_level_chains():
    fake = FakeIptables()
    p = proxier(fake)
    base = {n: {"nodeport": False, "udp": False, "itp": "", "etp": "Cluster", "affinity": None, "port": 8080,
                "endpoints": [(ip, True, True, False, "n1")]} for n, ip in zip("abc", IPS)}
    await p.sync(*objects(base))
    assert p.last_sync_kind == "full"
    changed = dict(base, b=dict(base["b"], endpoints=[(IPS[4], True, True, False, "n1")]))
    svcs, slices = objects(changed)
    await p.sync(svcs, slices)
    assert p.last_sync_kind == "partial"
    payload = fake.restores[-1]
    declared = [ln[1:].split()[0] for ln in payload.splitlines() if ln.startswith(":KCTL-S")]
    assert len([c for c in fake.chains["nat"] if c.startswith("KCTL-SVC-")]) == 3
    assert sum(1 for c in declared if c.startswith("KCTL-SVC-")) == 1          # only b's service chain
    assert sum(1 for c in declared if c.startswith("KCTL-SEP-")) == 2          # b's new SEP + the old one to -X
    assert len([ln for ln in payload.splitlines() if ln.startswith("-X ")]) == 1
    assert await p.sync(svcs, slices) is False and p.last_sync_kind == "unchanged"
    await p.sync(svcs, slices, force=True)                                   # periodic resync: full
    assert p.last_sync_kind == "full"
