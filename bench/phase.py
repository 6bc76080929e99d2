"""One measured phase of a benchmark: n operations from `concurrency` workers
(bench/api.py's API and etcd phases, bench/transport.py's echo calls)."""
from __future__ import annotations

import asyncio
import statistics
import time


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def run_phase(n: int, concurrency: int, op) -> dict:
    """Run op(i) for i in range(n) with `concurrency` workers; ops/s and latency percentiles (ms)."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker():
        for i in counter:
            t0 = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"ops": n / elapsed, "p50": pct(latencies, 50) * 1000, "p99": pct(latencies, 99) * 1000,
            "mean": statistics.fmean(latencies) * 1000}
