"""A tag's manifest digest from the registry in-process, as containerd's resolver asks it.

``imagePullPolicy: Always`` (and every ``:latest``) asks the registry on every
pull which manifest the tag names; when the local image has that digest the
pull ends there.  ``skopeo inspect --raw`` answered that with a Go process per
pull (~15 ms of CPU here); containerd's resolver (remotes/docker/resolver.go)
sends one ``HEAD /v2/NAME/manifests/TAG`` with the manifest media types in
``Accept`` and takes ``Docker-Content-Digest`` (or, without that header, the
sha256 of a GET's body: what ``skopeo inspect --raw`` hashes).

``manifest_digest`` does that with aiohttp and answers None for anything else
-- a 401 (credentials, token auth), another status, a TLS or connection
error, a timeout -- so that the store asks skopeo, which knows
registries.conf, certs.d and token auth, and whose error message is the one
a pod shows.  TLS is never weaker than skopeo's: a host that is not
insecure gets certificate and host name checks against the system's CAs;
an insecure one is asked over plain HTTP, then over HTTPS without
verification (containers/image tries the same two, HTTPS first).  Proxies
come from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``), as
for skopeo.
"""
from __future__ import annotations

import hashlib
import re
import ssl

import aiohttp

# containers/image's manifest types (skopeo inspect's Accept), newest first
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
])
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_MANIFEST = 4 << 20          # containers/image's limit for a manifest
TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=3)   # then skopeo asks (a blackholed host: once more)

_verified: ssl.SSLContext | None = None


def _ssl(insecure: bool) -> ssl.SSLContext | bool:
    global _verified
    if insecure:
        return False                                   # aiohttp: no certificate check
    if _verified is None:
        _verified = ssl.create_default_context()       # the system CAs, loaded once
    return _verified


async def _ask(session: aiohttp.ClientSession, url: str, tls) -> str | None:
    headers = {"Accept": ACCEPT}
    async with session.head(url, headers=headers, ssl=tls) as resp:
        if resp.status != 200:
            return None
        digest = resp.headers.get("Docker-Content-Digest", "")
        if DIGEST.match(digest):
            return digest
    async with session.get(url, headers=headers, ssl=tls) as resp:
        if resp.status != 200:
            return None
        body = await resp.content.read(MAX_MANIFEST + 1)
        return None if len(body) > MAX_MANIFEST else "sha256:" + hashlib.sha256(body).hexdigest()


async def manifest_digest(host: str, path: str, tag: str, insecure: bool) -> str | None:
    """sha256:... of the manifest HOST serves for PATH:TAG, or None (ask skopeo instead)."""
    # trust_env: HTTP(S)_PROXY / NO_PROXY apply as they do to skopeo (Go's ProxyFromEnvironment)
    async with aiohttp.ClientSession(timeout=TIMEOUT, trust_env=True) as session:
        for scheme in ("http", "https") if insecure else ("https",):
            try:
                found = await _ask(session, f"{scheme}://{host}/v2/{path}/manifests/{tag}", _ssl(insecure))
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue
            if found:
                return found
    return None
