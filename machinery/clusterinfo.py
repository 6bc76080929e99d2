"""The cluster-info ConfigMap (kube-public) and token discovery, as kubeadm
does them: what the control plane publishes, what the bootstrap signer adds,
and what a joining node checks (kubeadm's discovery/token).

    publish:  data.kubeconfig = a kubeconfig with one cluster (CA + server)
    sign:     data["jws-kubeconfig-<id>"] for every token with usage signing
    discover: GET kube-public/cluster-info (anonymously, over TLS without
              verifying the server: the CA is not known yet), check the JWS
              for our token id against the kubeconfig, then check the CA's
              hash against --discovery-token-ca-cert-hash; from then on talk
              to the server trusting only that CA.

The ConfigMap is the only object a node reads before it has credentials,
so nothing here trusts it before both checks pass.
"""
from __future__ import annotations

import base64

import yaml

from machinery import bootstraptoken as bt
from machinery.bootstraptoken import BadToken


def kubeconfig(ca_pem: bytes, server: str) -> str:
    """The kubeconfig kubeadm puts in cluster-info (one cluster named "")."""
    doc = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": "",
           "clusters": [{"name": "", "cluster": {"certificate-authority-data": base64.b64encode(ca_pem).decode(),
                                                  "server": server}}],
           "contexts": None, "users": None}
    return yaml.safe_dump(doc, sort_keys=True)


def cluster(text: str) -> tuple[str, bytes]:
    """(server, CA PEM) of a cluster-info kubeconfig."""
    try:
        doc = yaml.safe_load(text)
        c = doc["clusters"][0]["cluster"]
        return str(c["server"]), base64.b64decode(c["certificate-authority-data"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise BadToken(f"the cluster-info ConfigMap does not hold a valid kubeconfig: {exc}") from exc


def signatures(content: str, tokens: dict[str, str]) -> dict[str, str]:
    """{jws-kubeconfig-<id>: signature} for tokens {id: secret}."""
    return {bt.JWS_PREFIX + tid: bt.detached_signature(content, tid, secret) for tid, secret in tokens.items()}


def verify(cm_data: dict, token: str, ca_pins, unsafe_skip_ca_verification: bool = False) -> tuple[str, bytes]:
    """(server, CA PEM) from cluster-info data once the token's JWS and the
    CA pin check out; BadToken with kubeadm's messages otherwise."""
    tid, secret = bt.parse(token)
    content = cm_data.get(bt.KUBECONFIG_KEY)
    if not content:
        raise BadToken(f"there is no {bt.KUBECONFIG_KEY} key in the {bt.CLUSTER_INFO} ConfigMap. "
                       "This API Server isn't set up for token bootstrapping, can't connect")
    sig = cm_data.get(bt.JWS_PREFIX + tid)
    if not sig:
        raise BadToken(f"token id {tid!r} is invalid for this cluster or it has expired. Use \"kctl token "
                       "create\" on the control-plane node to create a new valid token")
    if not bt.signature_valid(sig, content, tid, secret):
        raise BadToken(f"failed to verify JWS signature of received cluster info object, can't trust this API "
                       "Server")
    server, ca = cluster(content)
    if not unsafe_skip_ca_verification:
        if not ca_pins:
            raise BadToken("the discovery-token-ca-cert-hash is required (or "
                           "--discovery-token-unsafe-skip-ca-verification)")
        bt.check_ca_hash(ca, ca_pins)
    return server, ca
