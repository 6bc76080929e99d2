"""DNS-related fields of pods and services (pkg/apis/core/validation:
validatePodDNSConfig, ValidateHostAliases, the ExternalName part of
ValidateService).

* `dnsConfig`: at most 3 nameservers, each an IP; at most 32 search paths
  of at most 2048 characters together (spaces included), each a DNS-1123
  subdomain (a trailing dot is fine); every option has a name. With
  `dnsPolicy: None` the config and at least one nameserver are required
  (Kubernetes returns only that error then).
* `hostAliases`: each `ip` an IP address, each hostname a DNS-1123 subdomain.
* Service `externalName`: required for type ExternalName, a DNS-1123
  subdomain once a trailing dot is cut; ExternalName services carry no
  clusterIP, ipFamilies or ipFamilyPolicy (the apiserver allocates none).

The limits are Kubernetes' (MaxDNSNameservers, MaxDNSSearchPaths,
MaxDNSSearchListChars, the ExpandedDNSConfig values); the node agent trims
what it writes to the same limits (nodeagent/podfiles.py).
"""
from __future__ import annotations

import argparse

from machinery.errors import FieldError, forbidden, invalid, required
from machinery.validation.common import each, is_dns1123_subdomain, is_ip

MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048
IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def validate_pod_dns(spec, path: str) -> list[FieldError]:
    """dnsConfig (against dnsPolicy) and hostAliases of a pod spec at `path`."""
    errs: list[FieldError] = []
    has_config = spec.HasField("dns_config")
    cfg, cp = spec.dns_config, f"{path}.dnsConfig"
    if spec.dns_policy == "None":
        if not has_config:
            return [required(cp, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not cfg.nameservers:
            return [required(f"{cp}.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None")]
    if has_config:
        if len(cfg.nameservers) > MAX_DNS_NAMESERVERS:
            errs.append(invalid(f"{cp}.nameservers", list(cfg.nameservers),
                                f"must not have more than {MAX_DNS_NAMESERVERS} nameservers"))
        for i, ns in enumerate(cfg.nameservers):
            if not is_ip(ns):
                errs.append(invalid(f"{cp}.nameservers[{i}]", ns, IP_MSG))
        if len(cfg.searches) > MAX_DNS_SEARCH_PATHS:
            errs.append(invalid(f"{cp}.searches", list(cfg.searches),
                                f"must not have more than {MAX_DNS_SEARCH_PATHS} search paths"))
        if len(" ".join(cfg.searches)) > MAX_DNS_SEARCH_LIST_CHARS:
            errs.append(invalid(f"{cp}.searches", list(cfg.searches),
                                f"must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters "
                                "(including spaces) in the search list"))
        for i, search in enumerate(cfg.searches):
            name = search[:-1] if search.endswith(".") else search
            errs += each(f"{cp}.searches[{i}]", name, is_dns1123_subdomain(name))
        for i, opt in enumerate(cfg.options):
            if not opt.name:
                errs.append(required(f"{cp}.options[{i}]", "must not be empty"))
    for i, alias in enumerate(spec.host_aliases):
        ap = f"{path}.hostAliases[{i}]"
        if not is_ip(alias.ip):
            errs.append(invalid(f"{ap}.ip", alias.ip, IP_MSG))
        for j, host in enumerate(alias.hostnames):
            errs += each(f"{ap}.hostnames[{j}]", host, is_dns1123_subdomain(host))
    return errs


def validate_external_name(spec) -> list[FieldError]:
    """The ExternalName rules of a Service spec (paths under `spec.`)."""
    if spec.type != "ExternalName":
        return []
    errs: list[FieldError] = []
    cname = spec.external_name[:-1] if spec.external_name.endswith(".") else spec.external_name
    if cname:
        errs += each("spec.externalName", cname, is_dns1123_subdomain(cname))
    else:
        errs.append(required("spec.externalName", ""))
    if spec.cluster_ip or spec.cluster_ips:
        errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
    if spec.ip_families:
        errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
    if spec.ip_family_policy:
        errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
    return errs


def cluster_domain_arg(text: str) -> str:
    """argparse type of --cluster-domain (kctl-dns, kctl-nodeagent): a DNS-1123
    subdomain, taken lower case and without a trailing dot."""
    name = text.strip().rstrip(".").lower()
    errs = is_dns1123_subdomain(name)
    if errs:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {'; '.join(errs)}")
    return name
