"""Validation of the DNS fields: pod dnsPolicy/dnsConfig/hostAliases and
ExternalName services, with Kubernetes' paths, types and messages
(pkg/apis/core/validation: validatePodDNSConfig, ValidateHostAliases,
ValidateService)."""
import pytest

from tests.unit.validation_objects import DELETE, build, errors

CFG = "spec.dnsConfig"

CASES = [
    # ---- dnsPolicy None needs a config with a nameserver (and only that error)
    ("pod", [("spec.dnsPolicy", "None")], "Required", CFG, "must provide `dnsConfig` when `dnsPolicy` is None"),
    ("pod", [("spec.dnsPolicy", "None"), (CFG, {"searches": ["Bad_Name"]})], "Required",
     f"{CFG}.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None"),
    ("pod", [("spec.dnsPolicy", "Sometimes")], "NotSupported", "spec.dnsPolicy",
     'supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"'),
    # ---- dnsConfig
    ("pod", [(CFG, {"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"]})], "Invalid",
     f"{CFG}.nameservers", "must not have more than 3 nameservers"),
    ("pod", [(CFG, {"nameservers": ["dns.example.com"]})], "Invalid", f"{CFG}.nameservers[0]",
     "must be a valid IP address"),
    ("pod", [(CFG, {"searches": [f"d{i}" for i in range(33)]})], "Invalid", f"{CFG}.searches",
     "must not have more than 32 search paths"),
    ("pod", [(CFG, {"searches": ["a" * 63 + "." + "b" * 63 + "." + "c" * 63] * 11})], "Invalid",
     f"{CFG}.searches", "must not have more than 2048 characters (including spaces) in the search list"),
    ("pod", [(CFG, {"searches": ["Example.com"]})], "Invalid", f"{CFG}.searches[0]", "RFC 1123 subdomain"),
    ("pod", [(CFG, {"options": [{"name": "ndots", "value": "2"}, {"value": "1"}]})], "Required",
     f"{CFG}.options[1]", "must not be empty"),
    # ---- hostAliases
    ("pod", [("spec.hostAliases", [{"ip": "foo", "hostnames": ["a.example"]}])], "Invalid",
     "spec.hostAliases[0].ip", "must be a valid IP address"),
    ("pod", [("spec.hostAliases", [{"ip": "10.1.2.3", "hostnames": ["ok", "Not_OK"]}])], "Invalid",
     "spec.hostAliases[0].hostnames[1]", "RFC 1123 subdomain"),
    # ---- the same rules in a pod template
    ("deploy", [("spec.template.spec.dnsPolicy", "None")], "Required", "spec.template.spec.dnsConfig", None),
    # ---- ExternalName services
    ("svc", [("spec.type", "ExternalName")], "Required", "spec.externalName", None),
    ("svc", [("spec.type", "ExternalName"), ("spec.externalName", "Bad_Name.example")], "Invalid",
     "spec.externalName", "RFC 1123 subdomain"),
    ("svc", [("spec.type", "ExternalName"), ("spec.externalName", "db.example.com"),
             ("spec.clusterIP", "10.96.0.40")], "Forbidden", "spec.clusterIPs",
     "may not be set for ExternalName services"),
    ("svc", [("spec.type", "ExternalName"), ("spec.externalName", "db.example.com"),
             ("spec.ipFamilies", ["IPv4"])], "Forbidden", "spec.ipFamilies", None),
    ("svc", [("spec.type", "ExternalName"), ("spec.externalName", "db.example.com"),
             ("spec.ipFamilyPolicy", "SingleStack")], "Forbidden", "spec.ipFamilyPolicy", None),
]


@pytest.mark.parametrize("base, edits, etype, field, detail", CASES,
                         ids=[f"{c[0]}:{c[3]}:{i}" for i, c in enumerate(CASES)])
def test_invalid(base, edits, etype, field, detail):
    got = [(e.type, e.field, str(e)) for e in errors(build(base, *edits))]
    assert [(t, f) for t, f, _ in got] == [(etype, field)], got
    assert detail is None or detail in got[0][2]


VALID = [
    ("pod", [("spec.dnsPolicy", "None"), (CFG, {"nameservers": ["203.0.113.1"], "searches": ["my.domain."],
                                               "options": [{"name": "ndots", "value": "3"}, {"name": "debug"}]})]),
    ("pod", [("spec.dnsPolicy", "ClusterFirstWithHostNet"), ("spec.hostNetwork", True),
             ("spec.containers.0.ports.0.hostPort", 80)]),
    ("pod", [("spec.dnsPolicy", "Default"), (CFG, {"searches": [f"d{i}" for i in range(32)]})]),
    ("pod", [("spec.hostname", "web-0"), ("spec.subdomain", "web"),
             ("spec.hostAliases", [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar"]},
                                   {"ip": "2001:db8::1", "hostnames": ["v6"]}])]),
    ("svc", [("spec.type", "ExternalName"), ("spec.externalName", "db.example.com.")]),
    ("svc", [("spec.type", "ExternalName"), ("spec.externalName", "echo.default.svc.cluster.local"),
             ("spec.ports", DELETE), ("spec.selector", DELETE)]),
]


@pytest.mark.parametrize("base, edits", VALID, ids=[str(i) for i in range(len(VALID))])
def test_valid(base, edits):
    assert [str(e) for e in errors(build(base, *edits))] == []


def test_external_name_is_not_defaulted_like_a_clusterip_service():
    svc = build("svc", ("spec.type", "ExternalName"), ("spec.externalName", "db.example.com"))
    spec = svc.spec
    assert (spec.cluster_ip, list(spec.cluster_ips), list(spec.ip_families), spec.ip_family_policy) == ("", [], [], "")


def test_kctl_get_shows_the_external_name_as_kubectl_does():
    from kubectlish.printers import external_ip
    svc = build("svc", ("spec.type", "ExternalName"), ("spec.externalName", "db.example.com"))
    assert external_ip(svc) == "db.example.com"
