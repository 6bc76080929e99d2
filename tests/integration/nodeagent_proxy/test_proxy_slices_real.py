"""The proxy fed by EndpointSlices on real iptables (the mini node of conftest.py): terminating
endpoints serve only when nothing is ready, externalTrafficPolicy Local keeps the client's source
IP, internalTrafficPolicy Local drops without local endpoints, and partial syncs after changes."""
from __future__ import annotations

import pytest

from nodeagent.iptables import IptablesRunner
from nodeagent.proxy import Proxier
from tests.unit.proxy_slices import endpoint_slice, ready, service, terminating

from .conftest import NODE_IP, NODE_SUBNET, OUT_IP, POD_IPS, POD_NET, needs_root
from .test_proxy_real import NAMES, WEB_VIP, names

pytestmark = [pytest.mark.root, needs_root]
NODE = "itest"


@pytest.fixture
def proxier(mini_node):
    return Proxier(IptablesRunner(netns=mini_node.node), node_ip=NODE_IP, pod_cidr=POD_NET,
                   masquerade_cidr=NODE_SUBNET, node_name=NODE)


def web(*eps, node_port=30080, **kw):
    return ([service("web", WEB_VIP, (("http", 80, "TCP", node_port),), **kw)],
            [endpoint_slice("web", eps)])


async def test_terminating_endpoints_serve_only_when_none_is_ready_and_syncs_are_partial(mini_node, proxier):
    await proxier.sync(*web(*(ready(ip, NODE) for ip in POD_IPS)))
    assert proxier.last_sync_kind == "full"
    assert names(mini_node.connect(mini_node.pods[0], WEB_VIP, 80, count=60)) == NAMES
    await proxier.sync(*web(ready(POD_IPS[0], NODE), terminating(POD_IPS[1], node=NODE),
                            terminating(POD_IPS[2], node=NODE)))
    assert proxier.last_sync_kind == "partial"
    assert names(mini_node.connect(mini_node.pods[1], WEB_VIP, 80, count=30)) == {"pod0"}
    await proxier.sync(*web(terminating(POD_IPS[1], node=NODE), terminating(POD_IPS[2], serving=False, node=NODE)))
    assert names(mini_node.connect(mini_node.pods[0], WEB_VIP, 80, count=30)) == {"pod1"}
    assert names(mini_node.connect(mini_node.out, NODE_IP, 30080, count=10)) == {"pod1"}


async def test_external_traffic_policy_local_keeps_the_client_source(mini_node, proxier):
    await proxier.sync(*web(*(ready(ip, NODE) for ip in POD_IPS), etp="Local"))
    replies = mini_node.connect(mini_node.out, NODE_IP, 30080, count=30)
    assert names(replies) == NAMES and {r.split()[1] for r in replies} == {OUT_IP}
    # no local endpoint: the NodePort drops; the ClusterIP (cluster policy) still reaches the remote one
    await proxier.sync(*web(ready(POD_IPS[0], "elsewhere"), etp="Local"))
    assert mini_node.connect(mini_node.out, NODE_IP, 30080, timeout=1.0) == ["ERR:timeout"]
    assert names(mini_node.connect(mini_node.pods[1], WEB_VIP, 80, count=5)) == {"pod0"}


async def test_internal_traffic_policy_local_uses_only_local_endpoints(mini_node, proxier):
    await proxier.sync(*web(ready(POD_IPS[0], NODE), ready(POD_IPS[1], "elsewhere"), itp="Local", node_port=0))
    assert names(mini_node.connect(mini_node.pods[2], WEB_VIP, 80, count=30)) == {"pod0"}
    await proxier.sync(*web(ready(POD_IPS[1], "elsewhere"), itp="Local", node_port=0))
    assert mini_node.connect(mini_node.pods[2], WEB_VIP, 80, timeout=1.0) == ["ERR:timeout"]
