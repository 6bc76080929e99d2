"""The apiserver's authorization, assembled: Chain(system:masters
superuser, Node authorizer, RBAC) over ObjectIndexes fed by the watch
cache, the review APIs, the default RBAC policy (created and reconciled
at start) and ClusterRole aggregation.

    authorization = Authorization(cache, store, "Node,RBAC")   # or "RBAC", "AlwaysAllow"
    gate = Gate(authenticator, authorization.authorizer, audit)
    verbs.reviews = authorization.reviews
    await authorization.bootstrap()                 # after the system namespaces exist
    tasks["rbac-aggregation"] = authorization.run()
"""
from __future__ import annotations

import logging

from apiserver.auth import authz, policy
from apiserver.auth.index import ObjectIndex
from apiserver.auth.node import NodeAuthorizer, NodeGraph, node_name
from apiserver.auth.rbac import RBAC
from apiserver.auth.reviews import Reviews

log = logging.getLogger(__name__)

MODES = ("Node,RBAC", "RBAC", "AlwaysAllow")    # --authorization-mode


class Authorization:
    def __init__(self, cache, store, mode: str = "Node,RBAC"):
        self.store = store
        self.rbac = RBAC().attach(cache)
        pods = ObjectIndex("Pod").attach(cache["Pod"])
        claims = ObjectIndex("PersistentVolumeClaim").attach(cache["PersistentVolumeClaim"])
        self.graph = NodeGraph(pods, claims)
        self.node = NodeAuthorizer(self.graph)
        self.authorizer = {"Node,RBAC": authz.Chain(authz.Superuser(), self.node, self.rbac),
                           "RBAC": authz.Chain(authz.Superuser(), self.rbac),
                           "AlwaysAllow": authz.AlwaysAllow()}[mode]
        self.reviews = Reviews(self.authorizer, [self._node_rules, self._rbac_rules])
        self.aggregator = policy.Aggregator(store, self.rbac.cluster_roles)
        store.authorization = self          # RBAC's escalation check in admission (apiserver/admission_rbac.py)

    def _rbac_rules(self, user, namespace):
        return self.rbac.rules_for(user, namespace).rules

    def _node_rules(self, user, namespace):
        return self.node.rules if node_name(user) else []

    async def bootstrap(self) -> None:
        await policy.reconcile(self.store)

    async def run(self) -> None:
        await self.aggregator.run()
