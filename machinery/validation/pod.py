"""Pod spec validation (pkg/apis/core/validation: ValidatePodSpec and friends).

`validate_pod_spec(spec, path)` is shared by Pods and by the pod templates of
ReplicaSets and Deployments, so errors carry the full path
(`spec.template.spec.containers[0].resources.requests[cpu]`). It expects a
defaulted spec, as the apiserver validates after defaulting; a few checks
treat proto3's "0 = unset" as "will be defaulted" and accept it.
"""
from __future__ import annotations

import re

from machinery import quantity
from machinery.errors import (FieldError, duplicate, forbidden, invalid, not_supported, required)
from machinery.validation.common import (each, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
                                         is_port_name, is_port_num, is_qualified_name, non_negative,
                                         validate_labels, validate_port_num_or_name)
from machinery.validation.dns import validate_pod_dns
from machinery.validation.placement import validate_pod_placement
from machinery.validation.scheduling import validate_affinity, validate_tolerations
from machinery.validation.security import validate_pod_security_context, validate_security_context
from machinery.validation.serviceaccount import validate_token_projection

PROTOCOLS = ("SCTP", "TCP", "UDP")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice")
VOLUME_SOURCES = (("empty_dir", "emptyDir"), ("host_path", "hostPath"), ("secret", "secret"),
                  ("config_map", "configMap"), ("persistent_volume_claim", "persistentVolumeClaim"),
                  ("downward_api", "downwardAPI"), ("projected", "projected"))
FIELD_REF_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                   "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
                   "status.hostIPs", "status.podIP", "status.podIPs")
RESOURCE_FIELD_REFS = ("limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                       "requests.ephemeral-storage", "requests.memory")
STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
MAX_INT32 = 2**31 - 1


def _one_of(supported, value, path) -> list[FieldError]:
    if not value:
        return [required(path, "")]
    return [] if value in supported else [not_supported(path, value, supported)]


# ----------------------------------------------------------------- volumes

def validate_volumes(volumes, path: str) -> tuple[list[FieldError], set[str]]:
    errs, names = [], set()
    for i, vol in enumerate(volumes):
        p = f"{path}[{i}]"
        if not vol.name:
            errs.append(required(f"{p}.name", ""))
        else:
            errs += each(f"{p}.name", vol.name, is_dns1123_label(vol.name))
            if vol.name in names:
                errs.append(duplicate(f"{p}.name", vol.name))
            names.add(vol.name)
        present = [(f, j) for f, j in VOLUME_SOURCES if vol.HasField(f)]
        if not present:
            errs.append(required(p, "must specify a volume type"))
        for _, j in present[1:]:
            errs.append(forbidden(f"{p}.{j}", "may not specify more than 1 volume type"))
        if vol.HasField("host_path"):
            if not vol.host_path.path:
                errs.append(required(f"{p}.hostPath.path", ""))
            if vol.host_path.type not in HOST_PATH_TYPES:
                errs.append(not_supported(f"{p}.hostPath.type", vol.host_path.type, HOST_PATH_TYPES[1:]))
        if vol.HasField("empty_dir") and vol.empty_dir.size_limit:
            errs += _quantity(vol.empty_dir.size_limit, f"{p}.emptyDir.sizeLimit")
        if vol.HasField("secret") and not vol.secret.secret_name:
            errs.append(required(f"{p}.secret.secretName", ""))
        if vol.HasField("config_map") and not vol.config_map.name:
            errs.append(required(f"{p}.configMap.name", ""))
        if vol.HasField("persistent_volume_claim") and not vol.persistent_volume_claim.claim_name:
            errs.append(required(f"{p}.persistentVolumeClaim.claimName", ""))
        for j, src in enumerate(vol.projected.sources):
            if src.HasField("service_account_token"):
                errs += validate_token_projection(src.service_account_token,
                                                  f"{p}.projected.sources[{j}].serviceAccountToken")
        for src, j in (("secret", "secret"), ("config_map", "configMap")):
            s = getattr(vol, src)
            if vol.HasField(src) and s.HasField("default_mode") and not 0 <= s.default_mode <= 0o777:
                errs.append(invalid(f"{p}.{j}.defaultMode", s.default_mode,
                                    "must be a number between 0 and 0777 (octal), both inclusive"))
    return errs, names


def _quantity(text: str, path: str) -> list[FieldError]:
    try:
        q = quantity.parse(text)
    except quantity.QuantityError as exc:
        return [invalid(path, text, str(exc))]
    return [invalid(path, text, "must be greater than or equal to 0")] if q < 0 else []


# --------------------------------------------------------------- container

def _is_extended(name: str) -> bool:
    """IsExtendedResourceName: prefixed, not `*kubernetes.io/`, not `requests.*`."""
    return "/" in name and "kubernetes.io/" not in name and not name.startswith("requests.")


def _resource_name(name: str, path: str) -> list[FieldError]:
    msgs = is_qualified_name(name)
    if msgs:
        return each(path, name, msgs)
    if "/" not in name:
        if name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            return [invalid(path, name, "must be a standard resource for containers")]
    elif "kubernetes.io/" not in name and not _is_extended(name):
        return [invalid(path, name, "doesn't follow extended resource name standard")]
    return []


def validate_resources(res, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    good: dict[str, dict] = {"limits": {}, "requests": {}}
    for which in ("limits", "requests"):
        for name, text in sorted(getattr(res, which).items()):
            p = f"{path}.{which}[{name}]"
            errs += _resource_name(name, p)
            qerrs = _quantity(text, p)
            errs += qerrs
            if not qerrs:
                if _is_extended(name) and quantity.parse(text).denominator != 1:
                    errs.append(invalid(p, text, "must be an integer"))
                good[which][name] = text
    for name, text in sorted(good["requests"].items()):
        limit = good["limits"].get(name)
        if limit is not None and quantity.compare(text, limit) > 0:
            errs.append(invalid(f"{path}.requests[{name}]", quantity.canonical(text),
                                f"must be less than or equal to {name} limit of "
                                f"{quantity.canonical(limit)}"))
        if name.startswith("hugepages-") and limit is not None and quantity.compare(text, limit) != 0:
            errs.append(invalid(f"{path}.requests[{name}]", quantity.canonical(text),
                                f"must be equal to {name} limit of {quantity.canonical(limit)}"))
    return errs


def _field_ref(ref, path: str) -> list[FieldError]:
    errs = []
    if not ref.api_version:
        errs.append(required(f"{path}.apiVersion", ""))
    fp = ref.field_path
    if not fp:
        return errs + [required(f"{path}.fieldPath", "")]
    m = re.fullmatch(r"(metadata\.(?:labels|annotations))\['([^']*)'\]", fp)
    if m:
        key = m.group(2)
        msgs = is_qualified_name(key.lower() if m.group(1).endswith("annotations") else key)
        return errs + each(f"{path}.fieldPath", fp, msgs)
    if fp not in FIELD_REF_PATHS:
        errs.append(not_supported(f"{path}.fieldPath", fp, FIELD_REF_PATHS))
    return errs


def validate_env(env, path: str) -> list[FieldError]:
    errs = []
    for i, ev in enumerate(env):
        p = f"{path}[{i}]"
        if not ev.name:
            errs.append(required(f"{p}.name", ""))
        else:
            errs += each(f"{p}.name", ev.name, is_env_var_name(ev.name))
        if not ev.HasField("value_from"):
            continue
        vf, vp = ev.value_from, f"{p}.valueFrom"
        sources = [f for f in ("field_ref", "resource_field_ref", "config_map_key_ref", "secret_key_ref")
                   if vf.HasField(f)]
        if ev.value:
            errs.append(invalid(vp, "", "may not be specified when `value` is not empty"))
        if not sources:
            errs.append(invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                        "`configMapKeyRef` or `secretKeyRef`"))
        elif len(sources) > 1:
            errs.append(invalid(vp, "", "may not have more than one field specified at a time"))
        if vf.HasField("field_ref"):
            errs += _field_ref(vf.field_ref, f"{vp}.fieldRef")
        if vf.HasField("resource_field_ref"):
            r = vf.resource_field_ref
            rp = f"{vp}.resourceFieldRef"
            if not r.resource:
                errs.append(required(f"{rp}.resource", ""))
            elif r.resource not in RESOURCE_FIELD_REFS:
                errs.append(not_supported(f"{rp}.resource", r.resource, RESOURCE_FIELD_REFS))
            if r.divisor:
                errs += _quantity(r.divisor, f"{rp}.divisor")
        for src, j in (("config_map_key_ref", "configMapKeyRef"), ("secret_key_ref", "secretKeyRef")):
            if vf.HasField(src):
                ref = getattr(vf, src)
                if not ref.name:
                    errs.append(required(f"{vp}.{j}.name", ""))
                if not ref.key:
                    errs.append(required(f"{vp}.{j}.key", ""))
    return errs


def validate_ports(ports, path: str) -> list[FieldError]:
    errs, names = [], set()
    for i, port in enumerate(ports):
        p = f"{path}[{i}]"
        if port.name:
            errs += each(f"{p}.name", port.name, is_port_name(port.name))
            if port.name in names:
                errs.append(duplicate(f"{p}.name", port.name))
            names.add(port.name)
        if port.container_port == 0:
            errs.append(required(f"{p}.containerPort", ""))
        else:
            errs += each(f"{p}.containerPort", port.container_port, is_port_num(port.container_port))
        if port.host_port:
            errs += each(f"{p}.hostPort", port.host_port, is_port_num(port.host_port))
        errs += _one_of(PROTOCOLS, port.protocol, f"{p}.protocol")
    return errs


def validate_handler(h, path: str, kinds=("exec", "http_get", "tcp_socket")) -> list[FieldError]:
    names = {"exec": "exec", "http_get": "httpGet", "tcp_socket": "tcpSocket", "sleep": "sleep"}
    present = [k for k in kinds if h.HasField(k)]
    errs: list[FieldError] = []
    if not present:
        return [required(path, "must specify a handler type")]
    for k in present[1:]:
        errs.append(forbidden(f"{path}.{names[k]}", "may not specify more than 1 handler type"))
    if h.HasField("exec") and not h.exec.command:
        errs.append(required(f"{path}.exec.command", ""))
    if h.HasField("http_get"):
        g, gp = h.http_get, f"{path}.httpGet"
        if not g.path:
            errs.append(required(f"{gp}.path", ""))
        errs += validate_port_num_or_name(g.port, f"{gp}.port")
        if g.scheme not in ("HTTP", "HTTPS"):
            errs.append(not_supported(f"{gp}.scheme", g.scheme, ("HTTP", "HTTPS")))
        for j, hdr in enumerate(g.http_headers):
            if not re.fullmatch(r"[-A-Za-z0-9!#$%&'*+.^_`|~]+", hdr.name):
                errs.append(invalid(f"{gp}.httpHeaders[{j}].name", hdr.name,
                                    "a valid HTTP header must consist of alphanumeric characters "
                                    "or '-' (e.g. 'X-Header-Name', regex used for validation is "
                                    "'[-A-Za-z0-9]+')"))
    if h.HasField("tcp_socket"):
        errs += validate_port_num_or_name(h.tcp_socket.port, f"{path}.tcpSocket.port")
    if "sleep" in kinds and h.HasField("sleep") and h.sleep.seconds <= 0:
        errs.append(invalid(f"{path}.sleep.seconds", h.sleep.seconds, "must be greater than 0"))
    return errs


def validate_probe(probe, path: str, kind: str) -> list[FieldError]:
    errs = validate_handler(probe, path)
    errs += non_negative(f"{path}.initialDelaySeconds", probe.initial_delay_seconds)
    for f, j in (("timeout_seconds", "timeoutSeconds"), ("period_seconds", "periodSeconds"),
                 ("success_threshold", "successThreshold"), ("failure_threshold", "failureThreshold")):
        errs += non_negative(f"{path}.{j}", getattr(probe, f))
    if kind in ("liveness", "startup") and probe.success_threshold not in (0, 1):
        errs.append(invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1"))
    if probe.HasField("termination_grace_period_seconds"):
        if kind == "readiness":
            errs.append(invalid(f"{path}.terminationGracePeriodSeconds",
                                probe.termination_grace_period_seconds, "must not be set for readinessProbes"))
        elif probe.termination_grace_period_seconds <= 0:
            errs.append(invalid(f"{path}.terminationGracePeriodSeconds",
                                probe.termination_grace_period_seconds, "must be greater than 0"))
    return errs


def validate_mounts(mounts, volumes: set[str], path: str) -> list[FieldError]:
    errs, paths = [], set()
    for i, m in enumerate(mounts):
        p = f"{path}[{i}]"
        if not m.name:
            errs.append(required(f"{p}.name", ""))
        elif m.name not in volumes:
            errs.append(FieldError("NotFound", f"{p}.name", m.name))
        if not m.mount_path:
            errs.append(required(f"{p}.mountPath", ""))
        else:
            if m.mount_path in paths:
                errs.append(invalid(f"{p}.mountPath", m.mount_path, "must be unique"))
            paths.add(m.mount_path)
            if not m.mount_path.startswith("/"):
                errs.append(invalid(f"{p}.mountPath", m.mount_path, "must be an absolute path"))
        if m.sub_path and m.sub_path_expr:
            errs.append(invalid(f"{p}.subPathExpr", m.sub_path_expr, "subPathExpr and subPath are mutually exclusive"))
        if m.sub_path:
            if m.sub_path.startswith("/"):
                errs.append(invalid(f"{p}.subPath", m.sub_path, "must be a relative path"))
            if ".." in m.sub_path.split("/"):
                errs.append(invalid(f"{p}.subPath", m.sub_path, "must not contain '..'"))
    return errs


def validate_container(c, volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not c.name:
        errs.append(required(f"{path}.name", ""))
    else:
        errs += each(f"{path}.name", c.name, is_dns1123_label(c.name))
    if not c.image:
        errs.append(required(f"{path}.image", ""))
    elif c.image != c.image.strip():
        errs.append(invalid(f"{path}.image", c.image, "must not have leading or trailing whitespace"))
    errs += validate_ports(c.ports, f"{path}.ports")
    errs += validate_env(c.env, f"{path}.env")
    errs += validate_resources(c.resources, f"{path}.resources")
    errs += validate_mounts(c.volume_mounts, volumes, f"{path}.volumeMounts")
    for f, j, kind in (("liveness_probe", "livenessProbe", "liveness"),
                       ("readiness_probe", "readinessProbe", "readiness"),
                       ("startup_probe", "startupProbe", "startup")):
        if c.HasField(f):
            errs += validate_probe(getattr(c, f), f"{path}.{j}", kind)
    for f, j in (("post_start", "postStart"), ("pre_stop", "preStop")):
        if c.HasField("lifecycle") and c.lifecycle.HasField(f):
            errs += validate_handler(getattr(c.lifecycle, f), f"{path}.lifecycle.{j}",
                                     ("exec", "http_get", "tcp_socket", "sleep"))
    errs += _one_of(PULL_POLICIES, c.image_pull_policy, f"{path}.imagePullPolicy")
    errs += _one_of(TERMINATION_MESSAGE_POLICIES, c.termination_message_policy,
                    f"{path}.terminationMessagePolicy")
    errs += validate_security_context(c, path)
    if len(c.termination_message_path) > 4096:
        errs.append(FieldError("TooLong", f"{path}.terminationMessagePath",
                               detail="may not be more than 4096 bytes"))
    return errs


# ---------------------------------------------------------------- pod spec

def validate_init_containers(spec, volumes: set[str], names: set[str], path: str) -> list[FieldError]:
    """validateInitContainers: names unique (they share one namespace with the app containers,
    whose names ``names`` holds); only restartPolicy Always (a sidecar) is allowed, and only a sidecar
    may have lifecycle hooks and liveness/readiness/startup probes."""
    errs: list[FieldError] = []
    for i, c in enumerate(spec.init_containers):
        p = f"{path}.initContainers[{i}]"
        errs += validate_container(c, volumes, p)
        if c.name and c.name in names:
            errs.append(duplicate(f"{p}.name", c.name))
        names.add(c.name)
        sidecar = c.HasField("restart_policy") and c.restart_policy == "Always"
        if c.HasField("restart_policy") and not sidecar:
            errs.append(not_supported(f"{p}.restartPolicy", c.restart_policy, ["Always"]))
        if sidecar:
            continue
        if c.HasField("lifecycle"):
            errs.append(forbidden(f"{p}.lifecycle", "may not be set for init containers without restartPolicy=Always"))
        for f, j in (("liveness_probe", "livenessProbe"), ("readiness_probe", "readinessProbe"),
                     ("startup_probe", "startupProbe")):
            if c.HasField(f):
                errs.append(forbidden(f"{p}.{j}", "may not be set for init containers without restartPolicy=Always"))
    return errs


def validate_pod_spec(spec, path: str) -> list[FieldError]:
    errs, volumes = validate_volumes(spec.volumes, f"{path}.volumes")
    if not spec.containers:
        errs.append(required(f"{path}.containers", ""))
    names: set[str] = set()
    for i, c in enumerate(spec.containers):
        errs += validate_container(c, volumes, f"{path}.containers[{i}]")
        if c.HasField("restart_policy"):
            errs.append(forbidden(f"{path}.containers[{i}].restartPolicy",
                                  "may not be set for non-init containers"))
        if c.name and c.name in names:
            errs.append(duplicate(f"{path}.containers[{i}].name", c.name))
        names.add(c.name)
        if spec.host_network:
            for j, port in enumerate(c.ports):
                if port.host_port != port.container_port:
                    errs.append(invalid(f"{path}.containers[{i}].ports[{j}].hostPort", port.host_port,
                                        "must match `containerPort` when `hostNetwork` is true"))
    errs += validate_init_containers(spec, volumes, names, path)
    errs += _one_of(RESTART_POLICIES, spec.restart_policy, f"{path}.restartPolicy")
    errs += _one_of(DNS_POLICIES, spec.dns_policy, f"{path}.dnsPolicy")
    errs += validate_pod_dns(spec, path)
    errs += validate_labels(spec.node_selector, f"{path}.nodeSelector")
    if spec.HasField("affinity"):
        errs += validate_affinity(spec.affinity, f"{path}.affinity")
    errs += validate_tolerations(spec.tolerations, f"{path}.tolerations")
    errs += validate_pod_placement(spec, path)
    errs += validate_pod_security_context(spec, path)
    if spec.HasField("termination_grace_period_seconds"):
        errs += non_negative(f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds)
    if spec.HasField("active_deadline_seconds") and not 1 <= spec.active_deadline_seconds <= MAX_INT32:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", spec.active_deadline_seconds,
                            f"must be between 1 and {MAX_INT32}, inclusive"))
    for f, j, fn in (("node_name", "nodeName", is_dns1123_subdomain),
                     ("service_account_name", "serviceAccountName", is_dns1123_subdomain),
                     ("scheduler_name", "schedulerName", is_dns1123_subdomain),
                     ("hostname", "hostname", is_dns1123_label),
                     ("subdomain", "subdomain", is_dns1123_label)):
        v = getattr(spec, f)
        if v:
            errs += each(f"{path}.{j}", v, fn(v))
    return errs
