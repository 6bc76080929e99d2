"""A pod's resolv.conf, /etc/hosts and /etc/hostname (nodeagent/podfiles.py),
against the kubelet's own test cases (pkg/kubelet/network/dns/dns_test.go,
kubelet_pods_test.go TestManagedHostsFileContent) where they exist."""
import pytest

from machinery.pb import core_pb2
from nodeagent import podfiles
from nodeagent.errors import NetworkError
from nodeagent.podfiles import DnsConfig, DnsConfigurer, fit_limits, merge_options, parse_resolv_conf

HEADER = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
          "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


def pod(name="test-pod", ns="testNS", policy="", host_network=False, dns_config=None, **spec):
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, ns
    p.spec.dns_policy, p.spec.host_network = policy, host_network
    p.spec.node_name = "node1"
    for k, v in spec.items():
        if k == "host_aliases":
            for ip, names in v:
                p.spec.host_aliases.add(ip=ip, hostnames=names)
        else:
            setattr(p.spec, k, v)
    if dns_config is not None:
        p.spec.dns_config.SetInParent()
        p.spec.dns_config.nameservers.extend(dns_config.get("nameservers", []))
        p.spec.dns_config.searches.extend(dns_config.get("searches", []))
        for o in dns_config.get("options", []):
            opt = p.spec.dns_config.options.add(name=o[0])
            if len(o) > 1:
                opt.value = o[1]
    return p


# ------------------------------------------------------------ TestParseResolvConf

@pytest.mark.parametrize("data, servers, searches, options", [
    ("", [], [], []), (" ", [], [], []), ("\n", [], [], []), ("\t\n\t", [], [], []),
    ("#comment\n", [], [], []), (" #comment\n", [], [], []), ("#comment\n#comment", [], [], []),
    ("#comment\nnameserver 1.2.3.4\nsearch", ["1.2.3.4"], [], []),
    ("nameserver 1.2.3.4", ["1.2.3.4"], [], []), (" nameserver 1.2.3.4", ["1.2.3.4"], [], []),
    ("\tnameserver 1.2.3.4", ["1.2.3.4"], [], []), ("nameserver\t1.2.3.4", ["1.2.3.4"], [], []),
    ("nameserver \t 1.2.3.4", ["1.2.3.4"], [], []),
    ("nameserver 1.2.3.4\nnameserver 5.6.7.8", ["1.2.3.4", "5.6.7.8"], [], []),
    ("nameserver 1.2.3.4 #comment", ["1.2.3.4"], [], []),
    ("search ", [], [], []), ("search foo", [], ["foo"], []), ("search foo bar", [], ["foo", "bar"], []),
    ("search foo. bar", [], ["foo", "bar"], []), ("search foo bar bat\n", [], ["foo", "bar", "bat"], []),
    ("search foo\nsearch bar", [], ["bar"], []),
    ("nameserver 1.2.3.4\nsearch foo bar", ["1.2.3.4"], ["foo", "bar"], []),
    ("nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar", ["1.2.3.4", "5.6.7.8"], ["bar"], []),
    ("#comment\nnameserver 1.2.3.4\n#comment\nsearch foo\ncomment", ["1.2.3.4"], ["foo"], []),
    ("options ", [], [], []), ("options ndots:5 attempts:2", [], [], ["ndots:5", "attempts:2"]),
    ("options ndots:1\noptions ndots:5 attempts:3", [], [], ["ndots:5", "attempts:3"]),
    ("nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar\noptions ndots:5 attempts:4",
     ["1.2.3.4", "5.6.7.8"], ["bar"], ["ndots:5", "attempts:4"]),
])
def test_parse_resolv_conf(data, servers, searches, options):
    assert parse_resolv_conf(data) == DnsConfig(servers, searches, options)


# ------------------------------------------------------------ limits

LIST_2048 = ["A" * 128] + ["A" * 127] * 15          # 2048 = 128 + 127*15 + 15 spaces


@pytest.mark.parametrize("searches, applied, warned", [
    (["testNS.svc.TEST", "svc.TEST", "TEST"], ["testNS.svc.TEST", "svc.TEST", "TEST"], False),
    (["testNS.svc.TEST", "svc.TEST", "TEST", "AAA", "BBB"], ["testNS.svc.TEST", "svc.TEST", "TEST", "AAA", "BBB"], False),
    (LIST_2048, LIST_2048, False),
    (LIST_2048 + ["B"], LIST_2048, True),
    (["testNS.svc.TEST", "svc.TEST", "TEST", "AAA", "B" * 256, "BBB"],
     ["testNS.svc.TEST", "svc.TEST", "TEST", "AAA", "BBB"], True),
    ([str(i) for i in range(1, 33)], [str(i) for i in range(1, 33)], False),
    ([str(i) for i in range(1, 34)], [str(i) for i in range(1, 33)], True),
])
def test_search_fits_limits(searches, applied, warned):
    cfg, warnings = fit_limits(DnsConfig([], list(searches), []))
    assert cfg.searches == applied
    assert warnings == ([f"Search Line limits were exceeded, some search paths have been omitted, "
                         f"the applied search line is: {' '.join(applied)}"] if warned else [])


@pytest.mark.parametrize("servers, applied", [
    (["127.0.0.1"], ["127.0.0.1"]),
    (["127.0.0.1", "10.0.0.10", "8.8.8.8"], ["127.0.0.1", "10.0.0.10", "8.8.8.8"]),
    (["127.0.0.1", "10.0.0.10", "8.8.8.8", "1.2.3.4"], ["127.0.0.1", "10.0.0.10", "8.8.8.8"]),
])
def test_nameservers_fit_limits(servers, applied):
    cfg, warnings = fit_limits(DnsConfig(list(servers), [], []))
    assert cfg.servers == applied and bool(warnings) == (len(servers) > 3)


@pytest.mark.parametrize("existing, pod_options, expected", [
    (["ndots:5", "debug"], [], ["ndots:5", "debug"]),
    (["ndots:5", "debug"], [("single-request",), ("attempts", "3")], ["ndots:5", "debug", "single-request", "attempts:3"]),
    (["ndots:5", "debug"], [("ndots", "3"), ("debug",), ("single-request",), ("attempts", "3")],
     ["ndots:3", "debug", "single-request", "attempts:3"]),
])
def test_merge_options(existing, pod_options, expected):
    opts = pod(dns_config={"options": pod_options}).spec.dns_config.options
    assert merge_options(existing, opts) == expected


# ------------------------------------------------------------ TestGetPodDNSType

@pytest.mark.parametrize("policy, host_network, expected", [
    ("ClusterFirst", False, "cluster"), ("ClusterFirstWithHostNet", True, "cluster"),
    ("ClusterFirstWithHostNet", False, "cluster"), ("Default", False, "host"), ("Default", True, "host"),
    ("ClusterFirst", True, "host"), ("None", False, "none"), ("", False, "cluster"),
])
def test_dns_type(policy, host_network, expected):
    assert podfiles.dns_type(pod(policy=policy, host_network=host_network)) == expected


# ------------------------------------------------------------ TestGetPodDNS

def test_pod_dns_without_a_node_resolv_conf():
    conf = DnsConfigurer(["203.0.113.1"], "kubernetes.io", resolver_config="")
    pods = [pod("pod0", ns="", policy="ClusterFirstWithHostNet", host_network=True),
            pod("pod1", ns="", policy="ClusterFirst", host_network=True),
            pod("pod2", ns="", policy="ClusterFirst"),
            pod("pod3", ns="", policy="Default", host_network=True)]
    got = [conf.pod_dns(p)[0] for p in pods]
    assert got[0].servers == ["203.0.113.1"] and got[0].searches[0] == ".svc.kubernetes.io"
    assert (got[1].servers, got[1].searches) == (["127.0.0.1"], ["."])
    assert got[2].servers == ["203.0.113.1"] and got[2].searches[0] == ".svc.kubernetes.io"
    assert (got[3].servers, got[3].searches) == (["127.0.0.1"], ["."])


@pytest.fixture
def node_resolv(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 8.8.8.8\nsearch host.domain\n")
    return DnsConfigurer(["10.0.0.10"], "kubernetes.io", resolver_config=str(path))


CUSTOM = {"nameservers": ["10.0.0.11"], "searches": ["my.domain"], "options": [("ndots", "3"), ("debug",)]}


@pytest.mark.parametrize("policy, host_network, dns_config, expected", [
    ("None", False, None, DnsConfig()),
    ("None", False, {"nameservers": ["203.0.113.1"], "searches": ["my.domain", "second.domain"],
                     "options": [("ndots", "3"), ("debug",)]},
     DnsConfig(["203.0.113.1"], ["my.domain", "second.domain"], ["ndots:3", "debug"])),
    ("ClusterFirst", False, CUSTOM,
     DnsConfig(["10.0.0.10", "10.0.0.11"], ["testNS.svc.kubernetes.io", "svc.kubernetes.io", "kubernetes.io",
                                            "host.domain", "my.domain"], ["ndots:3", "debug"])),
    ("ClusterFirstWithHostNet", True, CUSTOM,
     DnsConfig(["10.0.0.10", "10.0.0.11"], ["testNS.svc.kubernetes.io", "svc.kubernetes.io", "kubernetes.io",
                                            "host.domain", "my.domain"], ["ndots:3", "debug"])),
    ("Default", False, CUSTOM, DnsConfig(["8.8.8.8", "10.0.0.11"], ["host.domain", "my.domain"], ["ndots:3", "debug"])),
])
def test_pod_dns_custom(node_resolv, policy, host_network, dns_config, expected):
    cfg, events = node_resolv.pod_dns(pod(policy=policy, host_network=host_network, dns_config=dns_config))
    assert (cfg, events) == (expected, [])


def test_cluster_first_without_cluster_dns_falls_back_to_default(node_resolv):
    node_resolv.cluster_dns = []
    cfg, events = node_resolv.pod_dns(pod(policy="ClusterFirst"))
    assert cfg == DnsConfig(["8.8.8.8"], ["host.domain"], [])
    assert [reason for reason, _ in events] == ["MissingClusterDNS"]


def test_a_missing_node_resolv_conf_is_an_error(tmp_path):
    conf = DnsConfigurer(["10.96.0.10"], resolver_config=str(tmp_path / "absent"))
    with pytest.raises(NetworkError, match="node resolv.conf"):
        conf.pod_dns(pod())


def test_resolv_conf_as_pods_see_it(node_resolv):
    node_resolv.cluster_domain = "cluster.local"
    node_resolv.cluster_dns = ["10.96.0.10"]
    cfg, _ = node_resolv.pod_dns(pod(ns="default"))
    assert podfiles.resolv_conf_text(cfg) == (
        "search default.svc.cluster.local svc.cluster.local cluster.local host.domain\n"
        "nameserver 10.96.0.10\noptions ndots:5\n")
    assert podfiles.resolv_conf_text(DnsConfig()) == ""


# ------------------------------------------------------------ hosts and hostname

def test_managed_hosts_file_content():
    """kubelet_pods_test.go TestManagedHostsFileContent."""
    assert podfiles.managed_hosts_text(["123.45.67.89"], "podFoo", "", pod()) == HEADER + "123.45.67.89\tpodFoo\n"
    assert podfiles.managed_hosts_text(["203.0.113.1"], "podFoo", "domainFoo", pod()) == \
        HEADER + "203.0.113.1\tpodFoo.domainFoo\tpodFoo\n"
    aliased = pod(host_aliases=[("123.45.67.89", ["foo", "bar", "baz"])])
    assert podfiles.managed_hosts_text(["203.0.113.1"], "podFoo", "domainFoo", aliased) == (
        HEADER + "203.0.113.1\tpodFoo.domainFoo\tpodFoo\n\n# Entries added by HostAliases.\n"
        "123.45.67.89\tfoo\n123.45.67.89\tbar\n123.45.67.89\tbaz\n")
    two = pod(host_aliases=[("123.45.67.89", ["foo", "bar", "baz"]), ("456.78.90.123", ["park", "doo", "boo"])])
    assert podfiles.managed_hosts_text(["203.0.113.1"], "podFoo", "domainFoo", two).endswith(
        "123.45.67.89\tbaz\n456.78.90.123\tpark\n456.78.90.123\tdoo\n456.78.90.123\tboo\n")


@pytest.mark.parametrize("name, hostname, subdomain, want_host, want_domain", [
    ("web-0", "", "", "web-0", ""),
    ("web-0", "db-1", "", "db-1", ""),
    ("web-0", "db-1", "db", "db-1", "db.testNS.svc.cluster.local"),
    ("web-0", "", "db", "web-0", "db.testNS.svc.cluster.local"),
    ("a" * 62 + "-b", "", "", "a" * 62, ""),                 # 63 chars, no trailing '-' once cut
    ("a" * 63 + "bbb", "", "", "a" * 63, ""),
])
def test_hostname_and_domain(name, hostname, subdomain, want_host, want_domain):
    p = pod(name, hostname=hostname, subdomain=subdomain)
    assert (podfiles.pod_hostname(p), podfiles.pod_domain(p, "cluster.local")) == (want_host, want_domain)


def test_host_network_pods_get_the_node_hosts_file_and_name(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.1 node1\n")
    conf = DnsConfigurer(["10.96.0.10"], resolver_config="", node_hosts=str(hosts))
    p = pod(host_network=True, hostname="ignored", subdomain="x", host_aliases=[("10.1.1.1", ["db"])])
    assert podfiles.hosts_text(p, ["10.0.0.11"], conf) == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n10.0.0.1 node1\n"
        "\n# Entries added by HostAliases.\n10.1.1.1\tdb\n")
    assert podfiles.pod_hostname(p) == "node1"


def test_write_pod_files(tmp_path):
    resolv = tmp_path / "node-resolv.conf"
    resolv.write_text("nameserver 10.255.255.53\n")
    conf = DnsConfigurer(["10.96.0.10"], "cluster.local", resolver_config=str(resolv))
    p = pod("web-0", ns="default", hostname="web-0", subdomain="web", host_aliases=[("10.1.2.3", ["db.local"])])
    files, events = podfiles.write_pod_files(tmp_path / "pod", p, ["10.244.1.7"], conf)
    assert events == [] and sorted(files) == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    read = {k: open(v).read() for k, v in files.items()}
    assert read["/etc/hostname"] == "web-0\n"
    assert "10.244.1.7\tweb-0.web.default.svc.cluster.local\tweb-0\n" in read["/etc/hosts"]
    assert read["/etc/hosts"].endswith("# Entries added by HostAliases.\n10.1.2.3\tdb.local\n")
    assert read["/etc/resolv.conf"] == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                                        "nameserver 10.96.0.10\noptions ndots:5\n")
    # written again (agent restart): same content, no temporary files left behind
    podfiles.write_pod_files(tmp_path / "pod", p, ["10.244.1.7"], conf)
    assert sorted(x.name for x in (tmp_path / "pod" / "etc").iterdir()) == ["hostname", "hosts", "resolv.conf"]


def test_agent_flags():
    from nodeagent.main import parse_args
    base = ["--kubeconfig", "/etc/kctl/node.conf", "--node-name", "n1", "--node-ip", "10.0.0.11",
            "--root-dir", "/tmp/x"]
    args = parse_args(base)
    assert (args.cluster_dns, args.cluster_domain) == ([], "cluster.local")
    args = parse_args(base + ["--cluster-dns", "10.96.0.10,fd00::a", "--cluster-domain", "Kctl.Test."])
    assert (args.cluster_dns, args.cluster_domain) == (["10.96.0.10", "fd00::a"], "kctl.test")
    with pytest.raises(SystemExit):
        parse_args(base + ["--cluster-dns", "ten"])
