"""The node agent's event loop lag watcher (nodeagent/metrics.py ``watch_loop_lag``): every wake-up
is observed, and a stall of ``warn_after`` or more is a warning naming it."""
from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from nodeagent.metrics import watch_loop_lag


def lag_count(node, le=None):
    if le is None:
        return REGISTRY.get_sample_value("kctl_nodeagent_event_loop_lag_seconds_count", {"node": node}) or 0
    return REGISTRY.get_sample_value("kctl_nodeagent_event_loop_lag_seconds_bucket", {"node": node, "le": le}) or 0


async def test_a_stalled_loop_is_observed_and_warned_about_and_a_punctual_one_is_not(caplog):
    # clock readings: asked at 0, woke at 1.21 (stalled 1.2 s after a 0.01 s sleep), asked at 2,
    # woke at 2.01 (on time); then the clock stands still (lag 0) until cancelled
    readings = iter([0.0, 1.21, 2.0, 2.01])
    clock = lambda: next(readings, 5.0)      # noqa: E731
    before, before_1s = lag_count("lagnode"), lag_count("lagnode", "1.0")
    task = asyncio.create_task(watch_loop_lag("lagnode", interval=0.01, warn_after=0.5, clock=clock))
    while lag_count("lagnode") < before + 3:
        await asyncio.sleep(0.01)
    task.cancel()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["event loop of node lagnode stalled 1.20s (probes, proxy syncs and drains were late)"]
    observed = lag_count("lagnode") - before
    assert lag_count("lagnode", "1.0") - before_1s == observed - 1    # all but the 1.2 s stall are under 1 s
