"""EndpointSlice validation (discovery.k8s.io/v1), after Kubernetes'
pkg/apis/discovery/validation: the address type, at most 1000 endpoints of
1 to 100 addresses each (valid IPv4/IPv6 addresses for those types), DNS
label hostnames, node names, at most 100 ports with unique DNS label names
and a protocol; `addressType` is immutable."""
from __future__ import annotations

from machinery.errors import FieldError, duplicate, invalid, not_supported, required, too_many
from machinery.validation.common import (each, immutable, is_dns1123_label, is_dns1123_subdomain, is_ip, is_ipv4,
                                         is_port_num, is_qualified_name)
from machinery.validation.pod import PROTOCOLS

ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
MAX_ENDPOINTS, MAX_PORTS, MAX_ADDRESSES = 1000, 100, 100


def _address(path: str, address_type: str, addr: str) -> list[FieldError]:
    if address_type == "IPv4" and not is_ipv4(addr):
        return [invalid(path, addr, "must be a valid IPv4 address")]
    if address_type == "IPv6" and (not is_ip(addr) or is_ipv4(addr)):
        return [invalid(path, addr, "must be a valid IPv6 address")]
    if address_type == "FQDN":
        return each(path, addr, is_dns1123_subdomain(addr))
    return []


def _endpoints(slice_) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(slice_.endpoints) > MAX_ENDPOINTS:
        errs.append(too_many("endpoints", len(slice_.endpoints), MAX_ENDPOINTS))
    for i, ep in enumerate(slice_.endpoints):
        p = f"endpoints[{i}]"
        if not ep.addresses:
            errs.append(required(f"{p}.addresses", "must contain at least 1 address"))
        elif len(ep.addresses) > MAX_ADDRESSES:
            errs.append(too_many(f"{p}.addresses", len(ep.addresses), MAX_ADDRESSES))
        for j, addr in enumerate(ep.addresses):
            errs += _address(f"{p}.addresses[{j}]", slice_.address_type, addr)
        if ep.HasField("hostname"):
            errs += each(f"{p}.hostname", ep.hostname, is_dns1123_label(ep.hostname))
        if ep.HasField("node_name"):
            errs += each(f"{p}.nodeName", ep.node_name, is_dns1123_subdomain(ep.node_name))
    return errs


def _ports(slice_) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(slice_.ports) > MAX_PORTS:
        errs.append(too_many("ports", len(slice_.ports), MAX_PORTS))
    names = set()
    for i, port in enumerate(slice_.ports):
        p = f"ports[{i}]"
        if port.name:
            errs += each(f"{p}.name", port.name, is_dns1123_label(port.name))
        if port.name in names:
            errs.append(duplicate(f"{p}.name", port.name))
        names.add(port.name)
        if not port.HasField("protocol"):
            errs.append(required(f"{p}.protocol", ""))
        elif port.protocol not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", port.protocol, PROTOCOLS))
        if port.HasField("port"):
            errs += each(f"{p}.port", port.port, is_port_num(port.port))
        if port.app_protocol:
            errs += each(f"{p}.appProtocol", port.app_protocol, is_qualified_name(port.app_protocol))
    return errs


def validate_endpoint_slice(slice_) -> list[FieldError]:
    if not slice_.address_type:
        errs = [required("addressType", "")]
    elif slice_.address_type not in ADDRESS_TYPES:
        errs = [not_supported("addressType", slice_.address_type, ADDRESS_TYPES)]
    else:
        errs = []
    return errs + _endpoints(slice_) + _ports(slice_)


def validate_endpoint_slice_update(new, old) -> list[FieldError]:
    return immutable("addressType", new.address_type, old.address_type)
