"""Health check node ports: kube-proxy's service health server (pkg/proxy/healthcheck/service_health.go).

A LoadBalancer Service with ``externalTrafficPolicy: Local`` gets a
``healthCheckNodePort``; every node answers HTTP on it so that a load balancer
sends the service's traffic only to nodes that have a local endpoint: any
path, ``200`` when the node has local endpoints for the service, ``503``
otherwise, with kube-proxy's JSON body and ``X-Load-Balancing-Endpoint-Weight``
header.  ``HealthServer.update(ports)`` (called by the Proxier after each
sync) opens a listener per port on the node IP, closes those no longer wanted
and updates the counts the listeners answer with.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Iterable

log = logging.getLogger("kctl.nodeagent.proxy")


def body(namespace: str, name: str, count: int) -> bytes:
    return json.dumps({"service": {"namespace": namespace, "name": name}, "localEndpoints": count,
                       "serviceProxyHealthy": True}, indent=1).encode()


def answer(namespace: str, name: str, count: int) -> bytes:
    text = body(namespace, name, count)
    status = "200 OK" if count else "503 Service Unavailable"
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"X-Load-Balancing-Endpoint-Weight: {count}\r\nContent-Length: {len(text)}\r\nConnection: close\r\n\r\n"
            ).encode() + text


class HealthServer:
    def __init__(self, address: str):
        self.address = address
        self.targets: dict[int, tuple[str, str, int]] = {}        # port -> (namespace, name, local endpoints)
        self._servers: dict[int, asyncio.AbstractServer] = {}

    async def update(self, ports: Iterable) -> None:
        """PORTS: ServicePortInfo; those with a health_port count their service's local endpoint IPs."""
        want: dict[int, tuple[str, str, set]] = {}
        for sp in ports:
            if sp.health_port:
                ns, name, ips = want.setdefault(sp.health_port, (sp.namespace, sp.name, set()))
                ips.update(ip for ip, _ in sp.local_endpoints)
        self.targets = {port: (ns, name, len(ips)) for port, (ns, name, ips) in want.items()}
        for port in set(self._servers) - set(self.targets):
            self._servers.pop(port).close()
        for port in set(self.targets) - set(self._servers):
            try:
                self._servers[port] = await asyncio.start_server(
                    lambda r, w, p=port: self._serve(p, r, w), self.address, port)
            except OSError as exc:
                log.warning("proxy: health check node port %s:%d: %s", self.address, port, exc)

    async def _serve(self, port: int, reader, writer) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            ns, name, count = self.targets.get(port, ("", "", 0))
            writer.write(answer(ns, name, count))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
