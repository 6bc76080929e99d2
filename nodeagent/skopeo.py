"""Registry access for the image store: which endpoints to ask, and running skopeo.

Registry mirrors map a registry host to endpoints
(``{"docker.io": "http://10.1.2.3:5000"}``): a pull of ``busybox`` then asks
``10.1.2.3:5000/library/busybox:latest``.  ``http://`` endpoints and hosts in
``insecure_registries`` are spoken to without TLS verification
(containers/image then falls back to plain HTTP).  Unlike containerd we do
NOT fall back to the upstream registry after the mirrors unless
``mirror_fallback=True``: a lab has no internet, and the mirror's error is
the useful one.  ``Registries.sources`` gives that list of (host, insecure).

``Skopeo.run`` runs one skopeo command with the store's own signature policy
(accept anything) and registries.conf (no search registries, no host
mirrors: the mirrors above are ours), killed on timeout or cancellation; a
failure is a ``SkopeoError`` carrying skopeo's fatal message as one line.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field

from nodeagent.errors import SkopeoError
from nodeagent.imageref import ImageRef


def error_line(stderr: str) -> str:
    """skopeo's fatal message as one readable line (falls back to all of stderr)."""
    msgs = []
    for m in re.finditer(r'msg="((?:[^"\\]|\\.)*)"', stderr):
        try:
            msgs.append(json.loads(f'"{m.group(1)}"'))
        except ValueError:
            msgs.append(m.group(1).replace('\\"', '"'))
    text = msgs[-1] if msgs else " ".join(stderr.split())
    text = re.sub(r'^Error parsing image name "[^"]*": ', "", text)
    return " ".join(text.split()) or "skopeo failed without a message"


def endpoint(url: str) -> tuple[str, bool]:
    """'http://h:p/' -> ('h:p', insecure=True); a bare 'h:p' means https."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "https", url
    rest = rest.rstrip("/")
    if rest.endswith("/v2"):
        rest = rest[:-3]
    return rest, scheme == "http"


@dataclass
class Registries:
    """mirrors: {"docker.io": "http://10.1.2.3:5000"} (a value may be a list);
    insecure: hosts spoken to without TLS verification."""
    mirrors: dict[str, list[str]] = field(default_factory=dict)
    insecure: set[str] = field(default_factory=set)
    mirror_fallback: bool = False

    @classmethod
    def of(cls, mirrors: dict[str, str | list[str]] | None, insecure_registries=(),
           mirror_fallback: bool = False) -> "Registries":
        return cls({k: [v] if isinstance(v, str) else list(v) for k, v in (mirrors or {}).items()},
                   set(insecure_registries), mirror_fallback)

    def sources(self, r: ImageRef) -> list[tuple[str, bool]]:
        """(host, insecure) to try in order for a docker reference."""
        eps = [endpoint(u) for u in self.mirrors.get(r.domain, [])]
        if not eps or self.mirror_fallback:
            eps.append((r.domain, r.domain in self.insecure))
        return [(host, insecure or host in self.insecure) for host, insecure in eps]


@dataclass
class Skopeo:
    binary: str
    policy: str               # signature policy file
    registries_conf: str      # containers-registries.conf(5) file
    tmpdir: str
    timeout: float = 600.0

    async def run(self, *args: str) -> bytes:
        """``skopeo ARGS`` with our policy and registries.conf; its stdout."""
        env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=self.registries_conf)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.binary, "--policy", self.policy, "--tmpdir", self.tmpdir, *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env)
        except OSError as exc:
            raise SkopeoError(f"cannot run {self.binary}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except BaseException:  # timeout or cancellation: do not leave skopeo behind
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            raise SkopeoError(error_line(err.decode(errors="replace")))
        return out
