"""A real agent in a node netns against a real apiserver and registry: pods run as isolated containers."""
from __future__ import annotations

import os

import pytest

from machinery.pb import apps_pb2, core_pb2
from tests.integration.nodeagent.conftest import (cid_of, cstatus, make_pod, needs_root, node_ready, pod_gone,
                                                  pod_running, wait_for)

pytestmark = [pytest.mark.root, needs_root]


async def test_registration_lease_and_pod_lifecycle(api, make_node):
    node = make_node("basic", extra=["--metrics-listen", "127.0.0.1:10255", "--node-labels", "tier=test,zone=a",
                                     "--register-with-taints", "dedicated=infra:NoSchedule",
                                     "--system-reserved", "cpu=500m,memory=256Mi"])
    await node_ready(api, node)
    n = await api.get(core_pb2.Node, node.name)
    assert n.spec.pod_cidr == node.pod_cidr
    assert n.metadata.labels["kubernetes.io/hostname"] == node.name
    assert n.metadata.labels["tier"] == "test" and n.metadata.labels["zone"] == "a"
    assert [(t.key, t.value, t.effect) for t in n.spec.taints] == [("dedicated", "infra", "NoSchedule")]
    cap, alloc = n.status.capacity, n.status.allocatable
    assert alloc["cpu"] == f"{os.cpu_count() * 1000 - 500}m"
    assert int(alloc["memory"]) == int(cap["memory"].removesuffix("Ki")) * 1024 - (256 << 20)
    assert {c.type: c.status for c in n.status.conditions}["Ready"] == "True"
    assert n.metadata.annotations["kctl.io/agent-endpoint"] == f"{node.ip}:10250"
    assert {a.type: a.address for a in n.status.addresses}["InternalIP"] == node.ip
    assert int(n.status.capacity["cpu"]) == os.cpu_count()
    assert n.status.node_info.kernel_version == os.uname().release
    lease = await api.get(apps_pb2.Lease, node.name, "kube-node-lease")
    assert lease.spec.holder_identity == node.name

    await api.create(make_pod("sleeper", node, {
        "name": "main", "image": "busybox", "command": ["sh", "-c"],
        "args": ["echo started; exec sleep 3600"],
        "env": [{"name": "GREETING", "value": "hello"},
                {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "MY_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MY_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "COMBINED", "value": "$(GREETING)-$(MY_POD)"}],
        "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}}))
    pod = await pod_running(api, "sleeper", node)
    st = pod.status
    assert st.pod_ip.startswith("10.213.") and st.host_ip == node.ip and st.pod_ips[0].ip == st.pod_ip
    assert st.HasField("start_time")
    conds = {c.type: c.status for c in st.conditions}
    assert conds == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    cs = cstatus(pod, "main")
    assert cs.ready and cs.started and cs.restart_count == 0
    assert cs.image == "busybox" and cs.image_id and cs.container_id.startswith("runc://")
    cid = cid_of(pod, "main")

    # own pid, net, mnt, uts namespaces
    pid = node.container_pid(cid)
    for ns in ("pid", "net", "mnt", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(
        f"/var/run/netns/{node.pod_prefix}{pod.metadata.uid}").st_ino     # the pod sandbox
    assert node.runc_exec(cid, "hostname").stdout.strip() == "sleeper"
    assert node.runc_exec(cid, "sh", "-c", "echo $$").stdout.strip() != ""

    # env, command/args, fieldRefs
    env = dict(line.split("=", 1) for line in node.runc_exec(cid, "env").stdout.splitlines() if "=" in line)
    assert env["GREETING"] == "hello" and env["MY_POD"] == "sleeper" and env["MY_NS"] == "default"
    assert env["MY_UID"] == pod.metadata.uid and env["MY_IP"] == st.pod_ip and env["MY_HOST_IP"] == node.ip
    assert env["MY_NODE"] == node.name and env["COMBINED"] == "hello-sleeper"
    assert env["PATH"].startswith("/usr/local/sbin")            # from the image config
    cmdline = open(f"/proc/{pid}/cmdline").read().split("\0")
    assert cmdline[:2] == ["sleep", "3600"]

    # cgroup limits: cpu quota from limits, shares from requests, memory limit
    assert node.cgroup_dir("cpu", cid).joinpath("cpu.cfs_quota_us").read_text().strip() == "25000"
    assert node.cgroup_dir("cpu", cid).joinpath("cpu.cfs_period_us").read_text().strip() == "100000"
    assert node.cgroup_dir("cpu", cid).joinpath("cpu.shares").read_text().strip() == "102"
    assert node.cgroup_dir("memory", cid).joinpath("memory.limit_in_bytes").read_text().strip() == str(64 << 20)

    # the pod answers on its IP from the node
    assert node.runc_exec(cid, "cat", "/etc/hostname").stdout.strip() == "sleeper"
    from tests.integration.nodeagent.conftest import in_netns
    assert in_netns(node.netns, "/bin/busybox", "ping", "-c", "1", "-W", "5", st.pod_ip).returncode == 0

    # metrics, served inside the node's network namespace
    text = in_netns(node.netns, "/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:10255/metrics").stdout
    count = next(line for line in text.splitlines()
                 if line.startswith("kctl_nodeagent_pod_start_duration_seconds_count"))
    assert float(count.split()[-1]) >= 1
    assert "kctl_nodeagent_runtime_operation_duration_seconds" in text

    # graceful deletion: SIGTERM (sleep as PID 1 ignores it), SIGKILL after the grace period
    await api.delete(core_pb2.Pod, "sleeper", "default", grace_period=2)
    await pod_gone(api, "sleeper", node)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    await wait_for(lambda: not node.leftovers(), 20, "no leftovers", node)
