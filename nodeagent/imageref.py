"""Image references, normalised like docker/containerd, and Kubernetes' default pull policy.

``busybox`` -> ``docker.io/library/busybox:latest``; ``index.docker.io`` is
``docker.io``; a first component with a dot, a colon or ``localhost`` (or an
upper-case letter) is a registry host; ``NAME@sha256:…`` pins a digest.
``oci:PATH[:TAG]`` and ``oci-archive:PATH[:TAG]`` name local images (the
path is made absolute).  A reference that breaks these rules raises
``ImagePullError`` with Kubernetes' reason ``InvalidImageName``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from nodeagent.errors import ImagePullError

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_DOMAIN = "docker.io"
OCI_TRANSPORTS = ("oci", "oci-archive")

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-f]{32,}$")


@dataclass(frozen=True)
class ImageRef:
    transport: str  # "docker", "oci" or "oci-archive"
    domain: str = ""  # registry host[:port] (docker only)
    path: str = ""  # repository path, e.g. library/busybox; for oci*: the local path
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.transport == "docker" else f"{self.transport}:{self.path}"

    def __str__(self) -> str:
        if self.transport != "docker":
            return self.name + (f":{self.tag}" if self.tag else "")
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _invalid(ref: str, why: str) -> ImagePullError:
    return ImagePullError("InvalidImageName", f'Failed to apply default image tag "{ref}": {why}')


def parse_reference(ref: str) -> ImageRef:
    """Normalise an image reference; raise ImagePullError(InvalidImageName)."""
    if not ref or ref != ref.strip():
        raise _invalid(ref, "invalid reference format")
    for transport in OCI_TRANSPORTS:
        if ref.startswith(transport + ":"):
            path, _, tag = ref[len(transport) + 1:].partition(":")
            if not path:
                raise _invalid(ref, "empty path")
            if tag and not re.fullmatch(r"[A-Za-z0-9_.@/-]+", tag):
                raise _invalid(ref, "invalid tag in local reference")
            return ImageRef(transport, path=os.path.abspath(path), tag=tag or None)
    name, at, digest = ref.partition("@")
    if at and not _DIGEST_RE.match(digest):
        raise _invalid(ref, "invalid digest format")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise _invalid(ref, "invalid tag format")
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost" and first == first.lower()):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
        if not _DOMAIN_RE.match(domain):
            raise _invalid(ref, "invalid registry host")
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if path != path.lower():
        raise _invalid(ref, "repository name must be lowercase")
    if not _PATH_RE.match(path) or len(domain) + 1 + len(path) > 255:
        raise _invalid(ref, "invalid reference format")
    if tag is None and not digest:
        tag = "latest"
    return ImageRef("docker", domain, path, tag, digest or None)


def default_pull_policy(ref: str) -> str:
    """Kubernetes' default: Always for :latest (or no tag), else IfNotPresent."""
    r = parse_reference(ref)
    return "Always" if r.transport == "docker" and r.tag == "latest" and not r.digest else "IfNotPresent"
