"""Validation tables: each bad input yields exactly the Kubernetes field path
and error type (and, where it matters, Kubernetes' message). Updates, status
updates and the shared examples: test_validation_updates.py."""
import pytest

from machinery.validation import common
from tests.unit.validation_objects import BASES, C0, DELETE, T0, build, errors

@pytest.mark.parametrize("base", sorted(BASES))
def test_bases_are_valid(base):
    assert [str(e) for e in errors(build(base))] == []


CASES = [
    # ---- names and metadata
    ("pod", [("metadata.name", "Web")], "Invalid", "metadata.name", "a lowercase RFC 1123 subdomain"),
    ("pod", [("metadata.name", "web_1")], "Invalid", "metadata.name", None),
    ("pod", [("metadata.name", "a" * 254)], "Invalid", "metadata.name", "must be no more than 253 characters"),
    ("pod", [("metadata.name", DELETE)], "Required", "metadata.name", "name or generateName is required"),
    ("pod", [("metadata.name", DELETE), ("metadata.generateName", "Web-")], "Invalid", "metadata.generateName", None),
    ("pod", [("metadata.namespace", "Dev")], "Invalid", "metadata.namespace", "RFC 1123 label"),
    ("ns", [("metadata.name", "dev.team")], "Invalid", "metadata.name", "a lowercase RFC 1123 label"),
    ("ns", [("metadata.namespace", "default")], "Forbidden", "metadata.namespace", "not allowed on this type"),
    ("node", [("metadata.namespace", "default")], "Forbidden", "metadata.namespace", None),
    ("svc", [("metadata.name", "1web")], "Invalid", "metadata.name", "a DNS-1035 label"),
    ("pod", [("metadata.labels", {"-bad": "x"})], "Invalid", "metadata.labels", "name part must consist of"),
    ("pod", [("metadata.labels", {"example.com/a/b": "x"})], "Invalid", "metadata.labels", "a qualified name"),
    ("pod", [("metadata.labels", {"Example_.com/a": "x"})], "Invalid", "metadata.labels", "prefix part"),
    ("pod", [("metadata.labels", {"a" * 64: "x"})], "Invalid", "metadata.labels", "name part must be no more than 63"),
    ("pod", [("metadata.labels", {"app": "x" * 64})], "Invalid", "metadata.labels", "must be no more than 63 characters"),
    ("pod", [("metadata.labels", {"app": "-x"})], "Invalid", "metadata.labels", "a valid label must be an empty string"),
    ("pod", [("metadata.annotations", {"a/b/c": "x"})], "Invalid", "metadata.annotations", None),
    ("pod", [("metadata.annotations", {"big": "x" * (256 * 1024)})], "TooLong", "metadata.annotations", None),
    ("pod", [("metadata.ownerReferences", [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs"}])],
     "Invalid", "metadata.ownerReferences[0].uid", "uid must not be empty"),
    ("pod", [("metadata.ownerReferences", [
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True}])],
     "Invalid", "metadata.ownerReferences", "Only one reference can have Controller set to true"),
    ("pod", [("metadata.finalizers", ["cleanup"])], "Invalid", "metadata.finalizers", "neither a standard finalizer"),
    # ---- containers
    ("pod", [("spec.containers", [])], "Required", "spec.containers", None),
    ("pod", [(f"{C0}.name", "App")], "Invalid", "spec.containers[0].name", "RFC 1123 label"),
    ("pod", [(f"{C0}.image", "")], "Required", "spec.containers[0].image", None),
    ("pod", [(f"{C0}.image", " nginx")], "Invalid", "spec.containers[0].image", "whitespace"),
    ("pod", [("spec.containers.1", {"name": "app", "image": "busybox"})], "Duplicate", "spec.containers[1].name", None),
    ("pod", [(f"{C0}.imagePullPolicy", "Sometimes")], "NotSupported", "spec.containers[0].imagePullPolicy",
     'supported values: "Always", "IfNotPresent", "Never"'),
    ("pod", [(f"{C0}.terminationMessagePolicy", "Log")], "NotSupported", "spec.containers[0].terminationMessagePolicy", None),
    # ---- ports
    ("pod", [(f"{C0}.ports.0.containerPort", 0)], "Required", "spec.containers[0].ports[0].containerPort", None),
    ("pod", [(f"{C0}.ports.0.containerPort", 70000)], "Invalid", "spec.containers[0].ports[0].containerPort",
     "must be between 1 and 65535, inclusive"),
    ("pod", [(f"{C0}.ports.0.containerPort", -1)], "Invalid", "spec.containers[0].ports[0].containerPort", None),
    ("pod", [(f"{C0}.ports.0.hostPort", 65536)], "Invalid", "spec.containers[0].ports[0].hostPort", None),
    ("pod", [(f"{C0}.ports.0.name", "a-very-long-port-name")], "Invalid", "spec.containers[0].ports[0].name",
     "must be no more than 15 characters"),
    ("pod", [(f"{C0}.ports.0.name", "http_x")], "Invalid", "spec.containers[0].ports[0].name", "alpha-numeric"),
    ("pod", [(f"{C0}.ports.0.name", "8080")], "Invalid", "spec.containers[0].ports[0].name", "at least one letter"),
    ("pod", [(f"{C0}.ports.0.name", "a--b")], "Invalid", "spec.containers[0].ports[0].name", "consecutive hyphens"),
    ("pod", [(f"{C0}.ports.1", {"name": "http", "containerPort": 81})], "Duplicate",
     "spec.containers[0].ports[1].name", None),
    ("pod", [(f"{C0}.ports.0.protocol", "ICMP")], "NotSupported", "spec.containers[0].ports[0].protocol",
     'supported values: "SCTP", "TCP", "UDP"'),
    # ---- resources
    ("pod", [(f"{C0}.resources.requests.cpu", "lots")], "Invalid", "spec.containers[0].resources.requests[cpu]",
     "quantities must match the regular expression"),
    ("pod", [(f"{C0}.resources.limits.memory", "1Gb")], "Invalid", "spec.containers[0].resources.limits[memory]", None),
    ("pod", [(f"{C0}.resources.requests.cpu", "-1")], "Invalid", "spec.containers[0].resources.requests[cpu]",
     "must be greater than or equal to 0"),
    ("pod", [(f"{C0}.resources.requests.cpu", "1")], "Invalid", "spec.containers[0].resources.requests[cpu]",
     "must be less than or equal to cpu limit of 500m"),
    ("pod", [(f"{C0}.resources.requests.memory", "1Gi")], "Invalid",
     "spec.containers[0].resources.requests[memory]", "must be less than or equal to memory limit of 128Mi"),
    ("pod", [(f"{C0}.resources.requests.gpu", "1")], "Invalid", "spec.containers[0].resources.requests[gpu]",
     "must be a standard resource for containers"),
    ("pod", [(f"{C0}.resources", {"requests": {"example.com/dongle": "1500m"}})], "Invalid",
     "spec.containers[0].resources.requests[example.com/dongle]", "must be an integer"),
    ("pod", [(f"{C0}.resources", {"requests": {"requests.example.com": "1"}})], "Invalid",
     "spec.containers[0].resources.requests[requests.example.com]", "must be a standard resource"),
    ("deploy", [(f"{T0}.resources.requests.cpu", "2")], "Invalid",
     "spec.template.spec.containers[0].resources.requests[cpu]", "must be less than or equal to cpu limit of 500m"),
    # ---- env
    ("pod", [(f"{C0}.env.0.name", "1BAD")], "Invalid", "spec.containers[0].env[0].name",
     "a valid environment variable name"),
    ("pod", [(f"{C0}.env.0.name", "")], "Required", "spec.containers[0].env[0].name", None),
    ("pod", [(f"{C0}.env.0.valueFrom", {})], "Invalid", "spec.containers[0].env[0].valueFrom", "must specify one of"),
    ("pod", [(f"{C0}.env.0.valueFrom.secretKeyRef", {"name": "s", "key": "k"})], "Invalid",
     "spec.containers[0].env[0].valueFrom", "may not have more than one field specified at a time"),
    ("pod", [(f"{C0}.env.0.value", "x")], "Invalid", "spec.containers[0].env[0].valueFrom",
     "may not be specified when `value` is not empty"),
    ("pod", [(f"{C0}.env.0.valueFrom.fieldRef.fieldPath", "spec.containers")], "NotSupported",
     "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", None),
    ("pod", [(f"{C0}.env.0.valueFrom.fieldRef.fieldPath", "metadata.labels['-x']")], "Invalid",
     "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", None),
    # ---- volumes and mounts
    ("pod", [("spec.volumes.1", {"name": "data", "emptyDir": {}})], "Duplicate", "spec.volumes[1].name", None),
    ("pod", [("spec.volumes.0.hostPath", {"path": "/tmp"})], "Forbidden", "spec.volumes[0].hostPath",
     "may not specify more than 1 volume type"),
    ("pod", [("spec.volumes.0", {"name": "data"})], "Required", "spec.volumes[0]", "must specify a volume type"),
    ("pod", [("spec.volumes.0", {"name": "data", "hostPath": {"path": "/x", "type": "Dir"}})], "NotSupported",
     "spec.volumes[0].hostPath.type", None),
    ("pod", [(f"{C0}.volumeMounts.0.name", "other")], "NotFound", "spec.containers[0].volumeMounts[0].name", None),
    ("pod", [(f"{C0}.volumeMounts.0.mountPath", "data")], "Invalid", "spec.containers[0].volumeMounts[0].mountPath",
     "must be an absolute path"),
    ("pod", [(f"{C0}.volumeMounts.0.mountPath", "")], "Required", "spec.containers[0].volumeMounts[0].mountPath", None),
    ("pod", [("spec.volumes.0", {"name": "data", "hostPath": {}})], "Required", "spec.volumes[0].hostPath.path", None),
    ("pod", [("spec.volumes.0", {"name": "data", "secret": {}})], "Required", "spec.volumes[0].secret.secretName", None),
    ("pod", [("spec.volumes.0", {"name": "data", "configMap": {"name": "c", "defaultMode": 1024}})], "Invalid",
     "spec.volumes[0].configMap.defaultMode", "must be a number between 0 and 0777 (octal)"),
    ("pod", [("spec.volumes.0", {"name": "data", "emptyDir": {"sizeLimit": "1GB"}})], "Invalid",
     "spec.volumes[0].emptyDir.sizeLimit", None),
    ("pod", [("spec.volumes.0.name", "Data_1"), (f"{C0}.volumeMounts", [])], "Invalid", "spec.volumes[0].name", None),
    ("pod", [(f"{C0}.volumeMounts.1", {"name": "data", "mountPath": "/data"})], "Invalid",
     "spec.containers[0].volumeMounts[1].mountPath", "must be unique"),
    ("pod", [(f"{C0}.volumeMounts.0.subPath", "../etc")], "Invalid", "spec.containers[0].volumeMounts[0].subPath",
     "must not contain '..'"),
    ("pod", [(f"{C0}.env.0.valueFrom", {"resourceFieldRef": {"resource": "limits.gpu"}})], "NotSupported",
     "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource", None),
    ("pod", [(f"{C0}.env.0.valueFrom", {"configMapKeyRef": {"name": "c"}})], "Required",
     "spec.containers[0].env[0].valueFrom.configMapKeyRef.key", None),
    ("pod", [(f"{C0}.lifecycle", {"preStop": {"sleep": {"seconds": 0}}})], "Invalid",
     "spec.containers[0].lifecycle.preStop.sleep.seconds", "must be greater than 0"),
    ("pod", [(f"{C0}.lifecycle", {"preStop": {}})], "Required", "spec.containers[0].lifecycle.preStop",
     "must specify a handler type"),
    ("pod", [(f"{C0}.readinessProbe.terminationGracePeriodSeconds", 5)], "Invalid",
     "spec.containers[0].readinessProbe.terminationGracePeriodSeconds", "must not be set for readinessProbes"),
    ("pod", [("spec.tolerations", [{"key": "bad key", "operator": "Exists"}])], "Invalid", "spec.tolerations[0].key", None),
    ("pod", [("spec.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["a"]}]}]}}})],
     "NotSupported", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                     ".nodeSelectorTerms[0].matchFields[0].key", None),
    # ---- probes
    ("pod", [(f"{C0}.livenessProbe", {"periodSeconds": 5})], "Required", "spec.containers[0].livenessProbe",
     "must specify a handler type"),
    ("pod", [(f"{C0}.livenessProbe.exec", {"command": ["true"]})], "Forbidden",  # the 2nd in exec, httpGet, tcpSocket
     "spec.containers[0].livenessProbe.httpGet", "may not specify more than 1 handler type"),
    ("pod", [(f"{C0}.livenessProbe.httpGet.port", 0)], "Invalid", "spec.containers[0].livenessProbe.httpGet.port",
     "must be between 1 and 65535, inclusive"),
    ("pod", [(f"{C0}.livenessProbe.httpGet.port", DELETE)], "Invalid", "spec.containers[0].livenessProbe.httpGet.port",
     "must be between 1 and 65535, inclusive"),
    ("pod", [(f"{C0}.livenessProbe.httpGet.port", 65536)], "Invalid",
     "spec.containers[0].livenessProbe.httpGet.port", "must be between 1 and 65535, inclusive"),
    ("pod", [(f"{C0}.readinessProbe.tcpSocket.port", "Web_Port")], "Invalid",
     "spec.containers[0].readinessProbe.tcpSocket.port", None),
    ("pod", [(f"{C0}.livenessProbe.initialDelaySeconds", -1)], "Invalid",
     "spec.containers[0].livenessProbe.initialDelaySeconds", "must be greater than or equal to 0"),
    ("pod", [(f"{C0}.livenessProbe.periodSeconds", -5)], "Invalid",
     "spec.containers[0].livenessProbe.periodSeconds", None),
    ("pod", [(f"{C0}.livenessProbe.successThreshold", 2)], "Invalid",
     "spec.containers[0].livenessProbe.successThreshold", "must be 1"),
    ("pod", [(f"{C0}.startupProbe", {"exec": {"command": ["true"]}, "successThreshold": 3})], "Invalid",
     "spec.containers[0].startupProbe.successThreshold", "must be 1"),
    ("pod", [(f"{C0}.livenessProbe.httpGet.scheme", "FTP")], "NotSupported",
     "spec.containers[0].livenessProbe.httpGet.scheme", None),
    ("pod", [(f"{C0}.readinessProbe", {"exec": {}})], "Required", "spec.containers[0].readinessProbe.exec.command", None),
    # ---- pod-level fields
    ("pod", [("spec.hostNetwork", True), (f"{C0}.ports.0.hostPort", 8080)], "Invalid",
     "spec.containers[0].ports[0].hostPort", "must match `containerPort` when `hostNetwork` is true"),
    ("pod", [("spec.restartPolicy", "Sometimes")], "NotSupported", "spec.restartPolicy",
     'supported values: "Always", "OnFailure", "Never"'),
    ("pod", [("spec.dnsPolicy", "Google")], "NotSupported", "spec.dnsPolicy", None),
    ("pod", [("spec.terminationGracePeriodSeconds", -1)], "Invalid", "spec.terminationGracePeriodSeconds", None),
    ("pod", [("spec.activeDeadlineSeconds", 0)], "Invalid", "spec.activeDeadlineSeconds", None),
    ("pod", [("spec.nodeSelector", {"disk": "ssd!"})], "Invalid", "spec.nodeSelector", None),
    ("pod", [("spec.nodeName", "Node_1")], "Invalid", "spec.nodeName", None),
    ("pod", [("spec.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}])], "Invalid",
     "spec.tolerations[0].operator", "value must be empty when `operator` is 'Exists'"),
    ("pod", [("spec.tolerations", [{"key": "k", "operator": "Like"}])], "NotSupported",
     "spec.tolerations[0].operator", None),
    ("pod", [("spec.tolerations", [{"key": "k", "value": "v", "effect": "Evict"}])], "NotSupported",
     "spec.tolerations[0].effect", None),
    ("pod", [("spec.tolerations", [{"key": "k", "value": "v", "effect": "NoSchedule", "tolerationSeconds": 5}])],
     "Invalid", "spec.tolerations[0].effect", "effect must be 'NoExecute' when `tolerationSeconds` is set"),
    ("pod", [("spec.tolerations", [{"operator": "Equal", "value": "v"}])], "Invalid", "spec.tolerations[0].operator",
     "operator must be Exists when `key` is empty"),
    ("pod", [("spec.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}})],
     "Required", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                 ".nodeSelectorTerms[0].matchExpressions[0].values", None),
    ("pod", [("spec.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Exists", "values": ["a"]}]}]}}})],
     "Forbidden", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                  ".nodeSelectorTerms[0].matchExpressions[0].values", None),
    ("pod", [("spec.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["1", "2"]}]}]}}})],
     "Required", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                 ".nodeSelectorTerms[0].matchExpressions[0].values", "single value"),
    ("pod", [("spec.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}}})],
     "Invalid", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                ".nodeSelectorTerms[0].matchExpressions[0].operator", None),
    ("pod", [("spec.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": []}}})],
     "Required", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms", None),
    ("pod", [("spec.affinity", {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 0, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}})],
     "Invalid", "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
     "must be in the range 1-100"),
    # ---- deployments and replica sets
    ("deploy", [("spec.replicas", -1)], "Invalid", "spec.replicas", "must be greater than or equal to 0"),
    ("rs", [("spec.replicas", -1)], "Invalid", "spec.replicas", "must be greater than or equal to 0"),
    ("deploy", [("spec.selector", DELETE)], "Required", "spec.selector", None),
    ("deploy", [("spec.selector", {})], "Invalid", "spec.selector", "empty selector is invalid for deployment"),
    ("rs", [("spec.selector.matchLabels", {"app": "db"})], "Invalid", "spec.template.metadata.labels",
     "`selector` does not match template `labels`"),
    ("deploy", [("spec.selector", {"matchExpressions": [{"key": "app", "operator": "Is", "values": ["a"]}]})],
     "Invalid", "spec.selector.matchExpressions[0].operator", None),
    ("deploy", [("spec.selector", {"matchLabels": {"app": "web"},
                                   "matchExpressions": [{"key": "tier", "operator": "In"}]})],
     "Required", "spec.selector.matchExpressions[0].values", None),
    ("deploy", [("spec.template.spec.restartPolicy", "Never")], "NotSupported", "spec.template.spec.restartPolicy",
     'supported values: "Always"'),
    ("deploy", [("spec.template.spec.containers.0.name", "App")], "Invalid", "spec.template.spec.containers[0].name", None),
    ("deploy", [("spec.strategy", {"type": "BlueGreen"})], "NotSupported", "spec.strategy.type",
     'supported values: "Recreate", "RollingUpdate"'),
    ("deploy", [("spec.strategy", {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})], "Forbidden",
     "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"),
    ("deploy", [("spec.strategy.rollingUpdate", {"maxSurge": "25"})], "Invalid", "spec.strategy.rollingUpdate.maxSurge",
     "a valid percent string must be a numeric string followed by an ending '%'"),
    ("deploy", [("spec.strategy.rollingUpdate", {"maxUnavailable": -1})], "Invalid",
     "spec.strategy.rollingUpdate.maxUnavailable", "must be greater than or equal to 0"),
    ("deploy", [("spec.strategy.rollingUpdate", {"maxUnavailable": "150%"})], "Invalid",
     "spec.strategy.rollingUpdate.maxUnavailable", "must not be greater than 100%"),
    ("deploy", [("spec.strategy.rollingUpdate", {"maxUnavailable": 0, "maxSurge": "0%"})], "Invalid",
     "spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0"),
    ("deploy", [("spec.revisionHistoryLimit", -1)], "Invalid", "spec.revisionHistoryLimit", None),
    ("deploy", [("spec.minReadySeconds", 700)], "Invalid", "spec.progressDeadlineSeconds",
     "must be greater than minReadySeconds"),
    # ---- services
    ("svc", [("spec.type", "Magic")], "NotSupported", "spec.type", None),
    ("svc", [("spec.type", "ExternalName")], "Required", "spec.externalName", None),
    ("svc", [("spec.ports", [])], "Required", "spec.ports", None),
    ("svc", [("spec.ports.1.name", DELETE)], "Required", "spec.ports[1].name", None),
    ("svc", [("spec.ports.1.name", "http")], "Duplicate", "spec.ports[1].name", None),
    ("svc", [("spec.ports.1.name", "HTTPS")], "Invalid", "spec.ports[1].name", None),
    ("svc", [("spec.ports.0.port", 0)], "Invalid", "spec.ports[0].port", "must be between 1 and 65535, inclusive"),
    ("svc", [("spec.ports.1.port", 80)], "Duplicate", "spec.ports[1]", None),
    ("svc", [("spec.ports.0.targetPort", 99999)], "Invalid", "spec.ports[0].targetPort", None),
    ("svc", [("spec.ports.0.targetPort", "http--x")], "Invalid", "spec.ports[0].targetPort", "consecutive hyphens"),
    ("svc", [("spec.ports.0.protocol", "HTTP")], "NotSupported", "spec.ports[0].protocol", None),
    ("svc", [("spec.ports.0.nodePort", 30080)], "Forbidden", "spec.ports[0].nodePort",
     "may not be used when `type` is 'ClusterIP'"),
    ("svc", [("spec.type", "NodePort"), ("spec.ports.0.nodePort", 70000)], "Invalid", "spec.ports[0].nodePort", None),
    ("svc", [("spec.clusterIP", "10.96.0.300")], "Invalid", "spec.clusterIP",
     "must be empty, 'None', or a valid IP address"),
    ("svc", [("spec.type", "NodePort"), ("spec.clusterIP", "None")], "Invalid", "spec.clusterIP",
     "may not be set to 'None' for NodePort services"),
    ("svc", [("spec.sessionAffinity", "Sticky")], "NotSupported", "spec.sessionAffinity", None),
    ("svc", [("spec.externalTrafficPolicy", "Local")], "Invalid", "spec.externalTrafficPolicy",
     "may only be set when `type` is 'NodePort' or 'LoadBalancer'"),
    ("svc", [("spec.selector", {"app": "a b"})], "Invalid", "spec.selector", None),
    ("svc", [("spec.ipFamilies", ["IPv6"])], "NotSupported", "spec.ipFamilies[0]", None),
    # ---- nodes, namespaces and the rest
    ("node", [("spec.taints.0.effect", "")], "Required", "spec.taints[0].effect", None),
    ("node", [("spec.taints.0.effect", "Evict")], "NotSupported", "spec.taints[0].effect", None),
    ("node", [("spec.taints.0.key", "bad key")], "Invalid", "spec.taints[0].key", None),
    ("node", [("spec.taints.1", {"key": "dedicated", "value": "x", "effect": "NoSchedule"})], "Duplicate",
     "spec.taints[1]", None),
    ("node", [("spec.podCIDR", "10.244.1.0")], "Invalid", "spec.podCIDR", "must be a valid CIDR value"),
    ("node", [("status", {"capacity": {"cpu": "four"}, "allocatable": {"cpu": "1"}})], "Invalid",
     "status.capacity[cpu]", "quantities must match"),
    ("node", [("status", {"capacity": {"memory": "-1Gi"}, "allocatable": {"memory": "1Gi"}})], "Invalid",
     "status.capacity[memory]", "must be greater than or equal to 0"),
    ("ns", [("status", {"phase": "Gone"})], "NotSupported", "status.phase", None),
    ("ep", [("subsets.0.addresses.0.ip", "not-an-ip")], "Invalid", "subsets[0].addresses[0].ip", None),
    ("ep", [("subsets.0.ports.0.port", 0)], "Invalid", "subsets[0].ports[0].port", None),
    ("event", [("involvedObject.namespace", "other")], "Invalid", "involvedObject.namespace",
     "does not match event.namespace"),
    ("event", [("type", "Fatal")], "NotSupported", "type", None),
    ("lease", [("spec.leaseTransitions", -1)], "Invalid", "spec.leaseTransitions", None),
    ("ns", [("metadata.name", DELETE), ("metadata.generateName", "Dev-")], "Invalid", "metadata.generateName", None),
    ("ep", [("subsets.0.ports.1", {"port": 443})], "Required", "subsets[0].ports[1].name", None),
    ("ep", [("subsets.0.ports.0.protocol", "ICMP")], "NotSupported", "subsets[0].ports[0].protocol", None),
    ("lease", [("spec.leaseDurationSeconds", 0)], "Invalid", "spec.leaseDurationSeconds", "must be greater than 0"),
]


@pytest.mark.parametrize("base, edits, etype, field, detail", CASES,
                         ids=[f"{c[0]}:{c[3]}:{i}" for i, c in enumerate(CASES)])
def test_invalid(base, edits, etype, field, detail):
    errs = errors(build(base, *edits))
    assert [(e.type, e.field) for e in errs] == [(etype, field)], [str(e) for e in errs]
    if detail:
        assert detail in str(errs[0])


def test_messages_read_like_kubernetes():
    [e] = errors(build("pod", ("metadata.name", "Web")))
    assert str(e) == (
        'metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower '
        "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    [e] = errors(build("pod", (f"{C0}.resources.requests.cpu", "1000m")))
    assert str(e) == ('spec.containers[0].resources.requests[cpu]: Invalid value: "1": '
                      "must be less than or equal to cpu limit of 500m")
    [e] = errors(build("deploy", ("spec.replicas", -1)))
    assert str(e) == "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    assert common.is_dns1123_label("Bad") == [
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
        "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
        "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]


@pytest.mark.parametrize("value, ok", [
    ("example.com/MyName", True), ("my.name", True), ("a", True), ("a/b", True),
    ("/b", False), ("a/", False), ("_a", False), ("a" * 63, True), ("a" * 64, False),
    ("Example.com/a", False),
])
def test_qualified_names(value, ok):
    assert (common.is_qualified_name(value) == []) is ok


def test_errors_become_an_invalid_api_error():
    from machinery.errors import Invalid
    errs = errors(build("deploy", ("spec.replicas", -1), ("spec.strategy", {"type": "Blue"})))
    err = Invalid.of("Deployment.apps", "web", errs, kind="Deployment", group="apps")
    assert err.message == (
        'Deployment.apps "web" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal '
        'to 0, spec.strategy.type: Unsupported value: "Blue": supported values: "Recreate", "RollingUpdate"]')
    assert [(c.field, c.reason) for c in err.causes] == [("spec.replicas", "FieldValueInvalid"),
                                                         ("spec.strategy.type", "FieldValueNotSupported")]


def test_many_errors_reported_at_once():
    errs = errors(build("pod", ("metadata.name", "Bad"), (f"{C0}.image", ""), ("spec.restartPolicy", "x")))
    assert {e.field for e in errs} == {"metadata.name", "spec.containers[0].image", "spec.restartPolicy"}


def test_generate_name_allows_trailing_dash():
    assert errors(build("pod", ("metadata.name", DELETE), ("metadata.generateName", "web-"))) == []


def test_headless_service_needs_no_ports():
    assert errors(build("svc", ("spec.clusterIP", "None"), ("spec.ports", []))) == []


def test_service_types_load_balancer_and_node_port_accepted():
    assert errors(build("svc", ("spec.type", "LoadBalancer"), ("spec.ports.0.nodePort", 30080))) == []
    assert errors(build("svc", ("spec.type", "NodePort"), ("spec.clusterIP", "10.96.0.10"))) == []
