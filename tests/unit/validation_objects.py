"""The valid objects the validation tables start from (one per kind), and
`build(base, *edits)`: a copy with dotted-path edits (DELETE removes a key,
index == len appends), decoded and defaulted as the apiserver would."""
import copy

from machinery import codec, defaults, validation

DELETE = object()

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
       "spec": {"containers": [{"name": "app", "image": "nginx:1.25",
                                "ports": [{"name": "http", "containerPort": 80}],
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                              "limits": {"cpu": "500m", "memory": "128Mi"}},
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 80}},
                                "readinessProbe": {"tcpSocket": {"port": "http"}},
                                "env": [{"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
                "volumes": [{"name": "data", "emptyDir": {}}]}}
TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25",
                                     "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m"}}}]}}
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
          "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}}
RS = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1", "namespace": "default"},
      "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                                      {"name": "https", "port": 443, "targetPort": 8443}]}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}
EP = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
      "subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"name": "http", "port": 80}]}]}
EVENT = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": "default"},
         "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
         "reason": "Scheduled", "type": "Normal", "count": 1}
LEASE = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
         "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}
BASES = {"pod": POD, "deploy": DEPLOY, "rs": RS, "svc": SVC, "node": NODE, "ns": NS, "ep": EP,
         "event": EVENT, "lease": LEASE}

C0 = "spec.containers.0"
T0 = "spec.template.spec.containers.0"


def build(base: str, *edits):
    d = copy.deepcopy(BASES[base])
    for path, value in edits:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        cur = d
        for p in parents:
            if isinstance(cur, dict) and p not in cur:
                cur[p] = {}
            cur = cur[p]
        if value is DELETE:
            del cur[last]
        elif isinstance(cur, list) and last == len(cur):
            cur.append(value)
        else:
            cur[last] = value
    obj = codec.from_dict(d)
    defaults.apply_defaults(obj)
    return obj


def errors(obj, old=None):
    return validation.validate(obj, old)
