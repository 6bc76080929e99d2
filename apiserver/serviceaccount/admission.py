"""The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount), on pod creation:

* `spec.serviceAccountName` defaults to `default`;
* the account must exist, or the pod is refused (403, Kubernetes' wording:
  `error looking up service account NS/NAME: serviceaccount "NAME" not found`);
  the `default` account is looked up a few times (100-200 ms apart), as
  Kubernetes does, because its controller creates it right after the namespace;
* a pod without `imagePullSecrets` gets the account's;
* unless `automountServiceAccountToken: false` on the pod (or, the pod
  saying nothing, on the account), the projected volume `kube-api-access-<5>`
  (a token for the API's audience valid 3607 s at `token`, the
  `kube-root-ca.crt` ConfigMap's `ca.crt`, the namespace from the downward
  API) is added and mounted read-only at MOUNT_PATH in every container and
  init container that has nothing mounted there yet.

Mirror pods (annotation kubernetes.io/config.mirror) are left alone. Updates
are not touched (a pod's volumes cannot change).

The account is read from the watch cache (`store.service_accounts`, a
FencedIndex of apiserver/admission_cache.py attached in apiserver/main.py):
no etcd read per pod create. An account this apiserver wrote is read from
etcd until the cache shows it (read-your-writes); one the cache lacks is
looked up in etcd as before (with the retries for `default`), as
Kubernetes' plugin falls back from its lister to a live GET.
"""
from __future__ import annotations

import asyncio
import random
import secrets

from machinery import errors, kinds
from machinery.pb import core_pb2

CREATE = "CREATE"                  # apiserver.admission.CREATE
DEFAULT = "default"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
TOKEN_EXPIRATION = 3607          # a bit over an hour: Kubernetes tells kubelet-made tokens apart by it
MIRROR = "kubernetes.io/config.mirror"
VOLUME_PREFIX = "kube-api-access-"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"      # k8s.io/apimachinery/pkg/util/rand: no vowels, no 0/1/3
DEFAULT_ATTEMPTS = 10


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_ALPHANUMS) for _ in range(n))


def account_view(sa) -> tuple:
    """What this plugin reads of a ServiceAccount (apiserver/admission_cache.FencedIndex's view)."""
    automount = sa.automount_service_account_token if sa.HasField("automount_service_account_token") else None
    return sa.metadata.uid, automount, tuple(s.name for s in sa.image_pull_secrets)


def should_automount(sa, pod) -> bool:
    if pod.spec.HasField("automount_service_account_token"):
        return pod.spec.automount_service_account_token
    if sa.HasField("automount_service_account_token"):
        return sa.automount_service_account_token
    return True


def api_access_volume(name: str) -> core_pb2.Volume:
    v = core_pb2.Volume(name=name)
    v.projected.default_mode = 0o644
    tok = v.projected.sources.add().service_account_token
    tok.expiration_seconds, tok.path = TOKEN_EXPIRATION, "token"
    cm = v.projected.sources.add().config_map
    cm.name = ROOT_CA_CONFIGMAP
    cm.items.add(key="ca.crt", path="ca.crt")
    item = v.projected.sources.add().downward_api.items.add(path="namespace")
    item.field_ref.api_version, item.field_ref.field_path = "v1", "metadata.namespace"
    return v


def mount_api_access(pod) -> str:
    """Mount the API access volume (an existing kube-api-access-* one, else a new
    one) in every container without a mount at MOUNT_PATH; add the volume if
    one got a mount. The volume's name ("" when nothing needed it)."""
    taken = {v.name for v in pod.spec.volumes}
    existing = next((v.name for v in pod.spec.volumes if v.name.startswith(VOLUME_PREFIX)), "")
    name = existing
    while not name or (name in taken and not existing):
        name = VOLUME_PREFIX + random_suffix()
    needed = False
    for c in list(pod.spec.init_containers) + list(pod.spec.containers):
        if not any(m.mount_path == MOUNT_PATH for m in c.volume_mounts):
            c.volume_mounts.add(name=name, read_only=True, mount_path=MOUNT_PATH)
            needed = True
    if needed and not existing:
        pod.spec.volumes.append(api_access_volume(name))
    return name if needed else ""


class ServiceAccountPlugin:
    """An apiserver.admission.Plugin (same interface; not a subclass, so that
    apiserver/admission.py can import this module to register it)."""
    name = "ServiceAccount"

    def __init__(self, sleep=asyncio.sleep):
        self.sleep = sleep

    async def lookup(self, store, namespace: str, name: str):
        cache = getattr(store, "service_accounts", None)
        index = cache.reader() if cache is not None else None
        sa = index.get(namespace, name) if index is not None else None
        if sa is not None:
            return sa
        info = kinds.BY_KIND["ServiceAccount"]
        for attempt in range(DEFAULT_ATTEMPTS if name == DEFAULT else 1):
            if attempt:
                await self.sleep(random.uniform(0.1, 0.2))
            try:
                a = await store.get(info, namespace, name)
            except errors.NotFound:
                continue
            sa = info.message()
            a.Unpack(sa)
            return sa
        return None

    async def validate(self, req) -> list[str]:
        cache = getattr(req.store, "service_accounts", None)
        if cache is not None and req.info.kind == "ServiceAccount":
            cache.note(req)                      # admitted: read-your-writes of the account
        return []

    async def mutate(self, req) -> None:
        """req: an apiserver.admission.Request."""
        if req.operation != CREATE or req.info.kind != "Pod" or req.subresource:
            return
        pod = req.obj
        if MIRROR in pod.metadata.annotations:
            return
        if not pod.spec.service_account_name:
            pod.spec.service_account_name = DEFAULT
        ns, sa_name = pod.metadata.namespace, pod.spec.service_account_name
        sa = await self.lookup(req.store, ns, sa_name)
        if sa is None:
            raise errors.Forbidden(f'pods "{pod.metadata.name}" is forbidden: error looking up service account '
                                   f'{ns}/{sa_name}: serviceaccount "{sa_name}" not found',
                                   kind="pods", name=pod.metadata.name)
        if not pod.spec.image_pull_secrets:
            pod.spec.image_pull_secrets.extend(sa.image_pull_secrets)
        if should_automount(sa, pod):
            mount_api_access(pod)
