"""kctl-dns queries per second and latency over UDP on loopback, next to a raw floor.

    python -m bench.dns [--services 1000] [--duration 3] [--window 16] [--rate 5000] [--pin]

No cluster needed: each server runs in its own child process — one asyncio
thread, so at most one core (`--pin` also pins it to CPU 0 and the load
generator to CPU 1; off by default, since on a shared machine a pinned
process waits for its CPU while the other is idle) — fed in-process:
* kctl-dns: a FakeClient holding N services in 10 namespaces (one in five
  headless with 3 ready endpoints and their pods), listed and watched by the
  real informers → Feed → ClusterIndex → Resolver → DnsServer, as
  `kctl-dns` runs them;
* kctl-dns, no cache: the same with the answer cache off (every query
  parsed, resolved and rendered: the cost of the logic);
* raw floor: dnspython answering a static zone with no logic (parse, one
  dict lookup of a prebuilt RRset, render) on the same asyncio datagram
  endpoint — what the library and the transport cost by themselves.
The query mix (same bytes for every server): A of every service, A of the
headless ones (3 records), SRV `_http._tcp`, a PTR per ClusterIP, and one
NXDOMAIN in ten.

Two measurements per server:
* qps: a closed loop keeping `--window` queries in flight for `--duration`
  seconds (the server's saturated rate);
* latency: an open loop sending `--rate` queries per second (the goal's
  5,000) for `--duration` seconds, each timed from its scheduled send to its
  answer, so a server that falls behind shows it; `lost` counts queries
  never answered.
The server's CPU use (from /proc) is printed next to it. The goal is
≥ 5,000 qps on one core with p99 ≤ 5 ms; the bench prints the figures and
asserts nothing. Ends with `RESULT key=value ...`.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import select
import socket
import time

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from bench.proccpu import cpu_seconds

NAMESPACES = 10


def dataset(services: int):
    """(namespace, name, cluster_ip or None, endpoint IPs) for the bench."""
    out = []
    for i in range(services):
        ns, name = f"ns{i % NAMESPACES}", f"svc{i}"
        if i % 5 == 0:
            out.append((ns, name, None, [f"10.244.{i // 80}.{(i % 80) * 3 + k + 1}" for k in range(3)]))
        else:
            out.append((ns, name, f"10.96.{i // 250}.{i % 250 + 1}", []))
    return out


def queries(services: int) -> list[bytes]:
    wires = []
    for i, (ns, name, ip, _) in enumerate(dataset(services)):
        fqdn = f"{name}.{ns}.svc.cluster.local."
        wires.append(dns.message.make_query(fqdn, "A").to_wire())
        if i % 3 == 0:
            wires.append(dns.message.make_query(f"_http._tcp.{fqdn}", "SRV").to_wire())
        if ip and i % 3 == 1:
            rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa."
            wires.append(dns.message.make_query(rev, "PTR").to_wire())
        if i % 10 == 9:
            wires.append(dns.message.make_query(f"missing{i}.{ns}.svc.cluster.local.", "A").to_wire())
    return wires


# ------------------------------------------------------------ servers (child processes)

async def _kctl_dns(services: int, cache_size: int):
    from clusterdns.feed import Feed
    from clusterdns.index import ClusterIndex
    from clusterdns.resolver import Resolver
    from clusterdns.server import DnsServer
    from machinery.fakeclient import FakeClient
    from machinery.informer import SharedInformerFactory
    from machinery.pb import core_pb2, meta_pb2

    client = FakeClient()
    for n in range(NAMESPACES):
        await client.create(core_pb2.Namespace(metadata=meta_pb2.ObjectMeta(name=f"ns{n}")))
    for ns, name, ip, eps in dataset(services):
        md = meta_pb2.ObjectMeta(name=name, namespace=ns)
        spec = core_pb2.ServiceSpec(cluster_ip=ip or "None", cluster_ips=[ip or "None"])
        spec.ports.add(name="http", port=80, protocol="TCP")
        await client.create(core_pb2.Service(metadata=md, spec=spec))
        if eps:
            ep = core_pb2.Endpoints(metadata=md)
            subset = ep.subsets.add()
            subset.ports.add(name="http", port=8080, protocol="TCP")
            for k, addr in enumerate(eps):
                subset.addresses.add(ip=addr)
                await client.create(core_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=f"{name}-{k}", namespace=ns),
                                                 status=core_pb2.PodStatus(pod_ip=addr)))
            await client.create(ep)
    factory = SharedInformerFactory(client)
    index = ClusterIndex()
    feed = Feed(factory, index)
    server = DnsServer(Resolver(index), cache_size=cache_size)
    tasks = [asyncio.create_task(factory.run()), asyncio.create_task(feed.run())]
    while not index.synced:
        await asyncio.sleep(0.05)
    await server.start("127.0.0.1", 0)
    return server, tasks


STATIC = {dns.rdatatype.A: "10.96.0.1", dns.rdatatype.SRV: "0 100 80 svc0.ns0.svc.cluster.local.",
          dns.rdatatype.PTR: "svc0.ns0.svc.cluster.local."}


class _RawFloor(asyncio.DatagramProtocol):
    """dnspython answering a static zone: parse, one dict lookup, render."""

    def __init__(self, zone: dict):
        self.zone, self.transport = zone, None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        rrset = self.zone.get((q.question[0].name, q.question[0].rdtype))
        if rrset is None:
            r.set_rcode(dns.rcode.NXDOMAIN)
        else:
            r.answer.append(rrset)
        self.transport.sendto(r.to_wire(max_size=512, prefer_truncation=True), addr)


async def _raw_floor(services: int):
    zone = {}
    for wire in queries(services):
        q = dns.message.from_wire(wire)
        name, rdtype = q.question[0].name, q.question[0].rdtype
        if not name.labels[0].startswith(b"missing"):
            zone[(name, rdtype)] = dns.rrset.from_text(name, 5, "IN", rdtype, STATIC[rdtype])
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _RawFloor(zone), local_addr=("127.0.0.1", 0))
    return transport, []


def serve_child(kind: str, services: int, conn, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    async def main():
        if kind == "raw":
            transport, _ = await _raw_floor(services)
            port = transport.get_extra_info("sockname")[1]
        else:
            server, _ = await _kctl_dns(services, cache_size=0 if kind == "nocache" else 10000)
            port = server.port
        conn.send(port)
        await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------ load generator (this process)

def closed_loop(port: int, wires: list[bytes], duration: float, window: int) -> tuple[float, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.5)
    pending: dict[int, float] = {}
    i = done = lost = 0

    def send() -> None:
        nonlocal i
        qid = i & 0xFFFF
        sock.send(qid.to_bytes(2, "big") + wires[i % len(wires)][2:])
        pending[qid] = time.perf_counter()
        i += 1

    for _ in range(window):
        send()
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            lost += len(pending)
            pending.clear()
            for _ in range(window):
                send()
            continue
        if pending.pop(int.from_bytes(data[:2], "big"), None) is not None:
            done += 1
            send()
    elapsed = time.perf_counter() - start
    sock.close()
    return done / elapsed, lost


def open_loop(port: int, wires: list[bytes], duration: float, rate: float) -> tuple[list[float], int, int]:
    """(latencies in s, sent, lost) at a fixed send rate, timed from each scheduled send."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    interval = 1.0 / rate
    pending: dict[int, float] = {}
    latencies: list[float] = []
    i = 0
    start = time.perf_counter()
    due = start
    drain_until = start + duration + 1.0
    while True:
        now = time.perf_counter()
        if now >= drain_until or (now - start >= duration and not pending):
            break
        while due <= now and due - start < duration:
            qid = i & 0xFFFF
            sock.send(qid.to_bytes(2, "big") + wires[i % len(wires)][2:])
            pending[qid] = due
            i += 1
            due += interval
        wait = max(0.0, min(due, drain_until) - time.perf_counter()) if due - start < duration else 0.05
        if select.select([sock], [], [], wait)[0]:          # sleep until an answer or the next send
            try:
                while True:
                    data = sock.recv(65535)
                    sent_at = pending.pop(int.from_bytes(data[:2], "big"), None)
                    if sent_at is not None:
                        latencies.append(time.perf_counter() - sent_at)
            except BlockingIOError:
                pass
    sock.close()
    return latencies, i, len(pending)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def measure(kind: str, args, wires: list[bytes], cpus: tuple) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_child, args=(kind, args.services, child, cpus[0]), daemon=True)
    proc.start()
    try:
        if not parent.poll(120):
            raise RuntimeError(f"{kind} server did not start")
        port = parent.recv()
        closed_loop(port, wires, min(1.0, args.duration), args.window)          # warm up (fills the cache)
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        qps, lost_closed = closed_loop(port, wires, args.duration, args.window)
        cpu_pct = 100 * (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0)
        lat, sent, lost = open_loop(port, wires, args.duration, args.rate)
    finally:
        proc.terminate()
        proc.join(10)
    return {"qps": qps, "cpu_pct": cpu_pct, "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
            "sent": sent, "lost": lost + lost_closed}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.dns", description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--window", type=int, default=16, help="queries in flight in the qps loop")
    p.add_argument("--rate", type=float, default=5000, help="queries per second in the latency loop")
    p.add_argument("--pin", action="store_true", help="pin the server to CPU 0, the load generator to CPU 1")
    args = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if args.pin and len(cpus) > 1 else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    wires = queries(args.services)
    where = f"server on CPU {server_cpu}, load generator on CPU {client_cpu}" if args.pin else "not pinned"
    print(f"{args.services} services, {len(wires)} distinct queries; {where}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} before the run")
    print(f"{'server':<22}{'qps':>9}{'cpu%':>7}   at {args.rate:.0f} q/s:{'p50 ms':>8}{'p99 ms':>8}{'lost':>6}")
    results = {}
    for kind, label in (("kctl", "kctl-dns"), ("nocache", "kctl-dns, no cache"), ("raw", "raw floor (dnspython)")):
        r = results[kind] = measure(kind, args, wires, (server_cpu,))
        print(f"{label:<22}{r['qps']:>9.0f}{r['cpu_pct']:>7.0f}   {'':>12}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
              f"{r['lost']:>6}")
    k, n, raw = results["kctl"], results["nocache"], results["raw"]
    print(f"RESULT qps={k['qps']:.0f} p99_ms={k['p99_ms']:.2f} nocache_qps={n['qps']:.0f} "
          f"nocache_p99_ms={n['p99_ms']:.2f} raw_qps={raw['qps']:.0f} raw_p99_ms={raw['p99_ms']:.2f} "
          f"rate={args.rate:.0f} lost={k['lost']} goal_qps=5000 goal_p99_ms=5")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
