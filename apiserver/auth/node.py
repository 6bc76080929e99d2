"""The Node authorizer (plugin/pkg/auth/authorizer/node): what a node agent
may do under its own identity, `system:node:NAME` in group `system:nodes`.

A node reads only the Secrets, ConfigMaps and PersistentVolumeClaims that
pods bound to it use (volumes, env, envFrom, imagePullSecrets), the
PersistentVolumes bound to those claims, and may request tokens only for
its pods' ServiceAccounts; it may touch only its own Lease in
kube-node-lease. Everything else a node does is checked against the static
node rules (bootstrappolicy.NODE_RULES); which Node and which pods it may
write is NodeRestriction's job (apiserver/admission_noderestriction.py),
since only admission sees the objects.

Kubernetes keeps a graph of node -> pod -> secret/configmap/pvc -> pv
edges; here the pod ObjectIndex is grouped by spec.nodeName (`pods_by_node`,
kept current by the index's listener) and a question walks the node's pods,
so the cost is the number of pods on that node, with no etcd read. Other
users get NO_OPINION.
"""
from __future__ import annotations

from apiserver.auth import bootstrappolicy
from apiserver.auth.authz import ALLOW, NO_OPINION, Attributes, Authorizer, Decision
from apiserver.auth.index import Key, ObjectIndex
from apiserver.auth.rbac import SYNC_WAIT, rule_allows
from apiserver.auth.user import UserInfo

NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"


def node_name(user: UserInfo) -> str | None:
    """The node a user is (`system:node:NAME` in system:nodes), "" if unnamed, None if not a node."""
    if not user.name.startswith(NODE_PREFIX) or not user.in_group(NODES_GROUP):
        return None
    return user.name[len(NODE_PREFIX):]


def pod_references(pod) -> dict[str, set[str]]:
    """{"secrets"|"configmaps"|"persistentvolumeclaims"|"serviceaccounts": names} a pod uses."""
    refs: dict[str, set[str]] = {"secrets": set(), "configmaps": set(), "persistentvolumeclaims": set(),
                                 "serviceaccounts": {pod.spec.service_account_name or "default"}}
    refs["secrets"].update(s.name for s in pod.spec.image_pull_secrets)
    for v in pod.spec.volumes:
        if v.HasField("secret"):
            refs["secrets"].add(v.secret.secret_name)
        if v.HasField("config_map"):
            refs["configmaps"].add(v.config_map.name)
        if v.HasField("persistent_volume_claim"):
            refs["persistentvolumeclaims"].add(v.persistent_volume_claim.claim_name)
        for src in v.projected.sources:
            if src.HasField("secret"):
                refs["secrets"].add(src.secret.name)
            if src.HasField("config_map"):
                refs["configmaps"].add(src.config_map.name)
    for c in [*pod.spec.init_containers, *pod.spec.containers]:
        for e in c.env:
            if e.value_from.HasField("secret_key_ref"):
                refs["secrets"].add(e.value_from.secret_key_ref.name)
            if e.value_from.HasField("config_map_key_ref"):
                refs["configmaps"].add(e.value_from.config_map_key_ref.name)
        for f in c.env_from:
            if f.HasField("secret_ref"):
                refs["secrets"].add(f.secret_ref.name)
            if f.HasField("config_map_ref"):
                refs["configmaps"].add(f.config_map_ref.name)
    return refs


class NodeGraph:
    """Pods grouped by node, from the pod index."""

    def __init__(self, pods: ObjectIndex, claims: ObjectIndex):
        self.pods, self.claims = pods, claims
        self.by_node: dict[str, set[Key]] = {}
        self._node_of: dict[Key, str] = {}
        pods.listeners.append(self._update)

    def _update(self, keys) -> None:
        if keys is None:
            self.by_node.clear()
            self._node_of.clear()
            keys = list(self.pods.objects)
        for key in keys:
            old = self._node_of.pop(key, None)
            if old is not None:
                self.by_node.get(old, set()).discard(key)
            pod = self.pods.objects.get(key)
            if pod is not None and pod.spec.node_name:
                self._node_of[key] = pod.spec.node_name
                self.by_node.setdefault(pod.spec.node_name, set()).add(key)

    def node_pods(self, node: str):
        for key in list(self.by_node.get(node, ())):
            pod = self.pods.objects.get(key)
            if pod is not None:
                yield pod

    async def synced(self) -> None:
        for index in (self.pods, self.claims):
            await index.wait_synced(SYNC_WAIT)

    def related(self, node: str, resource: str, namespace: str, name: str) -> bool:
        if resource == "persistentvolumes":
            return any(pvc is not None and pvc.spec.volume_name == name
                       for pod in self.node_pods(node)
                       for pvc in (self.claims.get(pod.metadata.namespace, c)
                                   for c in pod_references(pod)["persistentvolumeclaims"]))
        return any(pod.metadata.namespace == namespace and name in pod_references(pod)[resource]
                   for pod in self.node_pods(node))


class NodeAuthorizer(Authorizer):
    def __init__(self, graph: NodeGraph, rules=None):
        self.graph = graph
        self.rules = rules if rules is not None else bootstrappolicy.NODE_RULES

    async def _graph(self, node: str, a: Attributes, resource: str, verbs: tuple[str, ...], what: str) -> Decision:
        if a.verb not in verbs:
            return Decision(NO_OPINION, f"can only {what} resources of this type")
        if a.subresource and not (resource == "serviceaccounts" and a.subresource == "token"):
            return Decision(NO_OPINION, "cannot read subresource")
        if resource != "persistentvolumes" and not a.namespace:
            return Decision(NO_OPINION, "can only read namespaced object of this type")
        if not a.name:
            return Decision(NO_OPINION, "No Object name found")
        await self.graph.synced()
        if not self.graph.related(node, resource, a.namespace, a.name):
            return Decision(NO_OPINION, f"no relationship found between node '{node}' and this object")
        return Decision(ALLOW)

    def _lease(self, node: str, a: Attributes) -> Decision:
        if a.verb not in ("get", "create", "update", "patch", "delete"):
            return Decision(NO_OPINION, "can only get, create, update, patch, or delete a node lease")
        if a.namespace != NODE_LEASE_NAMESPACE:
            return Decision(NO_OPINION, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        if a.verb != "create" and a.name != node:
            return Decision(NO_OPINION, "can only access node lease with the same name as the requesting node")
        return Decision(ALLOW)

    async def authorize(self, a: Attributes) -> Decision:
        node = node_name(a.user)
        if node is None:
            return Decision(NO_OPINION)
        if not node:
            return Decision(NO_OPINION, "unknown node")
        if a.resource_request and a.api_group == "":
            if a.resource in ("secrets", "configmaps"):
                return await self._graph(node, a, a.resource, ("get", "list", "watch"), "read")
            if a.resource in ("persistentvolumeclaims", "persistentvolumes") and a.subresource != "status":
                return await self._graph(node, a, a.resource, ("get",), "get individual")
            if a.resource == "serviceaccounts" and a.subresource == "token":
                return await self._graph(node, a, "serviceaccounts", ("create",), "create tokens for")
        if a.resource_request and a.api_group == "coordination.k8s.io" and a.resource == "leases":
            return self._lease(node, a)
        if any(rule_allows(a, r) for r in self.rules):
            return Decision(ALLOW)
        return Decision(NO_OPINION)
