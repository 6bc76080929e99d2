"""bench/fanout.py's watcher runner: a watch that has seen every write stays
open until all watches of its process have (so no teardown lands among the
last write's deliveries), and all are cancelled once they have."""
import asyncio
import threading
import time

from bench.fanout import _run_watchers


async def test_finished_watchers_stay_open_until_all_have_finished():
    log = []
    release = asyncio.Event()

    async def one(i, finished):
        try:
            if i == 1:
                await release.wait()         # the slow watcher
            finished()
            log.append(("finished", i))
            await asyncio.Event().wait()     # reads on, as a watch stream does
        except asyncio.CancelledError:
            log.append(("closed", i))
            raise

    opened = threading.Event()
    runner = asyncio.create_task(_run_watchers(one, 2, opened, deadline=time.time() + 60))
    await asyncio.sleep(1.2)                 # _run_watchers gives the watches a second to open
    assert opened.is_set()
    assert log == [("finished", 0)]          # watcher 0 is done, and its watch is still open
    release.set()
    await asyncio.wait_for(runner, 5)
    assert log[:2] == [("finished", 0), ("finished", 1)]
    assert sorted(log[2:]) == [("closed", 0), ("closed", 1)]
