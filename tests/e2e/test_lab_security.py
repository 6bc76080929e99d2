"""The security pieces together on a real lab (issue 14), one lab for the module:

* a pod uses its ServiceAccount volume (token, ca.crt, namespace) to talk
  HTTPS to the API through the `kubernetes` Service, by ClusterIP (the
  KUBERNETES_SERVICE_HOST/PORT the agent gives it) and by the name
  kubernetes.default.svc, verifying the serving certificate with ca.crt
  (its SANs name both); `whoami` (a SelfSubjectReview) answers
  system:serviceaccount:NS:default; listing pods is 403 with Kubernetes'
  message until a RoleBinding grants `view` to the account, then 200;
* a node agent joins the running lab with only a bootstrap token and the CA
  hash (`kctl token create --print-join-command`, `kctl join ... --
  AGENT-ARGS` in node3's network namespace, node3's own agent stopped and
  its Node deleted first): its CSR is approved and signed, its certificate
  is CN=system:node:node3, the Node comes back Ready and runs a pod;
* from the lab network without credentials (the existing attack test in
  test_lab_cluster.py covers listing pods over gRPC/HTTPS and exec on an
  agent's port): a guessed bootstrap token, a forged JWT and an exec over
  HTTPS are 401, a pod's valid ServiceAccount token does not open the gRPC
  port, etcd is not reachable from the lab network.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from deploy.lab import cluster, units
from machinery import certmanager, csr as csrs
from tests.e2e.lab_fixtures import (KCTL, lab, missing_tools, node_ready, ready,  # noqa: F401
                                    wait_for)

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

LAB_TAG = "si"
NS = "sec-sa"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
WHOAMI = ["POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
          {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}]
PODS = ["GET", "/api/v1/namespaces/{ns}/pods", None]

# Runs in the pod (the lab's python:3, Debian's python3: stdlib only). REQUESTS
# is {label: [method, path, body]}; {ns} in a path is the pod's namespace. Each
# request goes to both bases.
IN_POD = r"""
import json, os, ssl, urllib.error, urllib.request
D = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(D + "/token").read().strip()
ns = open(D + "/namespace").read().strip()
ctx = ssl.create_default_context(cafile=D + "/ca.crt")
bases = ["https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]),
         "https://kubernetes.default.svc"]
out = {"namespace": ns, "token": token, "results": {}}
for i, base in enumerate(bases):
    for label, (method, path, body) in json.loads(os.environ["REQUESTS"]).items():
        req = urllib.request.Request(base + path.format(ns=ns), method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Bearer " + token,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                got = [r.status, json.loads(r.read())]
        except urllib.error.HTTPError as e:
            got = [e.code, json.loads(e.read() or b"{}")]
        except Exception as e:
            got = [0, {"error": repr(e)}]
        out["results"]["%s@%d" % (label, i)] = got
print(json.dumps(out))
"""


def pod_manifest(name: str, requests: dict) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "c", "image": "python:3", "command": ["python3", "-c", IN_POD],
            "env": [{"name": "REQUESTS", "value": json.dumps(requests)}]}]}})


def finished_output(lab, name: str, namespace: str = NS) -> dict:
    def done():
        p = lab.api(lambda c: c.get("Pod", name, namespace))
        return p.status.phase in ("Succeeded", "Failed") and p
    wait_for(f"pod {name} to finish", done, 180, interval=1)
    out = lab.kctl("logs", name, "-n", namespace).stdout.strip()
    assert out, lab.kctl("describe", "pod", name, "-n", namespace, check=False).stdout
    return json.loads(out.splitlines()[-1])


@pytest.fixture(scope="module")
def sa_pod(lab):
    """The in-pod client's answers without any grant (run once for the module)."""
    lab.kctl("create", "namespace", NS)
    wait_for("the default ServiceAccount and kube-root-ca.crt of " + NS,
             lambda: lab.kctl("get", "serviceaccount", "default", "-n", NS, check=False).returncode == 0
             and lab.kctl("get", "configmap", "kube-root-ca.crt", "-n", NS, check=False).returncode == 0, 60)
    lab.kctl("apply", "-f", "-", input=pod_manifest("client", {"whoami": WHOAMI, "pods": PODS}))
    return finished_output(lab, "client")


def test_a_pod_reaches_the_api_with_its_serviceaccount(lab, sa_pod):
    assert sa_pod["namespace"] == NS
    me = f"system:serviceaccount:{NS}:default"
    for i in (0, 1):                             # the ClusterIP (env), kubernetes.default.svc (DNS)
        code, body = sa_pod["results"][f"whoami@{i}"]
        assert code == 201, body
        user = body["status"]["userInfo"]
        assert user["username"] == me
        assert {"system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"} <= \
            set(user["groups"])
        code, body = sa_pod["results"][f"pods@{i}"]
        assert (code, body.get("message")) == (403, f'pods is forbidden: User "{me}" cannot list resource "pods" '
                                                    f'in API group "" in the namespace "{NS}"'), body
    svc = lab.api(lambda c: c.get("Service", "kubernetes", "default"))
    assert [(p.name, p.port, p.target_port.int_val) for p in svc.spec.ports] == \
        [("https", 443, cluster.APISERVER_HTTP_PORT), ("grpc", 6443, cluster.APISERVER_PORT)]


def test_a_rolebinding_lets_the_pod_list_pods(lab, sa_pod):
    lab.kctl("create", "rolebinding", "client-view", "--clusterrole", "view", "--serviceaccount",
             f"{NS}:default", "-n", NS)
    lab.kctl("apply", "-f", "-", input=pod_manifest("granted", {"pods": PODS}))
    out = finished_output(lab, "granted")
    for i in (0, 1):
        code, body = out["results"][f"pods@{i}"]
        assert code == 200 and {"client", "granted"} <= {p["metadata"]["name"] for p in body["items"]}, body


ATTACK = r"""
import base64, json, socket, ssl, sys, urllib.error, urllib.request
import grpc
from machinery.pb import api_pb2, api_pb2_grpc
ca, cp, sa_token = open(sys.argv[1], "rb").read(), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cadata=ca.decode())
out = {}
def https(label, path, token=None):
    req = urllib.request.Request("https://" + cp + ":8080" + path)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        urllib.request.urlopen(req, timeout=10, context=ctx)
        out[label] = 200
    except urllib.error.HTTPError as e:
        out[label] = e.code
https("guessed-bootstrap-token", "/api/v1/pods", "abcdef.0123456789abcdef")
seg = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
forged = seg({"alg": "RS256", "typ": "JWT"}) + "." + seg({"iss": "https://kubernetes.default.svc.cluster.local",
    "sub": "system:serviceaccount:kube-system:default", "aud": ["https://kubernetes.default.svc.cluster.local"],
    "exp": 4102444800}) + "." + seg({"sig": "none"})
https("forged-jwt", "/api/v1/pods", forged)
https("exec", "/api/v1/namespaces/default/pods/x/exec?command=id&stdout=true")
creds = grpc.composite_channel_credentials(grpc.ssl_channel_credentials(ca),
                                           grpc.access_token_call_credentials(sa_token))
with grpc.secure_channel(cp + ":6443", creds) as ch:
    try:
        api_pb2_grpc.ApiStub(ch).List(api_pb2.ListRequest(kind="Pod"), timeout=10)
        out["grpc-with-sa-token"] = "served"
    except grpc.RpcError as e:
        out["grpc-with-sa-token"] = e.code().name
s = socket.socket()
s.settimeout(3)
out["etcd"] = "open" if s.connect_ex((cp, 2379)) == 0 else "closed"
print(json.dumps(out))
"""


def test_no_credentials_no_access_from_the_lab_network(lab, sa_pod):
    ca = os.path.join(cluster.pki_dir(lab.name), "ca.crt")
    res = lab.in_netns(lab.node("node1").netns_path,
                       [sys.executable, "-c", ATTACK, ca, lab.topology.cp_address, sa_pod["token"]], timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1]) == {
        "guessed-bootstrap-token": 401, "forged-jwt": 401, "exec": 401,
        "grpc-with-sa-token": "UNAVAILABLE", "etcd": "closed"}


def agent_args(lab, node: str) -> list[str]:
    """The lab's agent flags for `node` without its credentials (--kubeconfig) and name (join gives them)."""
    argv = cluster.agent_argv(lab.name, lab.topology, node, lab.info["apiserver"], lab.info["registry"])[1:]
    for flag in ("--kubeconfig", "--node-name"):
        i = argv.index(flag)
        del argv[i:i + 2]
    return argv


def test_a_node_joins_with_only_a_bootstrap_token_and_the_ca_hash(lab, tmp_path):
    line = lab.kctl("token", "create", "--print-join-command").stdout.strip()
    words = line.split()
    assert words[:3] == ["kctl", "join", f"https://{lab.topology.cp_address}:{cluster.APISERVER_HTTP_PORT}"], line
    token = words[words.index("--token") + 1]
    # node3's own agent (the lab's certificate) goes; its machine stays on the lab network
    lab.lab("stop-agent", "node3")
    lab.api(lambda c: c.delete("Node", "node3"))
    wait_for("node3 deleted", lambda: "node3" not in [n.metadata.name for n in lab.api(lambda c: c.list("Node"))[0]],
             30)
    join_dir = os.path.join(lab.topology.state_dir, "join-node3")
    units.add(lab.topology, "agent-joined-node3",
              [KCTL, *words[1:], "--dir", join_dir, "--node-name", "node3", "--", *agent_args(lab, "node3")],
              node="node3")

    def joined_ready():
        node = next((n for n in lab.api(lambda c: c.list("Node"))[0] if n.metadata.name == "node3"), None)
        return node is not None and node_ready(node) == "True"
    try:
        wait_for("node3 joined and Ready", joined_ready, 90, interval=1)
    except AssertionError:
        print(lab.lab("logs", "agent-joined-node3", check=False).stdout[-3000:])
        raise
    creds = certmanager.load_kubeconfig(os.path.join(join_dir, "nodeagent.kubeconfig"))
    assert csrs.subject(csrs.load_certificate(creds.cert_pem)) == ("system:node:node3", ["system:nodes"])
    assert creds.grpc == lab.info["apiserver"] and creds.token is None
    boot = certmanager.load_kubeconfig(os.path.join(join_dir, "bootstrap-kubeconfig"))
    assert boot.token == token and boot.cert_pem is None
    issued = [c for c in lab.api(lambda c: c.list("CertificateSigningRequest"))[0]
              if c.spec.username == f"system:bootstrap:{token.split('.')[0]}"]
    assert len(issued) == 1 and csrs.condition_summary(issued[0]) == "Approved,Issued", issued
    # and it runs pods
    lab.kctl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-joined", "namespace": "default"},
        "spec": {"nodeName": "node3", "containers": [{"name": "c", "image": "busybox",
                                                      "command": ["sleep", "3600"]}]}}))
    wait_for("a pod running on the joined node3",
             lambda: ready(lab.api(lambda c: c.get("Pod", "on-joined", "default"))), 90, interval=1)
