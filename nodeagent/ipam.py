"""Pod IP allocation of one node (IPAM): one file per allocated IP.

Under ``state_dir/ipam/`` each allocated IP is a file whose content is the
owner (pod UID).  A file is claimed with ``os.link(tmp, final)``, which like
``O_CREAT|O_EXCL`` fails with EEXIST if the IP is already taken, and in
addition guarantees the owner is already written when the name appears.  So
concurrent allocators (threads, or several agent processes on one state dir)
need no lock, and the files survive agent restarts: an IP is never handed
out twice.  The network address, the gateway (first IP) and the broadcast
address are never handed out.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
from pathlib import Path

from nodeagent.errors import IPAMExhausted


class IPAM:
    """File-per-IP allocator for one CIDR (network, gateway and broadcast are never handed out)."""

    def __init__(self, cidr: str, state_dir: str | os.PathLike):
        self.net = ipaddress.ip_network(cidr)
        self.gateway = self.net.network_address + 1
        self.dir = Path(state_dir) / "ipam"
        self.dir.mkdir(parents=True, exist_ok=True)

    def list_allocations(self) -> dict[str, str]:
        """{ip: owner} of every allocated address."""
        out = {}
        for p in self.dir.iterdir():
            if not p.name.startswith("."):
                try:
                    out[p.name] = p.read_text().strip()
                except FileNotFoundError:
                    continue        # released by a sandbox thread meanwhile
        return out

    def owned_by(self, owner: str) -> list[str]:
        return [ip for ip, o in self.list_allocations().items() if o == owner]

    def allocate(self, owner: str) -> str:
        existing = self.owned_by(owner)
        if existing:
            return existing[0]
        tmp = self.dir / f".claim-{os.getpid()}-{hashlib.sha1(owner.encode()).hexdigest()[:8]}"
        tmp.write_text(owner + "\n")
        try:
            for host in self.net.hosts():
                if host == self.gateway:
                    continue
                try:
                    os.link(tmp, self.dir / str(host))
                    return str(host)
                except FileExistsError:
                    continue
        finally:
            tmp.unlink(missing_ok=True)
        raise IPAMExhausted(f"no free IP in {self.net}")

    def release(self, owner: str) -> list[str]:
        released = self.owned_by(owner)
        for ip in released:
            (self.dir / ip).unlink(missing_ok=True)
        return released
