"""The NodeRestriction admission plugin (plugin/pkg/admission/noderestriction):
what a node (`system:node:NAME` in system:nodes) may write, judged on the
objects, which the Node authorizer cannot see.

* Node: only its own (create, update, status); on create it may not set
  labels under `node-restriction.kubernetes.io/`, on update it may not
  change them nor its own taints (the control plane owns both: they steer
  workloads to nodes).
* Pod: it may update the status of, delete and evict only pods bound to
  it; it may create only mirror pods (annotation kubernetes.io/config.mirror).
* Lease: only the one named after it.

Messages are Kubernetes', e.g. `nodes "node2" is forbidden: node "node1"
is not allowed to modify node "node2"`. Other users are not affected.

DNSRestriction is kctl's own plugin of the same kind, for kctl-dns: it
renews a Lease `kctl-dns-<address>` in its Service's namespace
(clusterdns/register.py), and RBAC, having no name prefixes, can only grant
it every Lease of kube-system (apiserver/auth/bootstrappolicy.py), the
controller manager's and scheduler's leader-election Leases included.  So
the DNS identities (user system:kube-dns, ServiceAccount
kube-system/kube-dns) may write only Leases whose name starts with
`kctl-dns-`, as a node may write only its own Lease.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apiserver.admission import Request

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"   # apiserver.admission's operations (it imports this module)
from apiserver.auth.node import node_name
from machinery import errors
from machinery.leaseendpoints import DNS_LEASE_PREFIX

RESTRICTED_LABEL = "node-restriction.kubernetes.io/"
MIRROR = "kubernetes.io/config.mirror"


def _restricted(key: str) -> bool:
    prefix, _, _ = key.rpartition("/")
    return key.startswith(RESTRICTED_LABEL) or prefix.endswith("." + RESTRICTED_LABEL.rstrip("/"))


def _forbidden(req: Request, why: str) -> errors.Forbidden:
    obj = req.obj if req.obj is not None else req.old
    info, name = req.info, obj.metadata.name
    what = f'{info.resource} "{name}"' if name else info.resource
    return errors.Forbidden(f"{what} is forbidden: {why}", kind=info.plural, name=name, group=info.group)


class NodeRestriction:
    """A validating plugin (apiserver.admission.Plugin's interface)."""
    name = "NodeRestriction"

    async def validate(self, req: Request) -> list[str]:
        node = node_name(req.user)
        if node is None:
            return []
        check = {"Node": self._node, "Pod": self._pod, "Lease": self._lease}.get(req.info.kind)
        if check is not None:
            check(req, node)
        return []

    def _node(self, req: Request, node: str) -> None:
        obj = req.obj if req.obj is not None else req.old
        if obj.metadata.name != node:
            verb = "delete" if req.operation == DELETE else "modify"
            raise _forbidden(req, f'node "{node}" is not allowed to {verb} node "{obj.metadata.name}"')
        if req.operation == CREATE:
            bad = sorted(k for k in req.obj.metadata.labels if _restricted(k))
            if bad:
                raise _forbidden(req, f'node "{node}" is not allowed to set the following labels: {", ".join(bad)}')
        elif req.operation == UPDATE and req.subresource != "status":
            new, old = req.obj.metadata.labels, req.old.metadata.labels
            bad = sorted(k for k in set(new) | set(old) if _restricted(k) and new.get(k) != old.get(k))
            if bad:
                raise _forbidden(req, f'node "{node}" is not allowed to modify labels: {", ".join(bad)}')
            if list(req.obj.spec.taints) != list(req.old.spec.taints):
                raise _forbidden(req, f'node "{node}" is not allowed to modify taints')

    def _pod(self, req: Request, node: str) -> None:
        if req.operation == CREATE:
            if MIRROR not in req.obj.metadata.annotations:
                raise _forbidden(req, f'pod does not have "{MIRROR}" annotation, node "{node}" can only create '
                                      "mirror pods")
            if req.obj.spec.node_name != node:
                raise _forbidden(req, f'node "{node}" can only create pods with spec.nodeName set to itself')
            return
        bound = (req.old or req.obj).spec.node_name
        if req.operation == DELETE and bound != node:
            raise _forbidden(req, f'node "{node}" can only delete pods with spec.nodeName set to itself')
        if req.operation == UPDATE:
            if req.subresource == "eviction" and bound != node:
                raise _forbidden(req, f'node "{node}" can only evict pods with spec.nodeName set to itself')
            if req.subresource == "status" and bound != node:
                raise _forbidden(req, f'node "{node}" can only update pod status for pods with spec.nodeName '
                                      "set to itself")
            if req.subresource not in ("status", "eviction"):
                raise _forbidden(req, f'unexpected operation {req.operation}, node "{node}" can only update pod '
                                      "status")

    def _lease(self, req: Request, node: str) -> None:
        obj = req.obj if req.obj is not None else req.old
        if obj.metadata.namespace == "kube-node-lease" and obj.metadata.name != node:
            raise _forbidden(req, "can only access node lease with the same name as the requesting node")


DNS_USERS = ("system:kube-dns", "system:serviceaccount:kube-system:kube-dns")


class DNSRestriction:
    """A validating plugin: kctl-dns writes only its own Leases (see module doc)."""
    name = "DNSRestriction"

    async def validate(self, req: Request) -> list[str]:
        if req.info.kind != "Lease" or req.user is None or req.user.name not in DNS_USERS:
            return []
        obj = req.obj if req.obj is not None else req.old
        if not obj.metadata.name.startswith(DNS_LEASE_PREFIX):
            raise _forbidden(req, f'user "{req.user.name}" may only write Leases named {DNS_LEASE_PREFIX}*')
        return []
