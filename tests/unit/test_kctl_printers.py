"""kctl's tables: kubectl's AGE format, pod STATUS logic, service ports,
node status, endpoints and the tabwriter alignment."""
from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from kubectlish import printers
from machinery import codec

NOW = 1_800_000_000.0


def ts(seconds_ago: float) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int((NOW - seconds_ago) * 1e9))
    return t


@pytest.mark.parametrize("secs,want", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"),
    (599, "9m59s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60 * 7, "3h7m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"),
    (400 * 86400, "400d"), (730 * 86400, "2y"), (731 * 86400, "2y1d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration_matches_kubectl(secs, want):
    assert printers.human_duration(secs) == want


def test_age_of_unset_timestamp_is_unknown():
    assert printers.age(Timestamp(), at=NOW) == "<unknown>"
    assert printers.age(ts(65), at=NOW) == "65s"


def pod(manifest: dict):
    base = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}]}}
    base.update(manifest)
    return codec.from_dict(base)


def cs(name="a", **state):
    return {"name": name, "image": "busybox", **state}


def test_pod_running_ready():
    p = pod({"status": {"phase": "Running", "containerStatuses": [cs(ready=True, state={"running": {}})]}})
    assert printers.pod_status(p, NOW) == ("1/1", "Running", "0")


@pytest.mark.parametrize("state,want", [
    ({"waiting": {"reason": "CrashLoopBackOff"}}, "CrashLoopBackOff"),
    ({"waiting": {"reason": "ImagePullBackOff"}}, "ImagePullBackOff"),
    ({"waiting": {"reason": "ErrImagePull"}}, "ErrImagePull"),
    ({"terminated": {"reason": "Completed", "exitCode": 0}}, "Completed"),
    ({"terminated": {"reason": "OOMKilled", "exitCode": 137}}, "OOMKilled"),
    ({"terminated": {"exitCode": 3}}, "ExitCode:3"),
    ({"terminated": {"exitCode": 137, "signal": 9}}, "Signal:9"),
])
def test_pod_status_from_container_state(state, want):
    p = pod({"status": {"phase": "Running", "containerStatuses": [cs(state=state)]}})
    assert printers.pod_status(p, NOW)[1] == want


def test_pod_pending_without_statuses_and_reason_overrides_phase():
    assert printers.pod_status(pod({"status": {"phase": "Pending"}}), NOW) == ("0/1", "Pending", "0")
    assert printers.pod_status(pod({"status": {"phase": "Failed", "reason": "Evicted"}}), NOW)[1] == "Evicted"


def test_pod_terminating_and_nodelost():
    p = pod({"status": {"phase": "Running"}})
    p.metadata.deletion_timestamp.CopyFrom(ts(1))
    assert printers.pod_status(p, NOW)[1] == "Terminating"
    p.status.reason = "NodeLost"
    assert printers.pod_status(p, NOW)[1] == "Unknown"
    p.status.reason = ""
    p.status.phase = "Succeeded"
    assert printers.pod_status(p, NOW)[1] == "Succeeded"   # terminal pods are not "Terminating"


def test_completed_with_a_running_container_is_running_or_notready():
    statuses = [cs("a", ready=True, state={"running": {}}),
                cs("b", state={"terminated": {"reason": "Completed"}})]
    p = pod({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]},
             "status": {"phase": "Running", "containerStatuses": statuses}})
    assert printers.pod_status(p, NOW)[1] == "NotReady"
    p.status.conditions.add(type="Ready", status="True")
    assert printers.pod_status(p, NOW)[:2] == ("1/2", "Running")


def test_restarts_with_last_restart_age():
    fin = ts(65)
    p = pod({"status": {"phase": "Running", "containerStatuses": [
        cs(ready=True, restartCount=5, state={"running": {}},
           lastState={"terminated": {"exitCode": 1, "finishedAt": fin.ToJsonString()}})]}})
    assert printers.pod_status(p, NOW)[2] == "5 (65s ago)"


def test_pod_table_and_wide_columns():
    p = pod({"status": {"phase": "Running", "podIP": "10.244.1.5"}, "spec": {
        "nodeName": "n1", "containers": [{"name": "a", "image": "x"}]}})
    p.metadata.creation_timestamp.CopyFrom(ts(30))
    out = printers.table("Pod", [p], wide=True, at=NOW)
    assert out.splitlines() == [
        "NAME   READY   STATUS    RESTARTS   AGE   IP           NODE   NOMINATED NODE   READINESS GATES",
        "p      0/1     Running   0          30s   10.244.1.5   n1     <none>           <none>",
    ]


def svc(spec, status=None):
    return codec.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                            "spec": spec, "status": status or {}})


def test_service_ports_and_external_ip():
    s = svc({"type": "NodePort", "clusterIP": "10.96.0.10",
             "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]})
    assert printers.port_string(s.spec.ports) == "80:30080/TCP,53/UDP"
    assert printers.external_ip(s) == "<none>"
    row = printers.row(s, at=NOW)
    assert row[:5] == ["s", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP"]
    lb = svc({"type": "LoadBalancer", "ports": [{"port": 80}]})
    assert printers.external_ip(lb) == "<pending>"
    lb2 = svc({"type": "LoadBalancer"}, {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
    assert printers.external_ip(lb2) == "1.2.3.4"
    headless = svc({"clusterIP": "None"})
    assert printers.row(headless, at=NOW)[2:5] == ["None", "<none>", "<none>"]


def test_node_status_roles_and_version():
    n = codec.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v0.1.0"}}})
    assert printers.node_status(n) == "Ready,SchedulingDisabled"
    assert printers.node_roles(n) == "control-plane"
    assert printers.row(n, at=NOW)[:3] == ["n1", "Ready,SchedulingDisabled", "control-plane"]
    n.status.conditions[0].status = "Unknown"
    n.spec.unschedulable = False
    assert printers.node_status(n) == "NotReady"
    del n.status.conditions[:]
    assert printers.node_status(n) == "Unknown"


def test_endpoints_truncation():
    ep = codec.from_dict({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}, "subsets": [
        {"addresses": [{"ip": f"10.244.{i}.5"} for i in range(1, 5)], "ports": [{"port": 80}]}]})
    assert printers.format_endpoints(ep) == "10.244.1.5:80,10.244.2.5:80,10.244.3.5:80 + 1 more..."
    empty = codec.from_dict({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}})
    assert printers.format_endpoints(empty) == "<none>"


def test_deployment_row_and_selector():
    d = codec.from_dict({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [
                             {"key": "tier", "operator": "In", "values": ["b", "a"]}]},
                             "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}},
                         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}})
    assert printers.row(d, wide=True, at=NOW)[:4] == ["web", "2/3", "3", "2"]
    assert printers.row(d, wide=True, at=NOW)[5:] == ["nginx", "nginx:1", "app=web,tier in (a,b)"]


def test_event_last_seen_with_count():
    e = codec.from_dict({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                         "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "BackOff", "type": "Warning",
                         "message": " back-off ", "count": 3,
                         "firstTimestamp": ts(600).ToJsonString(), "lastTimestamp": ts(5).ToJsonString()})
    assert printers.row(e, at=NOW) == ["5s (x3 over 10m)", "Warning", "BackOff", "pod/p", "back-off"]


def test_all_namespaces_show_labels_and_kind_prefix():
    p = pod({})
    p.metadata.labels["app"] = "web"
    p.metadata.creation_timestamp.CopyFrom(ts(1))
    hdr = printers.headers("Pod", all_namespaces=True, show_labels=True)
    assert hdr[0] == "NAMESPACE" and hdr[-1] == "LABELS"
    r = printers.row(p, all_namespaces=True, show_labels=True, show_kind=True, at=NOW)
    assert r[0] == "default" and r[1] == "pod/p" and r[-1] == "app=web"


def test_tabwrite_aligns_like_go_tabwriter():
    out = printers.tabwrite(["A\tBB\tC", "AAAA\tB\tCCC"])
    # widths: max(cell + padding 3, minwidth 6)
    assert out == "A      BB    C\nAAAA   B     CCC\n"
    # describe-style blocks: a line without tabs ends a column block
    out = printers.tabwrite(["Name:\tx", "Longer Key:\ty", "Containers:", "  c:\tz"], minwidth=0, padding=2)
    assert out.splitlines() == ["Name:        x", "Longer Key:  y", "Containers:", "  c:  z"]


def test_render_name_yaml_json():
    p = pod({})
    assert printers.render([p], "name", single=False) == "pod/p\n"
    y = printers.render([p], "yaml", single=True)
    assert y.startswith("apiVersion: v1\nkind: Pod\n")
    lst = printers.render([p, p], "json", single=False)
    assert '"kind": "List"' in lst
