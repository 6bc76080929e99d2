"""Defaulting fills what Kubernetes' defaulters fill, is idempotent, and
canonicalize rewrites quantities only."""
import pytest

from machinery import codec, defaults
from machinery.pb import core_pb2


def defaulted(doc):
    obj = codec.from_dict(doc)
    defaults.apply_defaults(obj)
    again = codec.copy(obj)
    defaults.apply_defaults(again)
    assert again == obj, "apply_defaults must be idempotent"
    return codec.to_dict(obj)


def pod(container=None, **spec):
    c = {"name": "app", "image": "nginx:1.25", **(container or {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [c], **spec}}


def test_pod_spec_defaults():
    d = defaulted(pod())
    assert d["metadata"]["namespace"] == "default"
    spec = d["spec"]
    assert (spec["restartPolicy"], spec["terminationGracePeriodSeconds"], spec["dnsPolicy"],
            spec["schedulerName"]) == ("Always", 30, "ClusterFirst", "default-scheduler")
    assert spec["enableServiceLinks"] is True                      # SetDefaults_PodSpec
    assert defaulted(pod(enableServiceLinks=False))["spec"]["enableServiceLinks"] is False
    c = spec["containers"][0]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert d["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_user_values_are_kept():
    d = defaulted(pod({"imagePullPolicy": "Never"}, restartPolicy="Never", terminationGracePeriodSeconds=0,
                      schedulerName="mine"))
    assert d["spec"]["restartPolicy"] == "Never"
    assert d["spec"]["terminationGracePeriodSeconds"] == 0      # explicit 0 is not "unset"
    assert d["spec"]["schedulerName"] == "mine"
    assert d["spec"]["containers"][0]["imagePullPolicy"] == "Never"


@pytest.mark.parametrize("image, policy", [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/busybox", "Always"),
    ("localhost:5000/busybox:1.36", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    assert defaulted(pod({"image": image}))["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_ports_env_and_probes():
    c = defaulted(pod({
        "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "livenessProbe": {"httpGet": {"port": 80}},
        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 3},
        "lifecycle": {"preStop": {"httpGet": {"port": 80}}},
    }))["spec"]["containers"][0]
    assert [p["protocol"] for p in c["ports"]] == ["TCP", "UDP"]
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert c["livenessProbe"] == {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["readinessProbe"]["periodSeconds"] == 3
    assert c["lifecycle"]["preStop"]["httpGet"] == {"path": "/", "port": 80, "scheme": "HTTP"}


def test_host_network_host_ports():
    d = defaulted(pod({"ports": [{"containerPort": 8080}]}, hostNetwork=True))
    assert d["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080


@pytest.mark.parametrize("resources, requests, qos", [
    ({"limits": {"cpu": "500m", "memory": "128Mi"}}, {"cpu": "500m", "memory": "128Mi"}, "Guaranteed"),
    ({"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}}, {"cpu": "500m", "memory": "64Mi"}, "Burstable"),
    ({"requests": {"cpu": "1"}}, {"cpu": "1"}, "Burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, {"cpu": "500m", "memory": "1Gi"},
     "Burstable"),
])
def test_requests_default_from_limits_and_qos(resources, requests, qos):
    d = defaulted(pod({"resources": resources}))
    assert d["spec"]["containers"][0]["resources"]["requests"] == requests
    assert d["status"]["qosClass"] == qos


def test_toleration_operator_and_volume_modes():
    d = defaulted(pod(tolerations=[{"key": "k", "value": "v"}],
                      volumes=[{"name": "s", "secret": {"secretName": "x"}}, {"name": "e", "emptyDir": {}}]))
    assert d["spec"]["tolerations"][0]["operator"] == "Equal"
    assert d["spec"]["volumes"][0]["secret"]["defaultMode"] == 0o644


TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


def test_deployment_defaults():
    d = defaulted({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}})
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["containers"][0]["imagePullPolicy"] == "Always"
    assert "status" not in d or not d["status"].get("phase")


def test_deployment_keeps_user_strategy():
    d = defaulted({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"replicas": 0, "revisionHistoryLimit": 0, "template": TEMPLATE,
                            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}})
    assert d["spec"]["replicas"] == 0
    assert d["spec"]["revisionHistoryLimit"] == 0
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 2, "maxUnavailable": "25%"}
    r = defaulted({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"template": TEMPLATE, "strategy": {"type": "Recreate"}}})
    assert r["spec"]["strategy"] == {"type": "Recreate"}


def test_replica_set_defaults():
    d = defaulted({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
                   "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}})
    assert d["spec"]["replicas"] == 1
    assert d["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    bare = defaulted({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"}})
    assert "template" not in bare["spec"]      # a missing template stays missing for validation


def svc(**spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec}


def test_service_defaults():
    d = defaulted(svc(selector={"app": "web"}, ports=[{"port": 80}, {"port": 53, "targetPort": "dns",
                                                                     "protocol": "UDP", "name": "dns"}]))
    spec = d["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert spec["ports"][1]["targetPort"] == "dns"
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_node_port_services_get_external_traffic_policy(kind):
    assert defaulted(svc(type=kind, ports=[{"port": 80}]))["spec"]["externalTrafficPolicy"] == "Cluster"


def test_headless_and_cluster_ips():
    d = defaulted(svc(clusterIP="None", ports=[{"port": 80}]))
    assert d["spec"]["ipFamilyPolicy"] == "RequireDualStack" and d["spec"]["clusterIPs"] == ["None"]
    d = defaulted(svc(clusterIP="None", selector={"a": "b"}, ports=[{"port": 80}]))
    assert d["spec"]["ipFamilyPolicy"] == "SingleStack"
    d = defaulted(svc(clusterIPs=["10.96.0.7"], ports=[{"port": 80}]))
    assert d["spec"]["clusterIP"] == "10.96.0.7"


def test_namespace_node_endpoints_lease():
    ns = defaulted({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}})
    assert ns["status"]["phase"] == "Active" and "namespace" not in ns["metadata"]
    node = defaulted({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                      "status": {"capacity": {"cpu": "2", "memory": "4Gi"}}})
    assert node["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi"}
    ep = defaulted({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
                    "subsets": [{"ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"
    lease = defaulted({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1"}})
    assert lease == {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": "n1", "namespace": "default"}}


def test_request_namespace_wins():
    obj = codec.from_dict(pod())
    obj.metadata.namespace = "dev"
    defaults.apply_defaults(obj)
    assert obj.metadata.namespace == "dev"


def test_canonicalize_rewrites_quantities_only():
    obj = codec.from_dict(pod({"resources": {"limits": {"cpu": 1, "memory": "1024Mi"},
                                             "requests": {"cpu": "0.5", "memory": "junk"}}},
                              volumes=[{"name": "v", "emptyDir": {"sizeLimit": "1000M"}}]))
    defaults.apply_defaults(obj)
    defaults.canonicalize(obj)
    res = obj.spec.containers[0].resources
    assert dict(res.limits) == {"cpu": "1", "memory": "1Gi"}
    assert dict(res.requests) == {"cpu": "500m", "memory": "junk"}   # invalid left for validation
    assert obj.spec.volumes[0].empty_dir.size_limit == "1G"
    d = codec.from_dict({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                         "spec": {"template": {"spec": {"containers": [
                             {"name": "a", "image": "i", "resources": {"requests": {"cpu": "1000m"}}}]}}}})
    defaults.canonicalize(d)
    assert d.spec.template.spec.containers[0].resources.requests["cpu"] == "1"
    node = core_pb2.Node()
    node.status.capacity["memory"] = "2048Ki"
    defaults.canonicalize(node)
    assert node.status.capacity["memory"] == "2Mi"


def test_canonicalize_status_only_rewrites_the_quantities_under_status():
    """A status write keeps the rest as stored: only status quantities are rewritten."""
    obj = codec.from_dict(pod({"resources": {"limits": {"cpu": 1, "memory": "1024Mi"}}}))
    defaults.canonicalize(obj, status_only=True)
    assert dict(obj.spec.containers[0].resources.limits) == {"cpu": "1", "memory": "1024Mi"}
    node = core_pb2.Node()
    node.status.capacity["memory"] = "2048Ki"
    node.status.allocatable["cpu"] = "1000m"
    defaults.canonicalize(node, status_only=True)
    assert (node.status.capacity["memory"], node.status.allocatable["cpu"]) == ("2Mi", "1")
    pvc = codec.from_dict({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                           "spec": {"resources": {"requests": {"storage": "1024Mi"}}},
                           "status": {"capacity": {"storage": "2048Mi"}}})
    defaults.canonicalize(pvc, status_only=True)
    assert (pvc.spec.resources.requests["storage"], pvc.status.capacity["storage"]) == ("1024Mi", "2Gi")
    defaults.canonicalize(pvc)
    assert pvc.spec.resources.requests["storage"] == "1Gi"
