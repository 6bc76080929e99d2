"""The node agent's service proxy: keeps the node's KCTL-* iptables rules equal to the API, kube-proxy style.

What the rules are (ClusterIP and NodePort VIPs, session affinity,
masquerading) and how they are rendered is nodeagent/proxyrules.py; this
module applies them: the hooks from the built-in chains, the Proxier's sync
and its loop, and the cleanup.

How a sync works: convert the Services and EndpointSlices to service ports
(``ChangeTracker``, nodeagent/proxymodel.py: only Services whose objects
changed are converted again) → render a fragment for each changed service port
(nodeagent/proxyrules.py) → stop if no port changed →

* partial sync (the usual case): ONE ``iptables-restore --noflush`` of the
  top-level chains plus the chains of the changed ports, with ``-X`` for the
  chains of removed ones (kube-proxy's partial sync);
* full sync (the first one, any sync after a failure, and the periodic forced
  resync every ``resync_interval``): list the nat table's existing ``KCTL-*``
  chains (``iptables-save -t nat``), restore every chain with a declaration
  and ``-X`` for each stale one, and check the hooks of the built-in chains
  with ``iptables -C … || iptables -I …``, outside the payload (inside it,
  --noflush would add them again on every sync);

→ for UDP, delete the conntrack entries that would keep steering packets to
a removed endpoint or past a VIP that just got endpoints
(``udp_conntrack_deletions``), and for TCP those of connections still
opening (SYN_SENT) to a removed endpoint (``tcp_conntrack_deletions``: a
retransmitted SYN would follow them to a pod about to stop), all in one
``conntrack -R -`` process → report the EndpointSlices' resourceVersion
the tables now reflect (``applied_rv``, ``on_applied``): the node agent
publishes it so that a node deleting a pod can wait until no proxy sends
it new connections any more (nodeagent/drain.py).

Rate limiting (``run``): informer handlers call ``request_sync()``, which only
sets an event.  The loop waits for it, then waits until ``min_sync_interval``
has passed since the previous sync, clears the event and syncs the *current*
state from ``source()``: a burst of events becomes one sync.  Failures are
retried with backoff; every ``resync_interval`` a forced sync re-checks the
hooks and re-applies the rules even if nothing changed.  ``run`` never raises
for iptables errors (they are logged and counted), so a transient failure
cannot end the agent.

Use from the agent (after the node's pod CIDR is known)::

    proxier = Proxier(IptablesRunner(), node_ip=NODE_IP, pod_cidr=node.spec.pod_cidr,
                      masquerade_cidr=args.masquerade_cidr, node_name=NODE)
    proxier.attach(Informer(client, "Service"), Informer(client, "EndpointSlice"))
    ... run the two informers and proxier.run() as named tasks ...
    await proxier.cleanup()     # only on a real teardown (kctl lab down), not on every stop

The agent process must already be in the node's network namespace (the
iptables commands inherit it).  Hollow agents share the host's namespace and
must pass ``FakeIptables()``.  Our filter chains only REJECT, never ACCEPT, so
their position relative to other chains hooked first (the lab's partition
chain) does not matter.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

from nodeagent.errors import IptablesError, ProxyError
from nodeagent.metrics import (PROXY_RULES as RULES, PROXY_SYNC_DURATION as SYNC_DURATION,
                               PROXY_SYNC_ERRORS as SYNC_ERRORS, PROXY_SYNCS as SYNCS)
from nodeagent.proxymodel import ChangeTracker
from nodeagent.proxyrules import (HOOKS, PREFIX, Globals, ServicePortInfo, assemble, count_rules, kctl_chains,
                                  partial_payload, render_fragment, stale_chains, tcp_conntrack_deletions,
                                  udp_conntrack_deletions, with_stale_deletions)

log = logging.getLogger("kctl.nodeagent.proxy")


# ---------------------------------------------------------------------------- hooks / cleanup

async def ensure_hooks(runner) -> list[str]:
    """``iptables -C … || iptables -I …`` for every hook; returns the ones inserted."""
    added = []
    for table, chain, spec in HOOKS:
        r = await runner.iptables("-t", table, "-C", chain, *spec)
        if r.rc == 0:
            continue
        if r.rc != 1:
            raise IptablesError(f"iptables -t {table} -C {chain}: {r.stderr.strip()}")
        r = await runner.iptables("-t", table, "-I", chain, *spec)
        if r.rc != 0:
            raise IptablesError(f"iptables -t {table} -I {chain}: {r.stderr.strip()}")
        added.append(f"{table}/{chain} -> {spec[-1]}")
    return added


async def cleanup(runner) -> list[str]:
    """Remove every jump into a KCTL-* chain, then every KCTL-* chain, in filter and nat.

    Works from what iptables-save shows (not from our memory), so it also
    removes leftovers of a crashed agent.  Returns what was removed.
    """
    import shlex
    removed, payload = [], []
    for table in ("filter", "nat"):
        text = await runner.save(table)
        for line in text.splitlines():
            if not line.startswith("-A "):
                continue
            words = shlex.split(line)
            chain, spec = words[1], words[2:]
            target = spec[spec.index("-j") + 1] if "-j" in spec else ""
            if target.startswith(PREFIX) and not chain.startswith(PREFIX):
                r = await runner.iptables("-t", table, "-D", chain, *spec)
                if r.rc != 0:
                    raise IptablesError(f"iptables -t {table} -D {chain}: {r.stderr.strip()}")
                removed.append(f"{table}/{chain} -> {target}")
        chains = sorted(kctl_chains(text))
        if chains:
            payload += [f"*{table}", *(f":{c} - [0:0]" for c in chains), *(f"-X {c}" for c in chains), "COMMIT"]
            removed += [f"{table}/{c}" for c in chains]
    if payload:
        await runner.restore("\n".join(payload) + "\n")
    return removed


# ---------------------------------------------------------------------------- Proxier

Source = Callable[[], tuple[Iterable, Iterable]]


class Proxier:
    """Keeps the node's KCTL-* rules equal to ``render(source())``; see the module docstring.

    ``runner`` is an ``IptablesRunner`` (or ``FakeIptables``); ``source``
    returns ``(services, endpoint slices)`` for ``run()`` (e.g. from two
    informers' ``list()``; core/v1 Endpoints work too).  ``node_name`` picks
    the local endpoints of the Local traffic policies.  ``on_applied(rv)`` is
    called after every sync that leaves the tables equal to the slices as of
    resourceVersion ``rv`` (nodeagent/drain.py reports it).  ``health`` serves
    the healthCheckNodePorts (nodeagent/proxyhealth.py).  ``clock``/``sleep``
    are injectable for tests; ``partial_syncs=False`` makes every sync a full one.
    """

    def __init__(self, runner, *, node_ip: str | None, pod_cidr: str | None = None,
                 masquerade_cidr: str | None = None, source: Source | None = None,
                 min_sync_interval: float = 1.0, resync_interval: float = 300.0, retry_delay: float = 1.0,
                 max_retry_delay: float = 30.0, partial_syncs: bool = True, on_applied=None, health=None,
                 node_name: str = "", clock: Callable[[], float] = time.monotonic, sleep=asyncio.sleep):
        self.runner = runner
        self.node_ip, self.pod_cidr, self.masquerade_cidr = node_ip, pod_cidr, masquerade_cidr
        self.globals = Globals(node_ip, pod_cidr, masquerade_cidr)  # bad node_ip / CIDRs fail here, at start
        self.source = source
        self.min_sync_interval, self.resync_interval = min_sync_interval, resync_interval
        self.slow_sync = 1.0                # s: an applied sync this slow is logged as a warning
        self.retry_delay, self.max_retry_delay = retry_delay, max_retry_delay
        self.partial_syncs, self.on_applied = partial_syncs, on_applied
        self.health = health                # a HealthServer (nodeagent/proxyhealth.py), or None
        self.node_name = node_name
        self._clock, self._sleep = clock, sleep
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tracker = ChangeTracker(node_name)
        # what the tables hold, by "key/protocol" in render order; None = unknown (start, after a failure)
        self._fragments: dict | None = None
        self._hooks_ok = False
        self._last_sync: float | None = None
        self.last_stale: list[str] = []
        self.last_sync_kind = ""            # "full", "partial" or "unchanged"
        self.last_payload = ""              # what the last applied sync restored (without stale -X if full)
        self.applied_rv = 0                 # slices' resourceVersion the tables reflect (0 = unknown)
        self._tracked: dict[str, ServicePortInfo] = {}   # UDP and TCP ports as last applied, for conntrack
        self._informers: tuple = ()
        self._rv: Callable[[], int] = lambda: 0

    def attach(self, services_informer, endpoints_informer) -> None:
        """Feed from two informers (Service and EndpointSlice, all namespaces): every add/update/delete
        requests a sync, ``source`` lists both caches, and ``run()`` waits for both to sync first
        (otherwise the first sync would REJECT every service whose slices are not listed yet)."""
        for inf in (services_informer, endpoints_informer):
            inf.add_handler(on_add=lambda obj: self.request_sync(),
                            on_update=lambda old, new: self.request_sync(),
                            on_delete=lambda obj: self.request_sync())
        self._informers = (services_informer, endpoints_informer)
        self.source = lambda: (services_informer.list(), endpoints_informer.list())
        self._rv = lambda: int(endpoints_informer.last_resource_version or 0)

    @property
    def applied_payload(self) -> str | None:
        """The full payload equal to what the tables hold (None before the first sync / after a failure)."""
        if self._fragments is None:
            return None
        return assemble((f for _, f in self._fragments.values()), self.globals)

    def _fragments_for(self, ports: list[ServicePortInfo]) -> dict:
        old, out = self._fragments or {}, {}
        for sp in ports:
            k = f"{sp.key}/{sp.protocol}"
            prev = old.get(k)
            out[k] = prev if prev is not None and prev[0] == sp else (sp, render_fragment(sp, self.globals))
        return out

    async def _clear_conntrack(self, ports: list[ServicePortInfo]) -> None:
        """Delete stale conntrack entries (udp_ and tcp_conntrack_deletions), all in one ``conntrack``
        process; failures are only logged."""
        deletions = udp_conntrack_deletions(self._tracked, ports) + tcp_conntrack_deletions(self._tracked, ports)
        self._tracked = {f"{sp.key}/{sp.protocol}": sp for sp in ports if sp.protocol in ("udp", "tcp")}
        if not deletions:
            return
        try:
            r = await self.runner.conntrack_delete(deletions)
        except IptablesError as exc:
            log.warning("proxy: conntrack -R (%d deletions): %s", len(deletions), exc)
            return
        if r.rc != 0:
            log.warning("proxy: conntrack -R (%d deletions): %s", len(deletions), r.stderr.strip())

    async def _restore_full(self, frags: dict) -> str:
        payload = assemble((f for _, f in frags.values()), self.globals)
        self.last_stale = stale_chains(payload, kctl_chains(await self.runner.save("nat")))
        await self.runner.restore(with_stale_deletions(payload, self.last_stale))
        return payload

    def _applied(self, rv: int | None) -> None:
        if rv:
            self.applied_rv = max(self.applied_rv, rv)
            if self.on_applied is not None:
                self.on_applied(self.applied_rv)

    async def sync(self, services: Iterable, endpoints: Iterable, *, force: bool = False,
                   rv: int | None = None) -> bool:
        """Apply the rules for this state; False when skipped because nothing changed.

        A partial sync (only the changed service ports' chains, plus the
        top-level chains) unless FORCE, or nothing is known to be applied
        (first sync, after a failure), or partial syncs are off: then a full
        one, with the stale chains found by ``iptables-save``.  RV is the
        slices' resourceVersion this state reflects (see ``on_applied``)."""
        async with self._lock:
            start = time.perf_counter()
            self._last_sync = self._clock()
            ports = self._tracker.service_ports(services, endpoints)
            if self.health is not None:
                await self.health.update(ports)
            frags = self._fragments_for(ports)
            full = force or self._fragments is None or not self.partial_syncs
            payload, changed = None, 1
            if self._fragments is not None:
                payload, changed = partial_payload(self._fragments, frags, self.globals)
            if not changed and not force:
                SYNCS.labels(self.node_name, "unchanged").inc()
                self.last_sync_kind = "unchanged"
                self._applied(rv)
                return False
            try:
                if full:
                    payload = await self._restore_full(frags)
                else:
                    self.last_stale = [ln[3:] for ln in payload.splitlines() if ln.startswith("-X ")]
                    await self.runner.restore(payload)
                if force or not self._hooks_ok:
                    added = await ensure_hooks(self.runner)
                    if added:
                        log.info("proxy: hooked %s", ", ".join(added))
                    self._hooks_ok = True
            except IptablesError as exc:
                self._fragments, self._hooks_ok = None, False
                SYNC_ERRORS.labels(self.node_name).inc()
                raise ProxyError(f"proxy sync failed: {exc}") from exc
            self._fragments, self.last_payload = frags, payload
            self.last_sync_kind = "full" if full else "partial"
            await self._clear_conntrack(ports)
            for table, n in count_rules(payload).items():
                RULES.labels(self.node_name, table).set(n)
            SYNCS.labels(self.node_name, "applied").inc()
            took = time.perf_counter() - start
            SYNC_DURATION.observe(took)
            if took >= self.slow_sync:   # nodes deleting pods wait for this sync (nodeagent/drain.py)
                log.warning("proxy: %s sync of %d service ports took %.2fs", self.last_sync_kind, len(ports), took)
            self._applied(rv)
            if self.last_stale:
                log.debug("proxy: deleted %d stale chains", len(self.last_stale))
            return True

    def request_sync(self) -> None:
        """Ask ``run()`` for a sync soon (cheap; call it from any informer handler)."""
        self._wake.set()

    async def run(self) -> None:
        """Sync now, then on every request (rate-limited, coalesced), periodically, and on retry."""
        if self.source is None:
            raise ValueError("Proxier.run() needs a source (or attach())")
        for inf in self._informers:
            await inf.wait_synced()
        self._wake.set()
        failures = 0
        deadline = self._clock() + self.resync_interval
        while True:
            force = False
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - self._clock()))
            except asyncio.TimeoutError:
                force = True   # periodic resync, or retry after a failure
            if self._last_sync is not None:
                delay = self._last_sync + self.min_sync_interval - self._clock()
                if delay > 0:
                    await self._sleep(delay)
            self._wake.clear()  # requests made while we waited are served by this sync
            services, endpoints = self.source()
            try:
                await self.sync(services, endpoints, force=force, rv=self._rv())
                failures = 0
                deadline = self._clock() + self.resync_interval
            except ProxyError as exc:
                failures += 1
                retry = min(self.max_retry_delay, self.retry_delay * 2 ** (failures - 1))
                log.warning("%s; retry in %.1fs", exc, retry)
                deadline = self._clock() + retry
            except Exception:
                SYNC_ERRORS.labels(self.node_name).inc()
                log.exception("proxy: sync failed unexpectedly")
                failures += 1
                deadline = self._clock() + self.max_retry_delay

    async def cleanup(self) -> list[str]:
        """Remove all KCTL-* chains and hooks (agent teardown); forget what was applied."""
        async with self._lock:
            self._fragments, self._hooks_ok, self._tracked = None, False, {}
            try:
                return await cleanup(self.runner)
            except IptablesError as exc:
                raise ProxyError(f"proxy cleanup failed: {exc}") from exc

