"""The service proxy's rules without a kernel: exact rendered payloads (nodeagent/proxyrules.py).

Chain names are written out literally on purpose: they are a stable interface
(a renamed chain would leave the old one behind as "stale" on every node after
an upgrade, and break anyone reading iptables-save), so a hash change must fail
these tests.  The Proxier that applies them: test_nodeagent_proxier.py.
"""
from __future__ import annotations

import pytest

from nodeagent.errors import AgentConfigError
from nodeagent.proxyrules import (ServicePortInfo, count_rules, render, service_ports, stale_chains,
                                  tcp_conntrack_deletions, udp_conntrack_deletions, with_stale_deletions)
from tests.unit.proxy_objects import NODE_IP, WEB_EXT, WEB_SEP, WEB_SVC, do_render, eps, svc, udp_port, web


FIXED_NAT_RULES = [
    "-A KCTL-MARK-MASQ -j MARK --or-mark 0x4000",
    '-A KCTL-POSTROUTING -m comment --comment "pod traffic to 172.30.0.0/24" -s 10.244.1.0/24 -d 172.30.0.0/24 '
    "-j MASQUERADE",
    "-A KCTL-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KCTL-POSTROUTING -j MARK --xor-mark 0x4000",
    '-A KCTL-POSTROUTING -m comment --comment "kctl service traffic requiring SNAT" -j MASQUERADE --random-fully',
]
NODEPORTS_JUMP = ('-A KCTL-SERVICES -m comment --comment "kctl service nodeports; must be the last rule" '
                  "-d 172.30.0.11/32 -j KCTL-NODEPORTS")


def payload(filter_rules=(), nat_chains=(), nat_rules=()):
    return "\n".join([
        "*filter", ":KCTL-SERVICES - [0:0]", ":KCTL-EXTERNAL-SERVICES - [0:0]", *filter_rules, "COMMIT",
        "*nat", ":KCTL-SERVICES - [0:0]", ":KCTL-NODEPORTS - [0:0]", ":KCTL-POSTROUTING - [0:0]",
        ":KCTL-MARK-MASQ - [0:0]", *(f":{c} - [0:0]" for c in nat_chains),
        *FIXED_NAT_RULES, *nat_rules, NODEPORTS_JUMP, "COMMIT"]) + "\n"


# ---------------------------------------------------------------------------- render

def test_clusterip_without_endpoints_is_rejected_in_filter_table():
    assert do_render(*web()) == (
        "*filter\n"
        ":KCTL-SERVICES - [0:0]\n"
        ":KCTL-EXTERNAL-SERVICES - [0:0]\n"
        '-A KCTL-SERVICES -m comment --comment "default/web:http has no endpoints" -d 10.96.0.10/32 '
        "-p tcp -m tcp --dport 80 -j REJECT\n"
        "COMMIT\n"
        "*nat\n"
        ":KCTL-SERVICES - [0:0]\n"
        ":KCTL-NODEPORTS - [0:0]\n"
        ":KCTL-POSTROUTING - [0:0]\n"
        ":KCTL-MARK-MASQ - [0:0]\n"
        "-A KCTL-MARK-MASQ -j MARK --or-mark 0x4000\n"
        '-A KCTL-POSTROUTING -m comment --comment "pod traffic to 172.30.0.0/24" -s 10.244.1.0/24 '
        "-d 172.30.0.0/24 -j MASQUERADE\n"
        "-A KCTL-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
        "-A KCTL-POSTROUTING -j MARK --xor-mark 0x4000\n"
        '-A KCTL-POSTROUTING -m comment --comment "kctl service traffic requiring SNAT" -j MASQUERADE --random-fully\n'
        '-A KCTL-SERVICES -m comment --comment "kctl service nodeports; must be the last rule" -d 172.30.0.11/32 '
        "-j KCTL-NODEPORTS\n"
        "COMMIT\n")


def test_clusterip_with_one_endpoint_jumps_unconditionally():
    sep = WEB_SEP["10.244.1.2"]
    assert do_render(*web("10.244.1.2")) == payload(nat_chains=[WEB_SVC, sep], nat_rules=[
        f'-A KCTL-SERVICES -m comment --comment "default/web:http cluster IP" -d 10.96.0.10/32 -p tcp -m tcp '
        f"--dport 80 -j {WEB_SVC}",
        f'-A {WEB_SVC} -m comment --comment "default/web:http cluster IP" ! -s 10.244.1.0/24 -d 10.96.0.10/32 '
        "-p tcp -m tcp --dport 80 -j KCTL-MARK-MASQ",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.2:8080" -j {sep}',
        f"-A {sep} -m comment --comment default/web:http -s 10.244.1.2/32 -j KCTL-MARK-MASQ",
        f"-A {sep} -m comment --comment default/web:http -p tcp -m tcp -j DNAT --to-destination 10.244.1.2:8080",
    ])


def test_clusterip_with_three_endpoints_picks_one_third_one_half_then_the_last():
    # numeric IP order: .2, .3, .10 (not the string order)
    out = do_render(*web("10.244.1.10", "10.244.1.3", "10.244.1.2"))
    s2, s3, s10 = WEB_SEP["10.244.1.2"], WEB_SEP["10.244.1.3"], WEB_SEP["10.244.1.10"]
    sep_rules = []
    for ip, chain in (("10.244.1.2", s2), ("10.244.1.3", s3), ("10.244.1.10", s10)):
        sep_rules += [f"-A {chain} -m comment --comment default/web:http -s {ip}/32 -j KCTL-MARK-MASQ",
                      f"-A {chain} -m comment --comment default/web:http -p tcp -m tcp -j DNAT "
                      f"--to-destination {ip}:8080"]
    assert out == payload(nat_chains=[WEB_SVC, s2, s3, s10], nat_rules=[
        f'-A KCTL-SERVICES -m comment --comment "default/web:http cluster IP" -d 10.96.0.10/32 -p tcp -m tcp '
        f"--dport 80 -j {WEB_SVC}",
        f'-A {WEB_SVC} -m comment --comment "default/web:http cluster IP" ! -s 10.244.1.0/24 -d 10.96.0.10/32 '
        "-p tcp -m tcp --dport 80 -j KCTL-MARK-MASQ",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.2:8080" '
        f"-m statistic --mode random --probability 0.3333333333 -j {s2}",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.3:8080" '
        f"-m statistic --mode random --probability 0.5000000000 -j {s3}",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.10:8080" -j {s10}',
        *sep_rules,
    ])


def test_probabilities_give_every_endpoint_an_equal_share():
    ips = [f"10.244.1.{i}" for i in range(2, 7)]
    out = do_render(*web(*ips))
    probs = [float(line.split("--probability ")[1].split()[0]) for line in out.splitlines()
             if "--probability" in line]
    assert probs == pytest.approx([1 / 5, 1 / 4, 1 / 3, 1 / 2])
    remaining, shares = 1.0, []
    for p in probs + [1.0]:
        shares.append(remaining * p)
        remaining -= remaining * p
    assert shares == pytest.approx([0.2] * 5)


def test_nodeport_gets_an_external_chain_that_masquerades_non_pod_sources():
    sep = WEB_SEP["10.244.1.2"]
    out = do_render(*web("10.244.1.2", node_port=30080))
    assert out == payload(nat_chains=[WEB_SVC, WEB_EXT, sep], nat_rules=[
        f'-A KCTL-SERVICES -m comment --comment "default/web:http cluster IP" -d 10.96.0.10/32 -p tcp -m tcp '
        f"--dport 80 -j {WEB_SVC}",
        f"-A KCTL-NODEPORTS -m comment --comment default/web:http -p tcp -m tcp --dport 30080 -j {WEB_EXT}",
        f'-A {WEB_EXT} -m comment --comment "masquerade traffic for default/web:http external destinations" '
        "! -s 10.244.1.0/24 -j KCTL-MARK-MASQ",
        f"-A {WEB_EXT} -j {WEB_SVC}",
        f'-A {WEB_SVC} -m comment --comment "default/web:http cluster IP" ! -s 10.244.1.0/24 -d 10.96.0.10/32 '
        "-p tcp -m tcp --dport 80 -j KCTL-MARK-MASQ",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.2:8080" -j {sep}',
        f"-A {sep} -m comment --comment default/web:http -s 10.244.1.2/32 -j KCTL-MARK-MASQ",
        f"-A {sep} -m comment --comment default/web:http -p tcp -m tcp -j DNAT --to-destination 10.244.1.2:8080",
    ])


def test_nodeport_without_endpoints_is_rejected_on_the_node_ip():
    out = do_render(*web(node_port=30080))
    assert out == payload(filter_rules=[
        '-A KCTL-SERVICES -m comment --comment "default/web:http has no endpoints" -d 10.96.0.10/32 '
        "-p tcp -m tcp --dport 80 -j REJECT",
        '-A KCTL-EXTERNAL-SERVICES -m comment --comment "default/web:http has no endpoints" -d 172.30.0.11/32 '
        "-p tcp -m tcp --dport 30080 -j REJECT",
    ])


def test_udp_and_multiple_ports_match_endpoint_ports_by_name_and_protocol():
    # a DNS-like service: the same port number on UDP and TCP; named targetPorts already resolved in Endpoints
    services = [svc("dns", "10.96.0.53", ("dns", 53, "UDP", 0), ("dns-tcp", 53, "TCP", 0), ns="kube-system")]
    endpoints = [eps("dns", ["10.244.1.2"], ("dns-tcp", 5353, "TCP"), ("dns", 5353, "UDP"), ns="kube-system")]
    udp_svc, udp_sep = "KCTL-SVC-2KKYJRIGYGQNRODB", "KCTL-SEP-ASSW64DCUMTNVPNL"
    tcp_svc, tcp_sep = "KCTL-SVC-3RVWGMRXZPMMAFG6", "KCTL-SEP-OHMWHL5NZK4HY3GP"
    rules = []
    for key, chain, sep, proto in (("kube-system/dns:dns", udp_svc, udp_sep, "udp"),
                                   ("kube-system/dns:dns-tcp", tcp_svc, tcp_sep, "tcp")):
        rules += [
            f'-A KCTL-SERVICES -m comment --comment "{key} cluster IP" -d 10.96.0.53/32 -p {proto} -m {proto} '
            f"--dport 53 -j {chain}",
            f'-A {chain} -m comment --comment "{key} cluster IP" ! -s 10.244.1.0/24 -d 10.96.0.53/32 '
            f"-p {proto} -m {proto} --dport 53 -j KCTL-MARK-MASQ",
            f'-A {chain} -m comment --comment "{key} -> 10.244.1.2:5353" -j {sep}',
            f"-A {sep} -m comment --comment {key} -s 10.244.1.2/32 -j KCTL-MARK-MASQ",
            f"-A {sep} -m comment --comment {key} -p {proto} -m {proto} -j DNAT --to-destination 10.244.1.2:5353",
        ]
    assert do_render(services, endpoints) == payload(nat_chains=[udp_svc, udp_sep, tcp_svc, tcp_sep],
                                                     nat_rules=rules)


def test_endpoint_port_of_another_protocol_does_not_count():
    services = [svc("dns", "10.96.0.53", ("dns", 53, "UDP", 0))]
    endpoints = [eps("dns", ["10.244.1.2"], ("dns", 5353, "TCP"))]
    assert '"default/dns:dns has no endpoints"' in do_render(services, endpoints)


def test_headless_externalname_and_ipv6_services_are_ignored():
    empty = do_render([], [])
    services = [svc("headless", "None", ("http", 80, "TCP", 0)), svc("unset", "", ("http", 80, "TCP", 0)),
                svc("ext", "", ("http", 80, "TCP", 0), type_="ExternalName"),
                svc("v6", "fd00::10", ("http", 80, "TCP", 0))]
    endpoints = [eps(n, ["10.244.1.2"], ("http", 8080, "TCP")) for n in ("headless", "unset", "ext", "v6")]
    assert do_render(services, endpoints) == empty


def test_not_ready_addresses_get_no_traffic():
    services, _ = web()
    endpoints = [eps("web", ["10.244.1.2"], ("http", 8080, "TCP"), not_ready=["10.244.1.3"])]
    out = do_render(services, endpoints)
    assert "10.244.1.2:8080" in out and "10.244.1.3" not in out


def test_unnamed_port_key_and_without_pod_cidr_nodeports_always_masquerade():
    services = [svc("np", "10.96.0.20", ("", 80, "TCP", 30080))]
    endpoints = [eps("np", ["10.244.1.2"], ("", 8080, "TCP"))]
    out = render(services, endpoints, node_ip=None)
    ext, svc_chain = "KCTL-EXT-LDATH6LIB7VCFHLW", "KCTL-SVC-LDATH6LIB7VCFHLW"
    assert f'-A {ext} -m comment --comment "masquerade traffic for default/np external destinations" ' \
           f"-j KCTL-MARK-MASQ\n" in out
    assert f"{svc_chain} -m comment --comment \"default/np cluster IP\" ! -s" not in out  # no pod CIDR: no rule
    assert "pod traffic to" not in out
    # without a node IP, NodePorts answer on every local address except loopback (no route_localnet)
    assert out.endswith('-A KCTL-SERVICES -m comment --comment "kctl service nodeports; must be the last rule" '
                        "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KCTL-NODEPORTS\nCOMMIT\n")


def test_bad_arguments_are_refused():
    with pytest.raises(AgentConfigError, match="overlaps"):
        render([], [], node_ip=NODE_IP, pod_cidr="10.244.1.0/24", masquerade_cidr="10.0.0.0/8")
    with pytest.raises(AgentConfigError, match="node IP"):
        render([], [], node_ip="node-1")


def test_output_is_deterministic_whatever_the_input_order():
    a = [svc(f"s{i}", f"10.96.0.{i}", ("http", 80, "TCP", 30000 + i)) for i in range(1, 6)]
    e = [eps(f"s{i}", [f"10.244.1.{j}" for j in range(2, 2 + i)], ("http", 8080, "TCP")) for i in range(1, 6)]
    e_shuffled = [eps(f"s{i}", [f"10.244.1.{j}" for j in reversed(range(2, 2 + i))], ("http", 8080, "TCP"))
                  for i in range(1, 6)]
    assert do_render(a, e) == do_render(list(reversed(a)), list(reversed(e_shuffled)))


def test_chain_names_are_stable_short_and_distinct():
    info = ServicePortInfo("default", "web", "http", "tcp", "10.96.0.10", 80, 0, ())
    assert (info.svc_chain, info.ext_chain) == (WEB_SVC, WEB_EXT)
    assert info.sep_chain("10.244.1.2", 8080) == WEB_SEP["10.244.1.2"]
    others = {ServicePortInfo("other", "web", "http", "tcp", "", 0, 0, ()).svc_chain,
              ServicePortInfo("default", "web", "http", "udp", "", 0, 0, ()).svc_chain,
              ServicePortInfo("default", "web", "https", "tcp", "", 0, 0, ()).svc_chain}
    assert WEB_SVC not in others and len(others) == 3
    assert all(len(c) <= 28 for c in [WEB_SVC, WEB_EXT, *WEB_SEP.values()])
    # chain names depend on identity, not on the cluster IP or the other endpoints
    [moved] = service_ports(*web("10.244.1.2", "10.244.1.3"))
    assert moved.svc_chain == WEB_SVC and moved.sep_chain("10.244.1.3", 8080) == WEB_SEP["10.244.1.3"]


def test_stale_chain_deletion_list_and_payload():
    now = do_render(*web("10.244.1.2"))
    existing = {"KCTL-SERVICES", "KCTL-NODEPORTS", "KCTL-POSTROUTING", "KCTL-MARK-MASQ", WEB_SVC,
                WEB_SEP["10.244.1.2"], WEB_SEP["10.244.1.3"], WEB_EXT, "KCTL-SVC-GONEGONEGONEGONE", "DOCKER"}
    stale = stale_chains(now, existing)
    assert stale == ["KCTL-EXT-CDGGSHYLG3RE2FKL", "KCTL-SEP-2AZ33KU3V5PGPQZH", "KCTL-SVC-GONEGONEGONEGONE"]
    full = with_stale_deletions(now, stale)
    lines = full.splitlines()
    nat = lines.index("*nat")
    decl = lines.index(f":{WEB_SEP['10.244.1.2']} - [0:0]")
    assert lines[decl + 1:decl + 4] == [f":{c} - [0:0]" for c in stale]
    assert lines[-4:] == [f"-X {c}" for c in stale] + ["COMMIT"]
    assert lines[:nat] == now.splitlines()[:nat]           # the filter table is untouched
    assert with_stale_deletions(now, []) == now


def test_count_rules():
    assert count_rules(do_render(*web("10.244.1.2", "10.244.1.3"))) == {"filter": 0, "nat": 5 + 1 + 1 + 2 + 4 + 1}


def test_udp_conntrack_deletions():
    k = "kube-system/dns:dns/udp"
    # removed endpoints: entries DNATed to them, on the VIP and the NodePort
    assert udp_conntrack_deletions({k: udp_port(["10.244.1.2", "10.244.1.3"], 30053)},
                                   [udp_port(["10.244.1.2"], 30053)]) == [
        ("-p", "udp", "--orig-dst", "10.96.0.53", "--dst-nat", "10.244.1.3"),
        ("-p", "udp", "--orig-port-dst", "30053", "--dst-nat", "10.244.1.3")]
    # the service deleted: all its endpoints count as removed
    assert udp_conntrack_deletions({k: udp_port(["10.244.1.2"])}, []) == [
        ("-p", "udp", "--orig-dst", "10.96.0.53", "--dst-nat", "10.244.1.2")]
    # no endpoints -> some (or a new service): everything on the VIP / NodePort goes
    expected = [("-p", "udp", "--orig-dst", "10.96.0.53", "--orig-port-dst", "53"),
                ("-p", "udp", "--orig-port-dst", "30053")]
    assert udp_conntrack_deletions({k: udp_port([], 30053)}, [udp_port(["10.244.1.2"], 30053)]) == expected
    assert udp_conntrack_deletions({}, [udp_port(["10.244.1.2"], 30053)]) == expected
    # unchanged, added endpoints, TCP: nothing
    assert udp_conntrack_deletions({k: udp_port(["10.244.1.2"])}, [udp_port(["10.244.1.2", "10.244.1.3"])]) == []
    tcp = ServicePortInfo("default", "web", "http", "tcp", "10.96.0.10", 80, 0, ())
    assert udp_conntrack_deletions({}, [tcp]) == []


def test_tcp_conntrack_deletions_take_only_unanswered_connections_to_removed_endpoints():
    def tcp(*ips, local=()):
        return ServicePortInfo("default", "web", "http", "tcp", "10.96.0.10", 80, 30080,
                               tuple((ip, 8080) for ip in ips), local_endpoints=tuple((ip, 8080) for ip in local))
    k = "default/web:http/tcp"
    assert tcp_conntrack_deletions({k: tcp("10.244.1.2", "10.244.1.3")}, [tcp("10.244.1.2")]) == [
        ("-p", "tcp", "--state", "SYN_SENT", "--dst-nat", "10.244.1.3", "--reply-port-src", "8080")]
    assert tcp_conntrack_deletions({k: tcp("10.244.1.2")}, []) == [       # the service went
        ("-p", "tcp", "--state", "SYN_SENT", "--dst-nat", "10.244.1.2", "--reply-port-src", "8080")]
    # unchanged, added, still used as a (terminating) local fallback, new service, UDP: nothing
    assert tcp_conntrack_deletions({k: tcp("10.244.1.2")}, [tcp("10.244.1.2", "10.244.1.3")]) == []
    assert tcp_conntrack_deletions({k: tcp("10.244.1.2")}, [tcp(local=["10.244.1.2"])]) == []
    assert tcp_conntrack_deletions({}, [tcp("10.244.1.2")]) == []
    assert tcp_conntrack_deletions({"kube-system/dns:dns/udp": udp_port(["10.244.1.2"])}, []) == []


def test_node_ports_count_only_for_nodeport_and_loadbalancer_services():
    for type_, expected in (("ClusterIP", 0), ("NodePort", 30080), ("LoadBalancer", 30080)):
        s = svc("web", "10.96.0.10", ("http", 80, "TCP", 30080), type_=type_)
        [info] = service_ports([s], [])
        assert info.node_port == expected, type_


def test_client_ip_session_affinity_checks_recent_clients_before_the_random_pick():
    services, endpoints = web("10.244.1.2", "10.244.1.3")
    services[0].spec.session_affinity = "ClientIP"
    s2, s3 = WEB_SEP["10.244.1.2"], WEB_SEP["10.244.1.3"]
    out = do_render(services, endpoints)
    assert [line for line in out.splitlines() if line.startswith((f"-A {WEB_SVC} ", f"-A {s2} "))] == [
        f'-A {WEB_SVC} -m comment --comment "default/web:http cluster IP" ! -s 10.244.1.0/24 -d 10.96.0.10/32 '
        "-p tcp -m tcp --dport 80 -j KCTL-MARK-MASQ",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.2:8080" '
        f"-m recent --name {s2} --rcheck --seconds 10800 --reap -j {s2}",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.3:8080" '
        f"-m recent --name {s3} --rcheck --seconds 10800 --reap -j {s3}",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.2:8080" '
        f"-m statistic --mode random --probability 0.5000000000 -j {s2}",
        f'-A {WEB_SVC} -m comment --comment "default/web:http -> 10.244.1.3:8080" -j {s3}',
        f"-A {s2} -m comment --comment default/web:http -s 10.244.1.2/32 -j KCTL-MARK-MASQ",
        f"-A {s2} -m comment --comment default/web:http -m recent --name {s2} --set -p tcp -m tcp "
        "-j DNAT --to-destination 10.244.1.2:8080",
    ]
