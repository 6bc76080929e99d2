"""bench/transport.py: the transports' floor (an echo call over grpc.aio and
over aiohttp) is measured against a real server process, which echoes the
body and is gone afterwards."""
import os

import pytest

from bench import transport
from harness.process import free_port


@pytest.mark.parametrize("kind", ["grpc", "http"])
async def test_the_floor_is_measured_and_its_server_stopped(kind, monkeypatch):
    started = []
    real = transport.start_server

    def recording(kind_, port):
        proc = real(kind_, port)
        started.append(proc)
        return proc
    monkeypatch.setattr(transport, "start_server", recording)
    r = await transport.measure(kind, 300, 8, b"x" * 1500, free_port())
    assert r["ops"] > 0 and r["p99"] >= r["p50"] > 0
    assert r["cpu_us"] > 0 and r["client_cpu_us"] > 0 and r["machine_cpu_us"] > 0
    (proc,) = started
    assert proc.returncode is not None and not os.path.exists(f"/proc/{proc.pid}/stat")


async def test_the_echo_server_answers_with_the_body():
    import grpc
    port = free_port()
    proc = transport.start_server("grpc", port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert await ch.unary_unary(transport.METHOD)(b"kctl") == b"kctl"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_server_that_does_not_start_is_an_error(monkeypatch):
    monkeypatch.setattr(transport.sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="the grpc echo server did not start"):
        transport.start_server("grpc", free_port())
