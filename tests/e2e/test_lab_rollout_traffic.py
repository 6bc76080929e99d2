"""Zero-downtime rolling updates on a real lab, without any preStop hook (bench/rollout_traffic.py).

Clients inside the lab (a pod's netns → the ClusterIP; node1's netns → node2's
NodePort) send HTTP requests on new connections while a 30-replica Deployment
of a plain web server (busybox httpd, 100m CPU, readiness timeout 3 s:
bench/rollout_traffic.py) rolls (maxSurge 25%, maxUnavailable 25%) until each
has sent at least 5,000 during rollouts: not one may fail.  This holds
because a deleted pod leaves the ready set of its EndpointSlices at once and
its containers get SIGTERM only after every node's proxy applied that and
the connections it had accepted are done (nodeagent/drain.py), and a proxy
that takes an endpoint out deletes the conntrack entries of connections still
opening to it (a SYN the pod dropped is retransmitted along them).  Also: `kctl
get endpointslices` shows the Service's slices with kubectl's columns.

On by default (about a minute); ``KCTL_ROLLOUT_TRAFFIC_E2E=0`` turns it off.
On failure it prints what explains lost requests (SIGNS below: drains that
gave up, slow proxy syncs, event loop stalls, failing probes, NotReady nodes).

Traffic goes only to addresses inside the lab's namespaces.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from bench.rollout_traffic import NAME, measure, report
from tests.e2e.lab_fixtures import lab, missing_tools  # noqa: F401

LAB_TAG = "rt"
# What explains lost requests, from the agents' logs and the events: a drain that gave up
# (nodeagent/drain.py: "...; stopping it anyway", a warning), slow or failed proxy syncs, lease
# failures, event loop stalls (all warnings), readiness probes failing, nodes NotReady.
SIGNS = (" W ", " E ", "stopping it", "still ready", "Unhealthy", "NotReady")
REQUESTS = 5000

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (lab)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]


def diagnostics(lab) -> str:
    lines = []
    for node in ("node1", "node2", "node3"):
        log = lab.lab("logs", f"agent-{node}", "--tail", "-1", check=False).stdout
        lines += [f"{node}: {line}" for line in log.splitlines() if any(s in line for s in SIGNS)]
    events = lab.kctl("get", "events", "-A", check=False).stdout
    lines += [line for line in events.splitlines() if any(s in line for s in SIGNS)]
    with open("/proc/loadavg") as f:
        lines.append(f"load average: {f.read().strip()}")
    return "\n".join(lines[-80:])


@pytest.mark.skipif(os.environ.get("KCTL_ROLLOUT_TRAFFIC_E2E") == "0",
                    reason="turned off with KCTL_ROLLOUT_TRAFFIC_E2E=0")
def test_rolling_30_replicas_loses_no_request_through_clusterip_and_nodeport(lab):
    r = asyncio.run(measure(lab.info["apiserver"], lab.name, replicas=30, min_requests=REQUESTS))
    print()
    report(r)
    print(diagnostics(lab))
    for k in ("clusterip", "nodeport"):
        assert r[k]["during"] >= REQUESTS, (k, r[k])
        assert r[k]["failed"] == 0, (k, r[k], f"min ready {r['min_ready']}", diagnostics(lab))
    out = lab.kctl("get", "endpointslices", "-l", f"kubernetes.io/service-name={NAME}").stdout.splitlines()
    assert out[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert all(line.split()[1:3] == ["IPv4", "8080"] for line in out[1:]) and len(out) > 1
