"""Service proxy sync cost: full and partial Proxier syncs vs a bare iptables-restore of the same payload.

Runs in a throw-away network namespace (``kctlbench-ipt-<hex>``) that the main
thread enters with ``setns`` before anything else, exactly like a node agent
started inside a node's netns: every iptables process the bench spawns
inherits it, the host's tables are never touched.  The namespace is deleted at
the end whatever happens.  Needs root.

Measured in one run, on the same kernel tables (median of ``--rounds``):

* ``render``: the pure renderer alone (Python);
* ``cold sync``: the first Proxier sync into empty tables (iptables-save,
  restore creating every chain, hook checks/inserts);
* ``proxier sync``: a warm full sync (partial syncs off; one endpoint of one service flipped
  between two states, so the payload differs and is really applied): render +
  ``iptables-save -t nat`` + one ``iptables-restore --noflush``;
* ``bare restore``: ``iptables-restore --noflush`` of the same kind of payload
  (the other state's, with its stale-chain deletions) on the same tables: the
  kernel/iptables floor of that change;
* ``noop sync``: a sync of an unchanged state (rendered and compared only);
* ``iptables-save -t nat`` alone (the listing a full sync makes to find stale chains);
* ``1 changed service among N`` (``--partial-services``, 5,000 by default): a
  partial Proxier sync after one endpoint of one service changed (convert the
  changed service, render its chains, the top-level chains of all services,
  one restore) next to a bare ``iptables-restore --noflush`` of the same
  partial payloads on the same tables (goal: ratio ≤ 1.5).

Every number is a median over the rounds; on a busy machine they move a lot
(other processes compete for the 2 cores), the ratio less so.

The ratio proxier/bare is the Proxier's overhead over the kernel-side floor.

    python -m bench.iptables [--services 1000] [--endpoints 3] [--rounds 5] [--partial-services 5000]

Last line: ``RESULT key=value ...``.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import statistics
import subprocess
import sys
import time
import uuid

from machinery.pb import core_pb2
from nodeagent.iptables import IptablesRunner, which_backend
from nodeagent.proxy import Proxier, cleanup
from nodeagent.proxyrules import count_rules, kctl_chains, render, stale_chains, with_stale_deletions

CLONE_NEWNET = 0x40000000
NODE_IP, POD_CIDR, MASQ_CIDR = "172.31.250.10", "10.244.0.0/16", "172.31.250.0/24"


def make_state(n_services: int, n_endpoints: int, flip: bool = False):
    """N ClusterIP services (every 10th also a NodePort) with M ready endpoints each; FLIP changes one
    endpoint of the first service (objects carry resourceVersions, as informer objects do)."""
    services, endpoints = [], []
    for i in range(n_services):
        s = core_pb2.Service()
        s.metadata.namespace, s.metadata.name = f"ns{i % 10}", f"svc{i}"
        s.metadata.resource_version = str(i + 1)
        s.spec.cluster_ip = f"10.96.{i // 250}.{i % 250 + 1}"
        s.spec.type = "NodePort" if i % 10 == 0 else "ClusterIP"
        s.spec.ports.add(name="http", port=80, protocol="TCP", node_port=30000 + i if i % 10 == 0 else 0)
        e = core_pb2.Endpoints()
        e.metadata.namespace, e.metadata.name = s.metadata.namespace, s.metadata.name
        e.metadata.resource_version = str(n_services + i + 1 + (10 ** 7 if flip and i == 0 else 0))
        sub = e.subsets.add()
        for j in range(n_endpoints):
            k = i * n_endpoints + j + (1 if flip and i == 0 and j == 0 else 0) * 65000
            sub.addresses.add(ip=f"10.244.{k // 250 % 256}.{k % 250 + 2}")
        sub.ports.add(name="http", port=8080, protocol="TCP")
        services.append(s)
        endpoints.append(e)
    return services, endpoints


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


async def partial_bench(args) -> dict:
    """One changed service among --partial-services: the Proxier's partial sync vs a bare
    ``iptables-restore --noflush`` of the same partial payloads, on the same tables."""
    runner = IptablesRunner()
    proxier = Proxier(runner, node_ip=NODE_IP, pod_cidr=POD_CIDR, masquerade_cidr=MASQ_CIDR, node_name="bench")
    services, endpoints = make_state(args.partial_services, args.endpoints)
    flipped = make_state(1, args.endpoints, True)[1][0]      # as an informer: only the changed object is new
    states = [(services, endpoints), (services, [flipped] + endpoints[1:])]
    await proxier.sync(*states[0])
    payloads, syncs, bares = {}, [], []
    for target in (1, 0):                      # warm-up: both partial payloads, every service converted once
        await proxier.sync(*states[target])
        payloads[target] = proxier.last_payload
    for r in range(args.rounds):               # interleaved, so that a change of machine load hits both
        target = (r + 1) % 2
        t = time.perf_counter()
        assert await proxier.sync(*states[target]) is True and proxier.last_sync_kind == "partial"
        syncs.append(time.perf_counter() - t)
        assert proxier.last_payload == payloads[target]
        for p in (1 - target, target):         # to the other state and back, as the Proxier believes
            t = time.perf_counter()
            await runner.restore(payloads[p])
            bares.append(time.perf_counter() - t)
    await cleanup(runner)
    p = payloads[1]
    return {"partial_services": args.partial_services, "partial_sync_ms": ms(syncs),
            "partial_bare_ms": ms(bares), "partial_payload_kb": len(p) / 1024,
            "partial_rules": sum(count_rules(p).values())}


async def bench(args) -> dict:
    runner = IptablesRunner()
    proxier = Proxier(runner, node_ip=NODE_IP, pod_cidr=POD_CIDR, masquerade_cidr=MASQ_CIDR, node_name="bench",
                      partial_syncs=False)
    states = [make_state(args.services, args.endpoints, flip) for flip in (False, True)]

    t = time.perf_counter()
    await proxier.sync(*states[0])
    cold = time.perf_counter() - t
    payload = proxier.applied_payload
    rules = count_rules(payload)

    payloads = [render(*st, node_ip=NODE_IP, pod_cidr=POD_CIDR, masquerade_cidr=MASQ_CIDR) for st in states]
    renders, syncs, bares, noops, saves = [], [], [], [], []
    for r in range(args.rounds):
        t = time.perf_counter()
        render(*states[r % 2], node_ip=NODE_IP, pod_cidr=POD_CIDR, masquerade_cidr=MASQ_CIDR)
        renders.append(time.perf_counter() - t)

        target = (r + 1) % 2                      # the tables hold the other state: a real change
        t = time.perf_counter()
        assert await proxier.sync(*states[target]) is True
        syncs.append(time.perf_counter() - t)

        t = time.perf_counter()
        assert await proxier.sync(*states[target]) is False
        noops.append(time.perf_counter() - t)

        # the same kind of change with a bare restore: to the other state and back (leaving the
        # tables as the Proxier believes them); the stale-chain listing is not timed here
        for p in (1 - target, target):
            t = time.perf_counter()
            existing = kctl_chains(await runner.save("nat"))
            saves.append(time.perf_counter() - t)
            full = with_stale_deletions(payloads[p], stale_chains(payloads[p], existing))
            t = time.perf_counter()
            await runner.restore(full)
            bares.append(time.perf_counter() - t)

    t = time.perf_counter()
    removed = await cleanup(runner)
    clean = time.perf_counter() - t
    return {"services": args.services, "endpoints": args.services * args.endpoints,
            "nat_rules": rules["nat"], "nat_chains": payload.count("\n:KCTL-") - 2,
            "payload_kb": len(payload) / 1024, "render_ms": ms(renders), "cold_sync_ms": cold * 1000,
            "proxier_sync_ms": ms(syncs), "bare_restore_ms": ms(bares), "noop_sync_ms": ms(noops),
            "save_ms": ms(saves),
            "cleanup_ms": clean * 1000, "removed": len(removed)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--partial-services", type=int, default=5000,
                    help="services of the '1 changed service among N' case (0: skip it)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    name = f"kctlbench-ipt-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _setns(f"/var/run/netns/{name}")
        res = asyncio.run(bench(args))
        if args.partial_services:
            res.update(asyncio.run(partial_bench(args)))
    finally:
        ctypes.CDLL(None, use_errno=True).setns(home, CLONE_NEWNET)
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], check=False)
    ratio = res["proxier_sync_ms"] / res["bare_restore_ms"]
    print(f"backend               {which_backend()}")
    print(f"services x endpoints  {res['services']} x {args.endpoints} = {res['endpoints']} endpoints")
    print(f"payload               {res['nat_rules']} nat rules, {res['nat_chains']} service chains, "
          f"{res['payload_kb']:.0f} KiB")
    print(f"render only           {res['render_ms']:8.1f} ms")
    print(f"cold sync (empty)     {res['cold_sync_ms']:8.1f} ms")
    print(f"proxier full sync     {res['proxier_sync_ms']:8.1f} ms   (render + iptables-save + restore)")
    print(f"bare iptables-restore {res['bare_restore_ms']:8.1f} ms   (the same change, same tables)")
    print(f"ratio proxier/bare    {ratio:8.2f}")
    print(f"iptables-save -t nat  {res['save_ms']:8.1f} ms   (part of every applied sync: stale chains)")
    print(f"unchanged (noop) sync {res['noop_sync_ms']:8.1f} ms")
    print(f"cleanup               {res['cleanup_ms']:8.1f} ms   ({res['removed']} chains/hooks)")
    partial = ""
    if args.partial_services:
        pratio = res["partial_sync_ms"] / res["partial_bare_ms"]
        print(f"1 changed among {res['partial_services']}: proxier partial sync {res['partial_sync_ms']:8.1f} ms, "
              f"bare iptables-restore of the same payload {res['partial_bare_ms']:8.1f} ms "
              f"({res['partial_rules']} rules, {res['partial_payload_kb']:.0f} KiB)   ratio {pratio:.2f}")
        partial = (f" partial_services={res['partial_services']} partial_sync_ms={res['partial_sync_ms']:.1f} "
                   f"partial_bare_ms={res['partial_bare_ms']:.1f} partial_ratio={pratio:.2f}")
    print(f"RESULT services={res['services']} endpoints={res['endpoints']} nat_rules={res['nat_rules']} "
          f"render_ms={res['render_ms']:.1f} cold_sync_ms={res['cold_sync_ms']:.1f} "
          f"proxier_sync_ms={res['proxier_sync_ms']:.1f} bare_restore_ms={res['bare_restore_ms']:.1f} "
          f"ratio={ratio:.2f} noop_sync_ms={res['noop_sync_ms']:.1f} save_ms={res['save_ms']:.1f} "
          f"backend={which_backend()}{partial}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
