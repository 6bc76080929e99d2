"""Service, Node, Namespace, Endpoints, Event and Lease validation.

Deliberately narrower than Kubernetes where kctl is: services are IPv4
single-stack. `ExternalName` services (served as a CNAME by kctl-dns) are
checked by machinery/validation/dns.py.
"""
from __future__ import annotations

from machinery import quantity
from machinery.errors import (FieldError, duplicate, forbidden, invalid, not_supported, required)
from machinery.validation.common import (IMMUTABLE_MSG, each, is_cidr, is_dns1123_label,
                                         is_dns1123_subdomain, is_ip, is_ipv4, is_label_value,
                                         is_port_num, is_qualified_name, non_negative,
                                         validate_labels, validate_port_num_or_name)
from machinery.validation.dns import validate_external_name
from machinery.validation.meta import validate_finalizers
from machinery.validation.pod import PROTOCOLS, _one_of
from machinery.validation.scheduling import TAINT_EFFECTS

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
CIDR_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
CONDITION_STATUSES = ("True", "False", "Unknown")
ADDRESS_TYPES = ("Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS")


# ------------------------------------------------------------------ Service

def validate_service(svc) -> list[FieldError]:
    spec, errs = svc.spec, []
    headless = spec.cluster_ip == "None"
    errs += _one_of(SERVICE_TYPES, spec.type, "spec.type")
    errs += validate_external_name(spec)
    node_ports = spec.type in ("NodePort", "LoadBalancer")
    if not spec.ports and not headless and spec.type != "ExternalName":
        errs.append(required("spec.ports", ""))
    names, keys, nps = set(), set(), set()
    for i, port in enumerate(spec.ports):
        p = f"spec.ports[{i}]"
        if not port.name:
            if len(spec.ports) > 1:
                errs.append(required(f"{p}.name", ""))
        else:
            errs += each(f"{p}.name", port.name, is_dns1123_label(port.name))
            if port.name in names:
                errs.append(duplicate(f"{p}.name", port.name))
            names.add(port.name)
        errs += each(f"{p}.port", port.port, is_port_num(port.port))
        errs += _one_of(PROTOCOLS, port.protocol, f"{p}.protocol")
        if port.HasField("target_port"):
            errs += validate_port_num_or_name(port.target_port, f"{p}.targetPort")
        key = f"{port.port}/{port.protocol}"
        if key in keys:
            errs.append(duplicate(p, key))
        keys.add(key)
        if port.node_port:
            if spec.type == "ClusterIP":
                errs.append(forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            else:
                errs += each(f"{p}.nodePort", port.node_port, is_port_num(port.node_port))
            npkey = f"{port.node_port}/{port.protocol}"
            if npkey in nps:
                errs.append(duplicate(f"{p}.nodePort", port.node_port))
            nps.add(npkey)
    if spec.cluster_ip and not headless:
        if not is_ip(spec.cluster_ip):
            errs.append(invalid("spec.clusterIP", spec.cluster_ip,
                                "must be empty, 'None', or a valid IP address"))
        elif not is_ipv4(spec.cluster_ip):
            errs.append(invalid("spec.clusterIP", spec.cluster_ip, "only IPv4 services are supported"))
    if headless and node_ports:
        errs.append(invalid("spec.clusterIP", "None",
                            f"may not be set to 'None' for {spec.type} services"))
    if spec.cluster_ips:
        if spec.cluster_ip and spec.cluster_ips[0] != spec.cluster_ip:
            errs.append(invalid("spec.clusterIPs", list(spec.cluster_ips), "first value must match `clusterIP`"))
        if len(spec.cluster_ips) > 1:
            errs.append(invalid("spec.clusterIPs", list(spec.cluster_ips),
                                "may hold only one address: services are single-stack IPv4"))
    for i, fam in enumerate(spec.ip_families):
        if fam != "IPv4":
            errs.append(not_supported(f"spec.ipFamilies[{i}]", fam, ("IPv4",)))
    if spec.ip_family_policy and spec.ip_family_policy not in IP_FAMILY_POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", spec.ip_family_policy, IP_FAMILY_POLICIES))
    errs += _one_of(("ClientIP", "None"), spec.session_affinity, "spec.sessionAffinity")
    errs += _session_affinity_config(spec)
    if spec.health_check_node_port and not (spec.type == "LoadBalancer" and spec.external_traffic_policy == "Local"):
        errs.append(forbidden("spec.healthCheckNodePort",
                              "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif spec.health_check_node_port:
        errs += each("spec.healthCheckNodePort", spec.health_check_node_port, is_port_num(spec.health_check_node_port))
    errs += validate_labels(spec.selector, "spec.selector")
    if node_ports:
        errs += _one_of(TRAFFIC_POLICIES, spec.external_traffic_policy, "spec.externalTrafficPolicy")
    elif spec.external_traffic_policy:
        errs.append(invalid("spec.externalTrafficPolicy", spec.external_traffic_policy,
                            "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
    if spec.type != "ExternalName":
        errs += _one_of(TRAFFIC_POLICIES, spec.internal_traffic_policy, "spec.internalTrafficPolicy")
    for i, ip in enumerate(spec.external_ips):
        if not is_ip(ip):
            errs.append(invalid(f"spec.externalIPs[{i}]", ip, IP_MSG))
    if spec.load_balancer_ip and spec.type != "LoadBalancer":
        errs.append(forbidden("spec.loadBalancerIP", "may only be used when `type` is 'LoadBalancer'"))
    return errs


MAX_AFFINITY_SECONDS = 86400


def _session_affinity_config(spec) -> list[FieldError]:
    """Kubernetes' validateClientIPAffinityConfig: ClientIP needs 0 < timeoutSeconds <= 86400, None no config."""
    p = "spec.sessionAffinityConfig"
    if spec.session_affinity != "ClientIP":
        if spec.HasField("session_affinity_config"):
            return [forbidden(p, f"must not be set when session affinity is {spec.session_affinity or 'None'}")]
        return []
    cfg = spec.session_affinity_config
    if not cfg.HasField("client_ip"):
        return [required(f"{p}.clientIP", "when session affinity type is ClientIP")]
    if not cfg.client_ip.HasField("timeout_seconds"):
        return [required(f"{p}.clientIP.timeoutSeconds", "when session affinity type is ClientIP")]
    t = cfg.client_ip.timeout_seconds
    if not 0 < t <= MAX_AFFINITY_SECONDS:
        return [invalid(f"{p}.clientIP.timeoutSeconds", t,
                        f"must be greater than 0 and less than {MAX_AFFINITY_SECONDS}")]
    return []


def validate_service_update(new, old) -> list[FieldError]:
    """clusterIP is immutable once allocated (the apiserver carries it over
    from the stored object when an update leaves it empty, as Kubernetes does),
    except that a change to type ExternalName drops it."""
    if old.spec.cluster_ip and new.spec.cluster_ip != old.spec.cluster_ip and new.spec.type != "ExternalName":
        return [invalid("spec.clusterIP", new.spec.cluster_ip, IMMUTABLE_MSG)]
    return []


def validate_service_status(svc) -> list[FieldError]:
    errs = []
    for i, ing in enumerate(svc.status.load_balancer.ingress):
        if ing.ip and not is_ip(ing.ip):
            errs.append(invalid(f"status.loadBalancer.ingress[{i}].ip", ing.ip, IP_MSG))
    return errs


# --------------------------------------------------------------------- Node

def validate_taints(taints, path: str) -> list[FieldError]:
    errs, seen = [], set()
    for i, t in enumerate(taints):
        p = f"{path}[{i}]"
        if not t.key:
            errs.append(required(f"{p}.key", ""))
        else:
            errs += each(f"{p}.key", t.key, is_qualified_name(t.key))
        if t.value:
            errs += each(f"{p}.value", t.value, is_label_value(t.value))
        errs += _one_of(TAINT_EFFECTS, t.effect, f"{p}.effect")
        key = (t.key, t.effect)
        if key in seen:
            errs.append(duplicate(p, f"{t.key}:{t.effect}"))
        seen.add(key)
    return errs


def validate_node(node) -> list[FieldError]:
    spec, errs = node.spec, []
    errs += validate_taints(spec.taints, "spec.taints")
    if spec.pod_cidr and not is_cidr(spec.pod_cidr):
        errs.append(invalid("spec.podCIDR", spec.pod_cidr, CIDR_MSG))
    for i, c in enumerate(spec.pod_cidrs):
        if not is_cidr(c):
            errs.append(invalid(f"spec.podCIDRs[{i}]", c, CIDR_MSG))
    if spec.pod_cidrs and spec.pod_cidr and spec.pod_cidrs[0] != spec.pod_cidr:
        errs.append(invalid("spec.podCIDRs", list(spec.pod_cidrs), "first value must match `podCIDR`"))
    return errs + validate_node_status(node)


def validate_node_update(new, old) -> list[FieldError]:
    errs = []
    if old.spec.pod_cidr and new.spec.pod_cidr != old.spec.pod_cidr:
        errs.append(forbidden("spec.podCIDR", 'node updates may not change podCIDR except from "" to valid'))
    if old.spec.provider_id and new.spec.provider_id != old.spec.provider_id:
        errs.append(forbidden("spec.providerID",
                              'node updates may not change providerID except from "" to valid'))
    return errs


def validate_node_status(node) -> list[FieldError]:
    errs = []
    for which in ("capacity", "allocatable"):
        for name, text in sorted(getattr(node.status, which).items()):
            p = f"status.{which}[{name}]"
            errs += each(p, name, is_qualified_name(name))
            try:
                if quantity.parse(text) < 0:
                    errs.append(invalid(p, text, "must be greater than or equal to 0"))
            except quantity.QuantityError as exc:
                errs.append(invalid(p, text, str(exc)))
    for i, a in enumerate(node.status.addresses):
        errs += _one_of(ADDRESS_TYPES, a.type, f"status.addresses[{i}].type")
    for i, c in enumerate(node.status.conditions):
        if not c.type:
            errs.append(required(f"status.conditions[{i}].type", ""))
        errs += _one_of(CONDITION_STATUSES, c.status, f"status.conditions[{i}].status")
    return errs


# ---------------------------------------------------------------- Namespace

def validate_namespace(ns) -> list[FieldError]:
    errs = validate_finalizers(ns.spec.finalizers, "spec.finalizers")
    return errs + validate_namespace_status(ns)


def validate_namespace_status(ns) -> list[FieldError]:
    phase = ns.status.phase
    if phase and phase not in ("Active", "Terminating"):
        return [not_supported("status.phase", phase, ("Active", "Terminating"))]
    return []


# ---------------------------------------------------------------- Endpoints

def validate_endpoints(ep) -> list[FieldError]:
    errs = []
    for i, subset in enumerate(ep.subsets):
        sp = f"subsets[{i}]"
        for which, j in (("addresses", "addresses"), ("not_ready_addresses", "notReadyAddresses")):
            for k, addr in enumerate(getattr(subset, which)):
                ap = f"{sp}.{j}[{k}]"
                if not addr.ip:
                    errs.append(required(f"{ap}.ip", ""))
                elif not is_ip(addr.ip):
                    errs.append(invalid(f"{ap}.ip", addr.ip, IP_MSG))
                if addr.hostname:
                    errs += each(f"{ap}.hostname", addr.hostname, is_dns1123_label(addr.hostname))
                if addr.HasField("node_name") and addr.node_name:
                    errs += each(f"{ap}.nodeName", addr.node_name, is_dns1123_subdomain(addr.node_name))
        names = set()
        for k, port in enumerate(subset.ports):
            pp = f"{sp}.ports[{k}]"
            if not port.name:
                if len(subset.ports) > 1:
                    errs.append(required(f"{pp}.name", ""))
            else:
                errs += each(f"{pp}.name", port.name, is_dns1123_label(port.name))
                if port.name in names:
                    errs.append(duplicate(f"{pp}.name", port.name))
                names.add(port.name)
            errs += each(f"{pp}.port", port.port, is_port_num(port.port))
            errs += _one_of(PROTOCOLS, port.protocol, f"{pp}.protocol")
    return errs


# -------------------------------------------------------------- Event, Lease

def validate_event(ev) -> list[FieldError]:
    errs = []
    io_ns, ns = ev.involved_object.namespace, ev.metadata.namespace
    if (not io_ns and ns not in ("", "default")) or (io_ns and io_ns != ns):
        errs.append(invalid("involvedObject.namespace", io_ns, "does not match event.namespace"))
    if ev.type and ev.type not in ("Normal", "Warning"):
        errs.append(not_supported("type", ev.type, ("Normal", "Warning")))
    errs += non_negative("count", ev.count)
    return errs


def validate_lease(lease) -> list[FieldError]:
    spec, errs = lease.spec, []
    if spec.HasField("lease_duration_seconds") and spec.lease_duration_seconds <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", spec.lease_duration_seconds,
                            "must be greater than 0"))
    if spec.HasField("lease_transitions"):
        errs += non_negative("spec.leaseTransitions", spec.lease_transitions)
    return errs
