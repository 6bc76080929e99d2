"""Node serving certificates (signer kubernetes.io/kubelet-serving): the
shape a request must have, and kctl's rule for approving one.

Shape (Kubernetes' certificates.ValidateKubeletServingCSR, same order and
wording; the signer applies it too): subject O=system:nodes exactly, at least
one DNS or IP subjectAltName, no email or URI SANs, usages exactly {digital
signature, key encipherment, server auth} or {digital signature, server auth}
(non-RSA keys), CN beginning with system:node:.

Approval. Kubernetes does not auto-approve kubelet-serving requests (a node
could name any address; its docs leave approval to an operator or a
cloud-specific approver). kctl approves one, reason AutoApproved, when

- the requestor is that node: spec.username (filled in by the apiserver from
  the authenticated user, apiserver/admission_csr.py) equals the request's CN
  system:node:NAME and spec.groups contains system:nodes (a bootstrap token
  cannot ask: the agent requests its serving certificate as the node, after
  its client certificate exists), and
- the Node NAME exists and every SAN is one of its status.addresses: an IP
  SAN an InternalIP/ExternalIP address, a DNS SAN a Hostname/InternalDNS/
  ExternalDNS address or the Node's name, and
- no SAN is an address another Node reports (one node cannot get a
  certificate for a neighbour's address).

Anything else stays Pending for `kctl certificate approve|deny`, with the
reason in the controller's log. What this trusts: a node writes its own
status.addresses (NodeRestriction limits it to its own Node), so a node can
still claim an address nobody else reports; the cluster CA then vouches for
it towards the apiserver (which dials agents by the address in the Node).
"""
from __future__ import annotations

import ipaddress

from machinery import csr as csrs

SERVING_USAGES = ({"digital signature", "key encipherment", "server auth"}, {"digital signature", "server auth"})
IP_TYPES = ("InternalIP", "ExternalIP")
DNS_TYPES = ("Hostname", "InternalDNS", "ExternalDNS")
MESSAGE = "Auto approving kubelet serving certificate: its SANs are the addresses of its node."


def kubelet_serving_problem(csr, req=None) -> str:
    """'' when csr is a valid kubelet serving request, else why not (ValidateKubeletServingCSR)."""
    if csr.spec.signer_name != csrs.KUBELET_SERVING:
        return f"signerName must be {csrs.KUBELET_SERVING}"
    try:
        req = req or csrs.parse_request(csr.spec.request)
    except csrs.BadRequestPEM as exc:
        return str(exc)
    cn, orgs = csrs.subject(req)
    sans = csrs.sans(req)
    if orgs != [csrs.NODES_GROUP]:
        return "subject organization is not system:nodes"
    if not sans["DNS"] and not sans["IP"]:
        return "DNS or IP subjectAltName is required"
    if sans["email"]:
        return "Email subjectAltNames are not allowed"
    if sans["URI"]:
        return "URI subjectAltNames are not allowed"
    if set(csr.spec.usages) not in SERVING_USAGES:
        return "usages did not match [digital signature key encipherment server auth]"
    if not cn.startswith(csrs.NODE_USER_PREFIX):
        return "subject common name does not begin with system:node:"
    return ""


def _ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def node_names(node) -> tuple[set, set]:
    """(IP addresses, DNS names) a Node answers to (see the module docstring)."""
    ips = {_ip(a.address) for a in node.status.addresses if a.type in IP_TYPES} - {None}
    dns = {a.address.lower() for a in node.status.addresses if a.type in DNS_TYPES} | {node.metadata.name.lower()}
    return ips, dns


def approval_problem(csr, node, others=()) -> str:
    """'' when kctl auto-approves csr, a kubelet serving request, for Node `node` (None: not
    found), given the other Nodes; else why it stays Pending."""
    problem = kubelet_serving_problem(csr)
    if problem:
        return problem
    req = csrs.parse_request(csr.spec.request)
    cn, _ = csrs.subject(req)
    if csr.spec.username != cn or csrs.NODES_GROUP not in csr.spec.groups:
        return f"requested by {csr.spec.username!r}, not by the node {cn!r} itself"
    name = cn[len(csrs.NODE_USER_PREFIX):]
    if node is None or node.metadata.name != name:
        return f'node "{name}" not found'
    ips, dns = node_names(node)
    taken = set()
    for other in others:
        if other.metadata.name != name:
            taken |= node_names(other)[0]
    sans = csrs.sans(req)
    for ip in sans["IP"]:
        if ipaddress.ip_address(ip) not in ips:
            return f'IP subjectAltName {ip} is not an address of node "{name}"'
        if ipaddress.ip_address(ip) in taken:
            return f"IP subjectAltName {ip} is also the address of another node"
    for d in sans["DNS"]:
        if d.lower() not in dns:
            return f'DNS subjectAltName {d} is not a name of node "{name}"'
    return ""
