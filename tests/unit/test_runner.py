"""run_tasks: failures are named and end the component; signals stop it cleanly."""
import asyncio
import logging
import os
import signal

import pytest

from machinery import runner
from machinery.runner import ComponentFailed, run_tasks, setup_logging


async def forever(cleanups, name):
    try:
        await asyncio.Event().wait()
    finally:
        cleanups.append(name)


async def test_failure_is_logged_by_name_and_cancels_the_rest(caplog):
    cleanups = []

    async def broken():
        await asyncio.sleep(0.01)
        raise ValueError("bad config")
    with pytest.raises(ComponentFailed) as info:
        await asyncio.wait_for(run_tasks({"a": forever(cleanups, "a"), "reconciler": broken()},
                                         handle_signals=False), 5)
    assert info.value.task_name == "reconciler" and isinstance(info.value.cause, ValueError)
    assert cleanups == ["a"]
    assert any("reconciler" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


async def test_a_task_that_returns_ends_the_component():
    cleanups = []

    async def short():
        await asyncio.sleep(0.01)
    await asyncio.wait_for(run_tasks({"a": forever(cleanups, "a"), "short": short()},
                                     handle_signals=False), 5)
    assert cleanups == ["a"]


async def test_sigterm_cancels_cleanly():
    cleanups = []
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(run_tasks({"a": forever(cleanups, "a"), "b": forever(cleanups, "b")}), 5)
    assert sorted(cleanups) == ["a", "b"]


async def test_outside_cancel_propagates():
    cleanups = []
    t = asyncio.ensure_future(run_tasks({"a": forever(cleanups, "a")}, handle_signals=False))
    await asyncio.sleep(0.01)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert cleanups == ["a"]


def test_setup_logging():
    import io
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("kctl").level)
    buf = io.StringIO()
    try:
        setup_logging("kctl-scheduler", 1, stream=buf)
        logging.getLogger("kctl.x").debug("hello")
        logging.getLogger("other").debug("hidden")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("kctl").setLevel(saved[2])
    assert "kctl-scheduler kctl.x: hello" in buf.getvalue() and "hidden" not in buf.getvalue()


def test_tune_gc_freezes_what_exists_and_collects_young_objects_less_often(monkeypatch):
    import gc
    before = gc.get_threshold()
    try:
        monkeypatch.delenv("KCTL_GC_DEFAULT", raising=False)
        runner.tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (runner.GC_THRESHOLD0, 20, 20)
        gc.unfreeze()
        gc.set_threshold(*before)
        monkeypatch.setenv("KCTL_GC_DEFAULT", "1")      # the interpreter's defaults, to compare
        runner.tune_gc()
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
