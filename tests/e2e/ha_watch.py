"""A watcher in a process of its own, for the fault suite (ha_helpers.WatchProcess).

    python -m tests.e2e.ha_watch KUBECONFIG NAMESPACE SERVER[,SERVER...]

Lists the ConfigMaps of NAMESPACE, prints ``WATCHING <rv>``, then ONE
`Client.watch` from that resourceVersion with every apiserver endpoint
given (the kubeconfig's credentials), printing ``<TYPE> <name> <rv>`` per event. It never
re-lists or re-opens the watch itself: surviving an apiserver's death
without a gap or a duplicate is the client's job, and what the test checks.
If the watch ends or fails it prints ``ENDED``/``ERROR ...`` and exits 1.
"""
from __future__ import annotations

import asyncio
import sys

from machinery import errors
from machinery.client import Client


async def main(kubeconfig: str, namespace: str, servers: str) -> int:
    async with Client.from_kubeconfig(kubeconfig, servers, timeout=10) as client:
        _, rv = await client.list("ConfigMap", namespace)
        print(f"WATCHING {rv}", flush=True)
        try:
            async for ev in client.watch("ConfigMap", namespace, resource_version=rv):
                name = ev.object.metadata.name if ev.object is not None else "-"
                print(f"{ev.type} {name} {ev.resource_version}", flush=True)
        except errors.ApiError as exc:
            print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
            return 1
        print("ENDED", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
