"""Watch over HTTP: `GET <collection>?watch=true` as Kubernetes streams it.

The response is chunked JSON, one `{"type": ..., "object": ...}` per line,
from the shared Verbs.watch: the same replay for an unset resourceVersion,
the same cache, the same BOOKMARKs (with `allowWatchBookmarks`). A request
that is wrong from the start (bad selector, unknown kind) is an ordinary
HTTP error; a watch that ends badly once open (its resourceVersion was
compacted away, the client fell too far behind) ends with an `ERROR` event
carrying the metav1.Status (410 Expired), which is what client-go and the
Python client turn into a relist. `timeoutSeconds` ends the stream
cleanly; otherwise it lasts until the client goes away. With the Table
Accept header every event's object is a one-row Table (kubectl get -w).
`sendInitialEvents=true` (client-go's watch-list) replays the current
state and marks its end with the annotated BOOKMARK.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict

from aiohttp import web

from apiserver import limits
from apiserver.http import wire
from apiserver.http.resources import Target, int_param
from apiserver.verbs import BOOKMARK, ERROR, Verbs
from machinery import errors
from machinery.pb import api_pb2

log = logging.getLogger(__name__)


def line(kind: str, obj: dict) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


class EncodedLines:
    """The JSON line of a watch event, made once for every HTTP watcher of the
    same version, as Kubernetes' watch cache encodes an event once per
    encoding for all its watchers (cachingObject).  Verbs.watch gives every
    watcher that sees a change the same way the same WatchEvent object
    (watchcache.Event.encoded), so that object is the key: the last `size`
    are kept, each with a reference to its event (an id is never reused while
    its object lives)."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._lines: OrderedDict[tuple[int, str], tuple[api_pb2.WatchEvent, bytes]] = OrderedDict()

    def line(self, ev: api_pb2.WatchEvent, t) -> bytes:
        key = (id(ev), t.served.api_version)
        hit = self._lines.get(key)
        if hit is not None and hit[0] is ev:
            return hit[1]
        data = line(ev.type, t.encode(wire.any_to_message(ev.object)))
        self._lines[key] = (ev, data)
        if len(self._lines) > self.size:
            self._lines.popitem(last=False)
        return data


LINES = EncodedLines()


def watching(request: web.Request) -> bool:
    return request.query.get("watch", "").lower() in ("true", "1")


async def watch(request: web.Request, verbs: Verbs, t: Target) -> web.StreamResponse:
    q = request.query
    timeout = int_param(request, "timeoutSeconds")
    initial = q.get("sendInitialEvents", "").lower() == "true"
    if initial and q.get("resourceVersionMatch") != "NotOlderThan":
        raise errors.Invalid.of("ListOptions.meta.k8s.io", "", [errors.forbidden(
            "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")])
    req = api_pb2.WatchRequest(kind=t.info.kind, namespace=t.namespace, label_selector=q.get("labelSelector", ""),
                               field_selector=q.get("fieldSelector", ""),
                               resource_version="" if initial else q.get("resourceVersion", ""),
                               allow_bookmarks=q.get("allowWatchBookmarks", "").lower() in ("true", "1"))
    events = await verbs.watch(req, initial_events_end=initial)
    as_table = wire.wants_table(request)
    include = q.get("includeObject", "Metadata")
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    if as_table:
        resp.headers["Content-Type"] = wire.TABLE_TYPE
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    first = True

    async def send(kind: str, obj: dict) -> None:
        await write(line(kind, obj))

    async def write(data: bytes) -> None:
        await limits.sent_within(resp.write(data), verbs, t.info.plural)    # a stalled reader is dropped

    async def pump() -> None:
        nonlocal first
        async for ev in events:
            if as_table and ev.type != BOOKMARK:
                obj = wire.any_to_message(ev.object)
                await send(ev.type, wire.table(t.info, [obj], include, columns=first, encode=t.encode))
                first = False
            else:
                await write(LINES.line(ev, t))

    try:
        await asyncio.wait_for(pump(), timeout) if timeout else await pump()
    except asyncio.TimeoutError:
        pass
    except ConnectionResetError:          # the client went away: nothing left to tell it
        return resp
    except limits.Stalled as exc:         # it stopped reading: nothing more can reach it
        log.info("watch %s ended: %s", t.info.plural, exc.message)
        if request.transport is not None:
            request.transport.abort()
        return resp
    except errors.ApiError as exc:
        log.info("watch %s ended: %s", t.info.plural, exc.message)
        err = exc if isinstance(exc, errors.Expired) else errors.Expired(exc.message)
        await send(ERROR, wire.status_of(err))
    finally:
        await events.aclose()
    await resp.write_eof()
    return resp
