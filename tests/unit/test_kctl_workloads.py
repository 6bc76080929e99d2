"""kctl verbs for the workload kinds on the FakeClient: drain honouring a
PodDisruptionBudget (kubectl's retry on 429)."""
from __future__ import annotations

import pytest

from kubectlish import nodes
from tests.unit.test_kctl_commands import fake, kctl, make, pod  # noqa: F401  (fixture)


def pdb(allowed: int) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web-pdb", "namespace": "default"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": 2 + allowed,
                       "desiredHealthy": 2, "expectedPods": 2 + allowed}}


def ready_pod(name: str) -> dict:
    m = pod(name, owner="ReplicaSet")
    m["metadata"]["labels"] = {"app": "web"}
    m["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return m


@pytest.fixture
def covered(fake, monkeypatch):  # noqa: F811
    monkeypatch.setattr(nodes, "EVICTION_RETRY", 0.1)
    make(fake, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    make(fake, ready_pod("web-1"))
    return fake


def test_drain_retries_an_eviction_the_budget_refuses(covered):
    make(covered, pdb(allowed=0))
    code, out, err = kctl("drain", "n1", "--grace-period", "0", "--timeout", "0.5")
    assert code == 1
    assert ('error when evicting pods/"web-1" -n "default" (will retry after 0.1s): '
            "Cannot evict pod as it would violate the pod's disruption budget.") in err
    assert err.count("error when evicting") >= 2
    assert [p.metadata.name for p in covered.objects("pods")] == ["web-1"]


def test_drain_spends_the_budget_when_it_allows(covered):
    make(covered, pdb(allowed=1))
    code, out, err = kctl("drain", "n1", "--grace-period", "0")
    assert code == 0, err
    assert "pod/web-1 evicted" in out and not covered.objects("pods")
    st = covered.objects("poddisruptionbudgets")[0].status
    assert st.disruptions_allowed == 0 and "web-1" in st.disrupted_pods
