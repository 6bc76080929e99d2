"""Health check node ports (nodeagent/proxyhealth.py): 200 with the local endpoint count while the
node has local endpoints of the service, 503 without, nothing once the service no longer needs it."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest

from nodeagent.proxyhealth import HealthServer
from nodeagent.proxymodel import service_ports
from tests.unit.proxy_slices import endpoint_slice, ready, service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lb(port, *eps):
    s = service("web", "10.96.0.10", (("http", 80, "TCP", 30080),), etp="Local")
    s.spec.type, s.spec.health_check_node_port = "LoadBalancer", port
    return service_ports([s], [endpoint_slice("web", eps)], "n1")


async def get(port) -> tuple[int, dict, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await reader.read()
    writer.close()
    head, _, text = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(text)


async def test_health_check_node_port_answers_like_kube_proxy():
    port = free_port()
    h = HealthServer("127.0.0.1")
    try:
        await h.update(lb(port, ready("10.244.1.2"), ready("10.244.1.3"), ready("10.244.2.2", node="n2")))
        code, headers, body = await get(port)
        assert code == 200 and headers["X-Load-Balancing-Endpoint-Weight"] == "2"
        assert body == {"service": {"namespace": "default", "name": "web"}, "localEndpoints": 2,
                        "serviceProxyHealthy": True}
        await h.update(lb(port, ready("10.244.2.2", node="n2")))
        code, _, body = await get(port)
        assert code == 503 and body["localEndpoints"] == 0
        await h.update([])
        with pytest.raises(OSError):
            await get(port)
    finally:
        h.close()
