"""describe's pure renderers: pod containers/state/probes, the scheduler
decision table, endpoints, deployment strategy lines."""
from __future__ import annotations

import json
import re

from kubectlish import describe
from kubectlish.describe_blocks import decision_lines, render
from machinery import codec


def has(out: str, *parts: str) -> bool:
    """The parts appear in order on one line, separated by alignment spaces."""
    return re.search(r" +".join(re.escape(p) for p in parts), out) is not None


def test_pod_describe_containers_state_probes_and_tolerations():
    p = codec.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default",
                                                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                                             "name": "rs", "uid": "u", "controller": True}]},
        "spec": {"nodeName": "n1", "containers": [{
            "name": "c", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}],
            "resources": {"requests": {"cpu": "100m"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 3},
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]},
        "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.244.1.2", "containerStatuses": [{
            "name": "c", "ready": True, "restartCount": 2, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}})
    out = render(describe.describe_pod(p, []))
    assert has(out, "Node:", "n1/10.0.0.1\n")
    assert has(out, "Controlled By:", "ReplicaSet/rs\n")
    assert has(out, "Port:", "80/TCP (http)")
    assert has(out, "State:", "Running\n      Started:", "Thu, 01 Jan 2026 00:00:00 +0000")
    assert has(out, "Last State:", "Terminated\n      Reason:", "OOMKilled\n      Exit Code:", "137")
    assert has(out, "Restart Count:", "2")
    assert has(out, "Liveness:", "http-get http://:8080/healthz delay=0s timeout=1s period=3s #success=1 #failure=3")
    assert has(out, "POD:", "(v1:metadata.name)")
    assert "Tolerations:" in out and "k:NoSchedule op=Exists" in out
    assert has(out, "Events:", "<none>")


def test_pod_describe_seccomp_profiles_like_kubectl():
    p = codec.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "c", "image": "busybox", "securityContext": {
                     "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"}}},
                                {"name": "d", "image": "busybox"}]},
        "status": {"phase": "Pending", "podIP": "10.244.1.2"}})
    out = render(describe.describe_pod(p, []))
    assert has(out, "Status:", "Pending\nSeccompProfile:", "RuntimeDefault\nIP:")
    assert has(out, "Host Port:", "<none>\n    SeccompProfile:", "Localhost\n      LocalhostProfile:",
               "profiles/audit.json\n")
    assert out.count("SeccompProfile:") == 2


def test_decision_table():
    rec = {"v": 1, "time": "T", "node": "n2", "nodes": 3, "feasible": 2, "scored": 2,
           "filtered": [{"reason": "Insufficient cpu", "count": 1, "nodes": ["n1"]}],
           "scores": [{"node": "n2", "total": 150.5, "plugins": {"A": 50.5, "B": 100}},
                      {"node": "n3", "total": 90, "plugins": {"A": 90}}]}
    out = render(decision_lines(json.dumps(rec))).splitlines()
    assert out[0].split() == ["Scheduling", "Decision:", "T"]
    assert out[1].split() == ["Node:", "n2"]
    assert "3 considered, 2 feasible, 2 scored" in out[2]
    assert out[4].split() == ["FILTERED", "BY", "NODES", "EXAMPLES"]
    assert out[5].split() == ["Insufficient", "cpu", "1", "n1"]
    assert out[7].split() == ["NODE", "TOTAL", "A", "B"]
    assert out[8].split() == ["n2", "150.5", "50.5", "100"] and out[9].split() == ["n3", "90", "90", "-"]
    assert "unreadable" in decision_lines("{not json")[0]


def test_endpoints_and_deployment():
    ep = codec.from_dict({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e", "namespace": "d"},
                          "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "notReadyAddresses": [{"ip": "10.0.0.2"}],
                                       "ports": [{"name": "http", "port": 80}]}]})
    out = render(describe.describe_endpoints(ep, []))
    assert has(out, "Addresses:", "10.0.0.1\n") and has(out, "NotReadyAddresses:", "10.0.0.2\n")
    assert has(out, "http", "80", "TCP")
    d = codec.from_dict({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "d"},
                         "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                                  "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}},
                                  "template": {"metadata": {"labels": {"a": "b"}},
                                               "spec": {"containers": [{"name": "c", "image": "i"}]}}},
                         "status": {"conditions": [{"type": "Available", "status": "True",
                                                    "reason": "MinimumReplicasAvailable"}]}})
    out = render(describe.describe_deployment(d, []))
    assert has(out, "RollingUpdateStrategy:", "10% max unavailable, 1 max surge")
    assert has(out, "Replicas:", "2 desired | 0 updated | 0 total | 0 available | 0 unavailable")
    assert has(out, "Available", "True", "MinimumReplicasAvailable")


def test_pod_describe_lists_init_containers_before_containers():
    """kubectl's describePod: "Init Containers:" (only when the pod has some)
    with each init container's state, then "Containers:"."""
    p = codec.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"initContainers": [{"name": "setup", "image": "busybox", "command": ["sh", "-c", "true"]},
                                    {"name": "proxy", "image": "busybox", "restartPolicy": "Always"}],
                 "containers": [{"name": "app", "image": "kctl/echo"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [
            {"name": "setup", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "ready": False},
            {"name": "proxy", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}, "ready": True,
             "restartCount": 1}]}})
    out = render(describe.describe_pod(p, []))
    init, rest = out.split("Init Containers:\n", 1)[1].split("\nContainers:\n", 1)
    assert re.findall(r"^  (\w+):$", init, re.M) == ["setup", "proxy"]
    assert has(init, "State:", "Terminated\n      Reason:", "Completed\n      Exit Code:", "0")
    assert has(init, "Command:\n      sh\n      -c\n      true")
    assert has(init.split("proxy:")[1], "State:", "Running") and has(init, "Restart Count:", "1")
    assert re.findall(r"^  (\w+):$", rest.split("Conditions:")[0], re.M) == ["app"]
    assert has(rest, "State:", "Waiting")       # not reported yet
    plain = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q", "namespace": "d"},
                             "spec": {"containers": [{"name": "app", "image": "i"}]}})
    assert "Init Containers" not in render(describe.describe_pod(plain, []))


def test_pod_template_lists_init_containers():
    d = codec.from_dict({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "d"},
                         "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                                  "template": {"metadata": {"labels": {"a": "b"}},
                                               "spec": {"initContainers": [{"name": "setup", "image": "busybox"}],
                                                        "containers": [{"name": "c", "image": "i"}]}}}})
    out = render(describe.describe_deployment(d, []))
    assert re.search(r"^  Init Containers:\n   setup:\n    Image:\s+busybox\n", out, re.M), out
    assert out.index("Init Containers:") < out.index("  Containers:\n   c:")
