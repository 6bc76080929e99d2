"""A pod's imagePullSecrets as registry credentials for skopeo.

The kubelet reads each ``imagePullSecrets`` Secret of type
``kubernetes.io/dockerconfigjson`` (key ``.dockerconfigjson``:
``{"auths": {"HOST": {"auth": base64(user:pass)}}}``) or the older
``kubernetes.io/dockercfg`` (key ``.dockercfg``: ``{"HOST": {...}}``) and
tries the credentials matching the image's registry.  ``pull_auth`` merges
them into one containers-auth.json document (``{"auths": {host: {"auth":
…}}}``, hosts normalised: ``https://index.docker.io/v1/`` → ``docker.io``),
which the image store hands to skopeo as an ``--authfile`` (a temporary
0600 file removed after the pull: nodeagent/images.py).  Secrets that do
not exist are left out with the kubelet's FailedToRetrieveImagePullSecret
event; the pull is still tried.
"""
from __future__ import annotations

import base64
import json

from machinery.pb import core_pb2
from nodeagent.envvars import Sources

DOCKER_CONFIG_JSON, DOCKER_CFG = ".dockerconfigjson", ".dockercfg"


def normalise_host(key: str) -> str:
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def auths_of(secret) -> dict[str, dict]:
    """host -> {"auth": base64(user:pass)} from one pull secret ({} if it holds none)."""
    try:
        if DOCKER_CONFIG_JSON in secret.data:
            entries = json.loads(secret.data[DOCKER_CONFIG_JSON]).get("auths") or {}
        elif DOCKER_CFG in secret.data:
            entries = json.loads(secret.data[DOCKER_CFG])
        else:
            return {}
    except (ValueError, AttributeError):
        return {}
    out = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            continue
        auth = entry.get("auth")
        if not auth and entry.get("username") is not None:
            auth = base64.b64encode(f"{entry['username']}:{entry.get('password', '')}".encode()).decode()
        if auth:
            out[normalise_host(key)] = {"auth": auth}
    return out


def pull_auth(pod: core_pb2.Pod, sources: Sources, event) -> dict | None:
    """The containers-auth.json document for the pod's pull secrets, or None without any."""
    if not pod.spec.image_pull_secrets:
        return None
    auths: dict[str, dict] = {}
    missing = []
    for ref in pod.spec.image_pull_secrets:
        secret = sources.secrets.get(ref.name)
        if secret is None:
            missing.append(ref.name)
            continue
        auths.update(auths_of(secret))
    if missing:
        event("Warning", "FailedToRetrieveImagePullSecret",
              f"Unable to retrieve some image pull secrets ({', '.join(missing)}); attempting to pull "
              "the image may not succeed.")
    return {"auths": auths} if auths else None
