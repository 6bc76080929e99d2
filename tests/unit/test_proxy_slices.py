"""The proxy reading EndpointSlices (nodeagent/proxymodel.py, proxyrules.py): ready endpoints serve,
terminating-but-serving ones only when none is ready, the Local traffic policies, the session
affinity timeout; and the validation of the Service fields they use."""
from __future__ import annotations

from machinery import defaults, validation
from nodeagent.proxymodel import service_ports
from nodeagent.proxyrules import render
from tests.unit.proxy_objects import MASQ_CIDR, NODE_IP, POD_CIDR
from tests.unit.proxy_slices import endpoint_slice, ready, service, terminating


def eps_of(services, slices, node="n1"):
    return [(sp.endpoints, sp.local_endpoints) for sp in service_ports(services, slices, node)]


def nat(services, slices, node="n1") -> list[str]:
    out = render(services, slices, node_ip=NODE_IP, pod_cidr=POD_CIDR, masquerade_cidr=MASQ_CIDR, node_name=node)
    return out.splitlines()


def test_ready_endpoints_serve_and_terminating_ones_only_when_none_is_ready():
    s = [service("web", "10.96.0.10")]
    both = [endpoint_slice("web", [ready("10.244.1.2"), terminating("10.244.1.3")])]
    assert eps_of(s, both) == [((("10.244.1.2", 8080),), (("10.244.1.2", 8080),))]
    only_terminating = [endpoint_slice("web", [terminating("10.244.1.3"), terminating("10.244.1.4", serving=False),
                                               ("10.244.1.5", False, False, False, "n1")])]
    assert eps_of(s, only_terminating)[0][0] == (("10.244.1.3", 8080),)
    # slices of one service are merged; other services' slices and unlabelled ones are not used
    two = [endpoint_slice("web", [ready("10.244.1.2")], name="web-1"),
           endpoint_slice("web", [ready("10.244.2.2", node="n2")], name="web-2"),
           endpoint_slice("other", [ready("10.244.1.9")])]
    assert eps_of(s, two) == [((("10.244.1.2", 8080), ("10.244.2.2", 8080)), (("10.244.1.2", 8080),))]


def test_a_pod_being_deleted_leaves_the_rules_at_once():
    s = [service("web", "10.96.0.10")]
    before = nat(s, [endpoint_slice("web", [ready("10.244.1.2"), ready("10.244.1.3")])])
    after = nat(s, [endpoint_slice("web", [ready("10.244.1.2"), terminating("10.244.1.3")])])
    assert any("10.244.1.3:8080" in ln for ln in before)
    assert not any("10.244.1.3" in ln for ln in after)


def test_internal_traffic_policy_local_uses_local_endpoints_or_drops():
    s = [service("web", "10.96.0.10", itp="Local")]
    slices = [endpoint_slice("web", [ready("10.244.1.2"), ready("10.244.2.2", node="n2")])]
    lines = nat(s, slices)
    svl = next(ln.split()[-1] for ln in lines if "cluster IP" in ln and ln.startswith("-A KCTL-SERVICES"))
    assert svl.startswith("KCTL-SVL-")
    assert [ln.split()[-1] for ln in lines if ln.startswith(f"-A {svl}") and "->" in ln] == \
        [next(ln.split()[1] for ln in lines if "DNAT --to-destination 10.244.1.2:8080" in ln)]
    assert not any("10.244.2.2" in ln for ln in lines)
    remote_only = nat(s, [endpoint_slice("web", [ready("10.244.2.2", node="n2")])])
    assert '-A KCTL-SERVICES -m comment --comment "default/web:http has no local endpoints" -d 10.96.0.10/32 ' \
           "-p tcp -m tcp --dport 80 -j DROP" in remote_only


def test_external_traffic_policy_local_preserves_the_source_and_keeps_pods_on_the_cluster_path():
    s = [service("web", "10.96.0.10", (("http", 80, "TCP", 30080),), etp="Local")]
    lines = nat(s, [endpoint_slice("web", [ready("10.244.1.2"), ready("10.244.2.2", node="n2")])])
    ext = next(ln.split()[-1] for ln in lines if ln.startswith("-A KCTL-NODEPORTS"))
    svc = next(ln.split()[-1] for ln in lines if "cluster IP" in ln and ln.startswith("-A KCTL-SERVICES"))
    svl = svc.replace("KCTL-SVC-", "KCTL-SVL-")
    assert [ln for ln in lines if ln.startswith(f"-A {ext} ")] == [
        f'-A {ext} -m comment --comment "pod traffic for default/web:http external destinations" '
        f"-s 10.244.1.0/24 -j {svc}",
        f'-A {ext} -m comment --comment "masquerade LOCAL traffic for default/web:http external destinations" '
        "-m addrtype --src-type LOCAL -j KCTL-MARK-MASQ",
        f'-A {ext} -m comment --comment "route LOCAL traffic for default/web:http external destinations" '
        f"-m addrtype --src-type LOCAL -j {svc}",
        f"-A {ext} -j {svl}",
    ]
    svl_rules = [ln for ln in lines if ln.startswith(f"-A {svl} ")]
    assert len(svl_rules) == 1 and "MARK-MASQ" not in svl_rules[0]     # no masquerade: the client IP stays
    remote_only = nat(s, [endpoint_slice("web", [ready("10.244.2.2", node="n2")])])
    assert any(ln.endswith("--dport 30080 -j DROP") and "has no local endpoints" in ln for ln in remote_only)


def test_session_affinity_uses_the_configured_timeout():
    s = [service("web", "10.96.0.10", affinity=60)]
    lines = nat(s, [endpoint_slice("web", [ready("10.244.1.2"), ready("10.244.1.3")])])
    assert sum("--rcheck --seconds 60 --reap" in ln for ln in lines) == 2
    assert sum("-m recent --name KCTL-SEP-" in ln and "--set" in ln for ln in lines) == 2


def _svc(**kw):
    s = service("web", "10.96.0.10", **kw)
    defaults.apply_defaults(s)
    return s


def test_service_affinity_config_and_health_check_port_validation():
    s = _svc(affinity=0)
    assert s.spec.session_affinity_config.client_ip.timeout_seconds == 10800      # defaulted
    assert validation.validate(s) == []
    s.spec.session_affinity_config.client_ip.timeout_seconds = 86401
    assert [str(e) for e in validation.validate(s)] == [
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: "
        "must be greater than 0 and less than 86400"]
    s = _svc()
    s.spec.session_affinity_config.client_ip.timeout_seconds = 5
    assert [str(e) for e in validation.validate(s)] == [
        "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"]
    s = _svc(ports=(("http", 80, "TCP", 30080),), etp="Local")
    s.spec.health_check_node_port = 31000
    assert [str(e) for e in validation.validate(s)] == [
        "spec.healthCheckNodePort: Forbidden: may only be set when `type` is 'LoadBalancer' and "
        "`externalTrafficPolicy` is 'Local'"]
    s.spec.type = "LoadBalancer"
    assert validation.validate(s) == []
