"""Pod network sandboxes alone: NodeNetwork.create_sandbox / delete_sandbox, wall and CPU per sandbox.

    sudo PYTHONPATH=$PWD .venv/bin/python bench/sandbox.py [--sandboxes 30]

Makes a throw-away node netns (``kctlbench-sb<hex>``, its pod netns named
``kctlbench-sb<hex>-<pod>``) and a NodeNetwork inside it on a state dir in
/tmp, as the node agent does (bridge, sysctls), then:

1. warm-up: one sandbox created and deleted (threads, netlink sockets, imports);
2. sequential: N sandboxes created one after the other, then deleted one after the other;
3. burst: N create_sandbox calls at once (the agent's pool of SANDBOX_THREADS
   threads), then N delete_sandbox calls at once.

For each phase it prints the wall time per sandbox and this process's user and
sys CPU per sandbox (``resource.getrusage``: every thread, the kernel's netlink
work included as sys; the kernel's own workers, e.g. the netns clean-up after
the last reference, are not in it).  Ends with ``RESULT key=value ...``.
The netns, bridge and state dir are removed on the way out, also on failure.
Needs root; touches nothing outside its node netns.
"""
from __future__ import annotations

import argparse
import asyncio
import pathlib
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from harness.netns import delete_netns, delete_netns_prefix, sh  # noqa: E402
from nodeagent.network import NodeNetwork  # noqa: E402


def cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


async def phase(name: str, n: int, calls, results: dict, *, burst: bool) -> None:
    """Run the N coroutines of CALLS (one after the other, or all at once) and record per-sandbox figures."""
    u0, s0 = cpu()
    t0 = time.perf_counter()
    walls = []
    if burst:
        await asyncio.gather(*(c() for c in calls))
    else:
        for c in calls:
            t = time.perf_counter()
            await c()
            walls.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    u1, s1 = cpu()
    per = {"wall_ms": total / n * 1e3, "user_ms": (u1 - u0) / n * 1e3, "sys_ms": (s1 - s0) / n * 1e3}
    if walls:
        per["p50_ms"] = statistics.median(walls) * 1e3
        per["max_ms"] = max(walls) * 1e3
    results[name] = per
    extra = f"  p50 {per['p50_ms']:6.1f}  max {per['max_ms']:6.1f}" if walls else ""
    print(f"{name:<14} {per['wall_ms']:7.1f} ms wall/sandbox  CPU {per['user_ms']:5.2f} user + "
          f"{per['sys_ms']:5.2f} sys ms/sandbox{extra}", flush=True)


async def run(n: int, node: str, prefix: str, state: str) -> dict:
    net = NodeNetwork("kctlbbr0", "10.251.0.0/23", state, prefix, node_netns=node)
    try:
        await net.setup()
        await net.create_sandbox("warm-up")
        await net.delete_sandbox("warm-up")
        results: dict = {}
        seq = [f"seq-{i}" for i in range(n)]
        bur = [f"burst-{i}" for i in range(n)]
        await phase("seq create", n, [lambda u=u: net.create_sandbox(u) for u in seq], results, burst=False)
        await phase("seq delete", n, [lambda u=u: net.delete_sandbox(u) for u in seq], results, burst=False)
        await phase("burst create", n, [lambda u=u: net.create_sandbox(u) for u in bur], results, burst=True)
        await phase("burst delete", n, [lambda u=u: net.delete_sandbox(u) for u in bur], results, burst=True)
        return results
    finally:
        await net.teardown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sandboxes", type=int, default=30)
    args = p.parse_args()
    node = f"kctlbench-sb{uuid.uuid4().hex[:6]}"
    state = tempfile.mkdtemp(prefix="kctl-bench-sandbox-")
    try:
        sh("ip", "netns", "add", node)
        res = asyncio.run(run(args.sandboxes, node, f"{node}-", state))
    finally:
        delete_netns_prefix(f"{node}-")
        delete_netns(node)
        shutil.rmtree(state, ignore_errors=True)
    keys = {"seq create": "seq_create", "seq delete": "seq_delete",
            "burst create": "burst_create", "burst delete": "burst_delete"}
    fields = [f"sandboxes={args.sandboxes}"]
    for name, key in keys.items():
        r = res[name]
        fields += [f"{key}_ms={r['wall_ms']:.2f}", f"{key}_cpu_ms={r['user_ms'] + r['sys_ms']:.2f}",
                   f"{key}_user_ms={r['user_ms']:.2f}", f"{key}_sys_ms={r['sys_ms']:.2f}"]
    print("RESULT " + " ".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())
