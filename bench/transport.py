"""The transport's own floor: a unary call that does nothing, over grpc.aio and over aiohttp.

    .venv/bin/python bench/transport.py [--ops 6000] [--concurrency 64]   (or from bench/api.py)

A server process that answers every call with its request body (gRPC: a
generic unary handler on grpc.aio's server, as the apiserver's; HTTP: an
aiohttp POST handler, as the apiserver's HTTP API), and this process's client
calling it as bench/api.py calls the apiserver: 8 gRPC channels or one pooled
aiohttp session shared by the workers, a body of a Pod's size.  Per call: the
server's CPU, this client's CPU and the whole machine's (/proc/stat).  What a
request through the apiserver costs on top of this is kctl's; this much no
server code on that transport can avoid on this machine.  The apiserver pays
the gRPC floor twice per write: once as the server of the call, once as the
client of its etcd call (aetcd is grpc.aio too).  The server process is
stopped by PID on the way out.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from bench.phase import run_phase  # noqa: E402
from bench.proccpu import cpu_seconds, machine_busy  # noqa: E402

METHOD = "/kctlbench.Echo/Echo"
CHANNELS = 8


async def _serve_grpc(port: int) -> None:
    import grpc

    async def echo(request, context):
        return request
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "kctlbench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def _serve_http(port: int) -> None:
    from aiohttp import web

    async def echo(request):
        return web.Response(body=await request.read())
    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def start_server(kind: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the {kind} echo server did not start")
    return proc


async def _phase(call, n: int, concurrency: int, server_pid: int) -> dict[str, float]:
    for i in range(min(n, 200)):                  # warm up every channel / pooled connection
        await call(i)
    cpu0, mine0, busy0 = cpu_seconds(server_pid), cpu_seconds(os.getpid()), machine_busy()
    r = await run_phase(n, concurrency, call)
    r.pop("mean")
    return {**r, "cpu_us": (cpu_seconds(server_pid) - cpu0) / n * 1e6,
            "client_cpu_us": (cpu_seconds(os.getpid()) - mine0) / n * 1e6,
            "machine_cpu_us": (machine_busy() - busy0) / n * 1e6}


async def measure(kind: str, n: int, concurrency: int, body: bytes, port: int) -> dict[str, float]:
    """Calls/s, latency percentiles (ms) and CPU per call (us) of n echo calls of `body` at
    `concurrency`, against a fresh server of `kind` ("grpc" or "http") on `port`."""
    proc = start_server(kind, port)
    try:
        if kind == "grpc":
            import grpc
            channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(CHANNELS)]
            calls = [c.unary_unary(METHOD) for c in channels]
            try:
                return await _phase(lambda i: calls[i % CHANNELS](body), n, concurrency, proc.pid)
            finally:
                await asyncio.gather(*(c.close() for c in channels))
        import aiohttp
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            async def call(i):
                async with session.post(f"http://127.0.0.1:{port}/echo", data=body) as r:
                    await r.read()
                    r.raise_for_status()
            return await _phase(call, n, concurrency, proc.pid)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=6000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--serve", choices=("grpc", "http"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve_grpc(args.port) if args.serve == "grpc" else _serve_http(args.port))
        return
    from harness.objects import new_object
    from harness.process import free_port
    body = new_object("Pod", "template").SerializeToString()
    out = {}
    for kind in ("grpc", "http"):
        r = asyncio.run(measure(kind, args.ops, args.concurrency, body, free_port()))
        print(f"{kind} echo, concurrency {args.concurrency}: {r['ops']:.0f} calls/s, p50 {r['p50']:.2f} ms, "
              f"p99 {r['p99']:.2f} ms; CPU per call: server {r['cpu_us']:.0f} us, client {r['client_cpu_us']:.0f} us, "
              f"machine {r['machine_cpu_us']:.0f} us", flush=True)
        out.update({f"{kind}_floor_{k}": v for k, v in r.items()})
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
