"""The PodSecurity admission plugin (k8s.io/pod-security-admission/admission).

Validating only; what it does depends on the object:

* Pod create, and updates that change a container image (Kubernetes'
  isSignificantPodUpdate): evaluate the namespace's enforce level; a
  violation refuses the write with Kubernetes' message
  `pods "x" is forbidden: violates PodSecurity "baseline:latest": ...`.
  Otherwise the warn level's violations come back as warnings
  (`would violate PodSecurity "restricted:latest": ...`) and the audit
  level's go to the audit log (below). Pod subresources (status, binding, ...) are not checked.
* Workloads with a pod template (Deployment, ReplicaSet, StatefulSet,
  DaemonSet, Job, CronJob): never refused, as in Kubernetes — only the warn
  and audit levels, so `kctl apply` of a Deployment that would be refused
  shows why before its pods fail to be created.
* The audit level's violations become the annotation
  `pod-security.kubernetes.io/audit-violations` of the request's audit
  event (apiserver/audit.py's `annotate`), and a pod's evaluated enforce
  level `pod-security.kubernetes.io/enforce-policy`, as in Kubernetes; the
  violations are also logged.
* Namespace create/update: invalid pod-security labels are refused (422);
  making the enforce level stricter warns about the existing pods that
  violate it (`existing pods in namespace "x" violate the new PodSecurity
  enforce level "restricted:latest"`, then `pod-a (and 2 other pods): ...`).

Namespaces are read from the apiserver's watch cache (`store.namespaces`, a
FencedIndex of apiserver/admission_cache.py attached in apiserver/main.py,
whose view of a namespace is its pod-security labels): a pod create costs
no etcd read (it was one per pod write: ~5% of the apiserver's CPU in a
burst of creates, and a round trip of each create's latency). A namespace
this apiserver created or relabelled is read from etcd until the cache
shows it (read-your-writes); one not in the cache is read from etcd, as
Kubernetes' namespace getter falls back from its lister to a live GET.
"""
from __future__ import annotations

import logging

from apiserver import admission, audit, objects
from apiserver.podsecurity import checks
from apiserver.podsecurity.policy import DEFAULT, PREFIX, PRIVILEGED, Policy, policy_for, strictness
from machinery import errors, kinds

log = logging.getLogger("kctl-apiserver.podsecurity")

NAMESPACE, POD = kinds.BY_KIND["Namespace"], kinds.BY_KIND["Pod"]
TEMPLATE_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob")
IGNORED_POD_SUBRESOURCES = {"exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"}
MAX_PODS_TO_CHECK = 3000
# annotations on the request's audit event (Kubernetes' names)
ENFORCE_POLICY = "pod-security.kubernetes.io/enforce-policy"
AUDIT_VIOLATIONS = "pod-security.kubernetes.io/audit-violations"


def pod_template(obj):
    """(metadata, spec) of the pod template of a workload, or None."""
    spec = obj.spec.job_template.spec if kinds.of(obj).kind == "CronJob" else obj.spec
    return (spec.template.metadata, spec.template.spec) if spec.HasField("template") else None


def namespace_view(ns) -> tuple:
    """What this plugin reads of a namespace: its pod-security labels."""
    return tuple(sorted((k, v) for k, v in ns.metadata.labels.items() if k.startswith(PREFIX)))


async def namespace_labels(store, name: str):
    """A namespace's labels: from the cache when it is current and has the namespace, else etcd."""
    cache = getattr(store, "namespaces", None)
    index = cache.reader() if cache is not None else None
    ns = index.get("", name) if index is not None else None
    if ns is None:
        kv, _ = await store.storage.get(objects.key(NAMESPACE, "", name))
        ns = objects.decode(NAMESPACE, kv.value, kv.mod_revision) if kv else None
    return ns.metadata.labels if ns is not None else {}


def _significant_update(new, old) -> bool:
    pairs = [(new.spec.containers, old.spec.containers), (new.spec.init_containers, old.spec.init_containers)]
    return any(len(a) != len(b) or any(x.image != y.image for x, y in zip(a, b)) for a, b in pairs)


class PodSecurity(admission.Plugin):
    name = "PodSecurity"

    def __init__(self, default: Policy = DEFAULT):
        self.default = default

    async def validate(self, req: admission.Request) -> list[str]:
        if req.operation == admission.DELETE:
            return []
        kind = req.info.kind
        if kind == "Namespace":
            warnings = await self._namespace(req) if not req.subresource else []
            cache = getattr(req.store, "namespaces", None)
            if cache is not None:                # admitted: read-your-writes of its labels
                cache.note(req)
            return warnings
        if kind == "Pod" and req.subresource not in IGNORED_POD_SUBRESOURCES:
            if req.operation == admission.UPDATE and not _significant_update(req.obj, req.old):
                return []
            policy = await self._policy(req.store, req.obj.metadata.namespace)
            return self.evaluate(policy, req.obj.metadata, req.obj.spec, req, enforce=True)
        if kind in TEMPLATE_KINDS and not req.subresource:
            template = pod_template(req.obj)
            if template is None:
                return []
            policy = await self._policy(req.store, req.obj.metadata.namespace)
            return self.evaluate(policy, *template, req, enforce=False)
        return []

    async def _policy(self, store, namespace: str) -> Policy:
        return policy_for(await namespace_labels(store, namespace), self.default)[0]

    def evaluate(self, policy: Policy, meta, spec, req: admission.Request, *, enforce: bool) -> list[str]:
        cache: dict = {}

        def results(lv):
            if lv not in cache:
                cache[lv] = checks.evaluate(lv.level, lv.minor, meta, spec)
            return cache[lv]

        if enforce:
            audit.annotate(ENFORCE_POLICY, str(policy.enforce))
        if enforce and results(policy.enforce):
            name = meta.name or meta.generate_name
            raise errors.Forbidden(f'{req.info.plural} "{name}" is forbidden: violates PodSecurity '
                                   f'"{policy.enforce}": {checks.detail(results(policy.enforce))}',
                                   kind=req.info.plural, name=name, group=req.info.group)
        if results(policy.audit):
            violation = f'would violate PodSecurity "{policy.audit}": {checks.detail(results(policy.audit))}'
            audit.annotate(AUDIT_VIOLATIONS, violation)
            log.info("audit-violations %s %s/%s: %s", req.info.plural, meta.namespace or req.obj.metadata.namespace,
                     meta.name or req.obj.metadata.name, violation)
        if results(policy.warn):
            return [f'would violate PodSecurity "{policy.warn}": {checks.detail(results(policy.warn))}']
        return []

    async def _namespace(self, req: admission.Request) -> list[str]:
        name = req.obj.metadata.name
        new, errs = policy_for(req.obj.metadata.labels, self.default)
        if req.operation == admission.CREATE:
            if errs:
                raise errors.Invalid.of("Namespace", name, errs, kind="Namespace")
            return []
        old, old_errs = policy_for(req.old.metadata.labels, self.default)
        if errs and [str(e) for e in errs] != [str(e) for e in old_errs]:
            raise errors.Invalid.of("Namespace", name, errs, kind="Namespace")
        if new.enforce == old.enforce or new.enforce.level == PRIVILEGED:
            return []
        if new.enforce.minor == old.enforce.minor and \
                strictness(new.enforce.level) <= strictness(old.enforce.level):
            return []
        return await self.existing_pod_warnings(req.store, name, new)

    async def existing_pod_warnings(self, store, namespace: str, policy: Policy) -> list[str]:
        kvs, _, _ = await store.storage.range(objects.prefix(POD, namespace))
        pods = [objects.decode(POD, kv.value, kv.mod_revision) for kv in kvs]
        total, pods = len(pods), pods[:MAX_PODS_TO_CHECK]
        by_reason: dict[str, list[str]] = {}
        for pod in pods:
            found = checks.evaluate(policy.enforce.level, policy.enforce.minor, pod.metadata, pod.spec)
            if found:
                by_reason.setdefault(checks.reasons(found), []).append(pod.metadata.name)
        warnings = []
        if len(pods) < total:
            warnings.append(f"new PodSecurity enforce level only checked against the first {len(pods)} of "
                            f"{total} existing pods")
        if by_reason:
            warnings.append(f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level '
                            f'"{policy.enforce}"')
        return warnings + sorted(_decorate(names, reason) for reason, names in by_reason.items())


def _decorate(names: list[str], reason: str) -> str:
    first, others = min(names), len(names) - 1
    if others == 0:
        return f"{first}: {reason}"
    return f"{first} (and {others} other pod{'s' if others > 1 else ''}): {reason}"
