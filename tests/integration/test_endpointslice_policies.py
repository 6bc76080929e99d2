"""The Service fields of the proxy's traffic policies against a real apiserver: a LoadBalancer service
with externalTrafficPolicy Local gets a healthCheckNodePort from the node port range (kept across
updates, released when no longer needed), sessionAffinityConfig is defaulted and validated."""
from __future__ import annotations

import pytest

from machinery import codec, errors


def lb(name="lb", etp="Local", **spec):
    return codec.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": etp, "selector": {"app": name},
                                     "ports": [{"port": 80}], **spec}})


async def test_health_check_node_port_is_allocated_kept_and_released(client):
    svc = await client.create(lb())
    hc = svc.spec.health_check_node_port
    assert 30000 <= hc <= 32767 and hc != svc.spec.ports[0].node_port
    svc.spec.ClearField("health_check_node_port")          # an update without it keeps it
    svc.metadata.labels["x"] = "y"
    svc = await client.update(svc)
    assert svc.spec.health_check_node_port == hc
    svc.spec.external_traffic_policy = "Cluster"            # no longer needed: wiped and released
    svc = await client.update(svc)
    assert svc.spec.health_check_node_port == 0
    other = await client.create(lb("other", ports=[{"port": 80, "nodePort": hc}]))
    assert other.spec.ports[0].node_port == hc
    with pytest.raises(errors.Invalid, match="spec.healthCheckNodePort: Invalid value: .*already allocated"):
        await client.create(lb("third", healthCheckNodePort=hc))
    with pytest.raises(errors.Invalid, match="spec.healthCheckNodePort: Forbidden: may only be set when"):
        await client.create(lb("fourth", etp="Cluster", healthCheckNodePort=31999))


async def test_session_affinity_config_is_defaulted_and_validated(client):
    svc = await client.create(lb("aff", etp="Cluster", sessionAffinity="ClientIP"))
    assert svc.spec.session_affinity_config.client_ip.timeout_seconds == 10800
    with pytest.raises(errors.Invalid, match="timeoutSeconds: Invalid value: 0: must be greater than 0"):
        await client.create(lb("aff2", etp="Cluster", sessionAffinity="ClientIP",
                               sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}))
