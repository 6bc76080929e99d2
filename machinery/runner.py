"""Running a component's long-lived tasks (design §6.1) and common logging.

`run_tasks({"informers": factory.run(), "workers": run_workers(...), ...})`
starts every coroutine as a named task in one asyncio.TaskGroup:
* a task that raises is logged with its name and traceback, the others are
  cancelled and run_tasks raises ComponentFailed(name): nothing vanishes;
* every task is meant to be long-lived, so a task that returns ends the
  component too (cleanly: the others are cancelled, run_tasks returns);
* SIGTERM / SIGINT cancel every task and run_tasks returns normally, so
  `finally` blocks (lease release, queue shutdown) run.
`run_component(main)` is the console-script wrapper: asyncio.run, exit code
0 on a clean stop, 1 when a task failed; before the loop starts it tunes the
cyclic garbage collector for a long-lived server (`tune_gc`).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Awaitable, Callable

from machinery.errors import ControlFlow, KctlError

log = logging.getLogger("kctl.runner")

GC_THRESHOLD0 = 20_000      # allocations between young collections (Python's default: 700)


class ComponentFailed(KctlError):
    def __init__(self, task_name: str, cause: BaseException | None = None):
        super().__init__(f"task {task_name!r} failed: {cause!r}")
        self.task_name, self.cause = task_name, cause


class _TaskEnded(ControlFlow):
    pass


def setup_logging(component: str, verbosity: int = 0, stream=None) -> None:
    """One format for every component: time, level, component, logger, message.
    verbosity 0 = INFO, 1 = DEBUG for kctl loggers, 2+ = DEBUG for everything."""
    level = logging.DEBUG if verbosity >= 2 else logging.INFO
    logging.basicConfig(
        level=level, stream=stream or sys.stderr, force=True,
        format=f"%(asctime)s.%(msecs)03d %(levelname).1s {component} %(name)s: %(message)s",
        datefmt="%H:%M:%S")
    if verbosity == 1:
        logging.getLogger("kctl").setLevel(logging.DEBUG)
    for noisy in ("grpc", "asyncio", "aetcd"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO if verbosity >= 2 else logging.WARNING))


async def run_tasks(named: dict[str, Awaitable], *, handle_signals: bool = True) -> None:
    """Run named long-lived coroutines until one ends, one fails, or a signal arrives."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    signalled: list[int] = []
    installed: list[int] = []

    def on_signal(sig: int) -> None:
        if not signalled:
            log.info("received %s: stopping", signal.Signals(sig).name)
            signalled.append(sig)
            main.cancel()

    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass                       # not the main thread: the caller handles signals

    async def guard(name: str, coro: Awaitable) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.error("task %r failed: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
            raise ComponentFailed(name, exc) from exc
        log.warning("task %r ended; stopping the component", name)
        raise _TaskEnded(name)

    try:
        try:
            async with asyncio.TaskGroup() as tg:
                for name, coro in named.items():
                    tg.create_task(guard(name, coro), name=name)
        except* _TaskEnded:
            pass
        except* ComponentFailed as group:
            raise group.exceptions[0] from None
    except asyncio.CancelledError:
        if not signalled:
            raise
        main.uncancel()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def tune_gc() -> None:
    """Take what the imports made out of the cyclic collector's sight and collect less often.

    Profiles (bench/README.md) showed the collector, not our code, spending most of the
    apiserver's CPU under load: every full collection walked the few hundred thousand objects
    the imports made (protobuf descriptors, grpc, aiohttp), and the async code's short-lived
    tasks and futures triggered collections every 700 allocations.  ``gc.freeze()`` moves the
    objects alive now to a permanent generation; a larger first threshold makes young
    collections rarer.  Cycles are still collected, just in bigger batches."""
    if os.environ.get("KCTL_GC_DEFAULT"):          # the interpreter's defaults, to compare
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD0, 20, 20)


def run_component(main: Callable[[], Awaitable[None]]) -> int:
    """asyncio.run(main()) for a console script; returns the exit code."""
    tune_gc()
    try:
        asyncio.run(main())
        return 0
    except ComponentFailed as exc:
        log.error("stopping: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
