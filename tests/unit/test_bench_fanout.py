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


async def test_http_watchers_stamp_each_added_object_once_per_watch():
    """bench/fanout.py's HTTP watchers read the JSON lines of `GET ...?watch=true` (with
    bookmarks asked for) and stamp every ADDED object; BOOKMARKs are not writes."""
    import json

    from aiohttp import web

    from bench.fanout import _watch_http
    asked, stop = [], asyncio.Event()

    async def watch(request):
        asked.append(dict(request.query))
        resp = web.StreamResponse()
        await resp.prepare(request)
        for kind, name in (("ADDED", "hwarmup"), ("BOOKMARK", ""), ("ADDED", "h0"), ("ADDED", "h1")):
            await resp.write(json.dumps({"type": kind, "object": {"metadata": {"name": name}}}).encode() + b"\n")
        await stop.wait()                         # the stream stays open, as a watch does
        return resp
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/fanout/configmaps", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        seen = await _watch_http(f"http://127.0.0.1:{port}", 3, "7", 2, threading.Event(),
                                 deadline=time.time() + 30, ssl=False)
    finally:
        stop.set()
        await runner.cleanup()
    assert {name: len(times) for name, times in seen.items()} == {"hwarmup": 3, "h0": 3, "h1": 3}
    assert asked == [{"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": "7"}] * 3
