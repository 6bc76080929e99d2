"""The Pod Security Standards checks, as k8s.io/pod-security-admission/policy
implements them (check_*.go), on kctl's PodSpec.

Each check is a function (metadata, spec) -> (reason, detail) | None with
Kubernetes' ID, level and the minimum policy version it applies from.
`evaluate(level, version, meta, spec)` runs the checks of a level the way
the check registry does: baseline checks in ID order, then restricted
checks in ID order, leaving out the baseline checks a restricted check
overrides (hostPathVolumes by restrictedVolumes, capabilities_baseline by
capabilities_restricted, seccompProfile_baseline by
seccompProfile_restricted). `detail()` joins the results as Kubernetes'
AggregateCheckResult.ForbiddenDetail does:
`host namespaces (hostNetwork=true), hostPath volumes (volume "root")`.

kctl's API has no hostPID/hostIPC, procMount, seLinuxOptions, Windows
options or appArmorProfile fields; the checks of those read what exists
(hostNetwork, the AppArmor annotations).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

BASELINE, RESTRICTED = "baseline", "restricted"

CAPS_BASELINE = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
# the allowed sysctls by the policy version that added them (check_sysctls.go)
SYSCTLS = ((0, {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}),
           (27, {"net.ipv4.ip_local_reserved_ports"}),
           (29, {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                 "net.ipv4.tcp_keepalive_probes"}),
           (32, {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}),
           (37, {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}))
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
ALLOWED_VOLUMES = ("config_map", "downward_api", "empty_dir", "persistent_volume_claim", "projected", "secret")

Result = tuple[str, str] | None


def join_quote(items) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def plural(singular: str, many: str, n: int) -> str:
    return singular if n == 1 else many


def containers(spec):
    """visitContainers: init containers first, then the app containers."""
    return [*spec.init_containers, *spec.containers]


def _sc(c, field):
    """The container's securityContext.field if set, else None."""
    if c.HasField("security_context") and c.security_context.HasField(field):
        return getattr(c.security_context, field)
    return None


def _pod_sc(spec, field):
    if spec.HasField("security_context") and spec.security_context.HasField(field):
        return getattr(spec.security_context, field)
    return None


def _setters(pod_bad: bool, bad_containers: list[str]) -> list[str]:
    out = ["pod"] if pod_bad else []
    if bad_containers:
        out.append(f"{plural('container', 'containers', len(bad_containers))} {join_quote(bad_containers)}")
    return out


# ----------------------------------------------------------------- baseline

def app_armor(meta, spec) -> Result:
    bad = sorted(f'{k}="{v}"' for k, v in meta.annotations.items()
                 if k.startswith(APPARMOR_PREFIX) and v and v != "runtime/default" and not v.startswith("localhost/"))
    if not bad:
        return None
    return (plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(bad)),
            f"{plural('annotation', 'annotations', len(bad))} must not set AppArmor profile type to {join_quote(bad)}")


def capabilities_baseline(meta, spec) -> Result:
    bad, caps = [], set()
    for c in containers(spec):
        added = [a for a in c.security_context.capabilities.add if a not in CAPS_BASELINE]
        if added:
            bad.append(c.name)
            caps.update(added)
    if not bad:
        return None
    return ("non-default capabilities", f"{plural('container', 'containers', len(bad))} {join_quote(bad)} must not "
                                        f"include {join_quote(sorted(caps))} in securityContext.capabilities.add")


def host_namespaces(meta, spec) -> Result:
    return ("host namespaces", "hostNetwork=true") if spec.host_network else None


def host_path_volumes(meta, spec) -> Result:
    bad = [v.name for v in spec.volumes if v.HasField("host_path")]
    return ("hostPath volumes", f"{plural('volume', 'volumes', len(bad))} {join_quote(bad)}") if bad else None


def host_ports(meta, spec) -> Result:
    bad, ports = [], set()
    for c in containers(spec):
        used = [p.host_port for p in c.ports if p.host_port]
        if used:
            bad.append(c.name)
            ports.update(str(p) for p in used)
    if not bad:
        return None
    n = len(bad)
    return ("hostPort", f"{plural('container', 'containers', n)} {join_quote(bad)} {plural('uses', 'use', n)} "
                        f"{plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}")


def _handler_hosts(h) -> list[str]:
    return [a.host for a in (h.http_get, h.tcp_socket) if a.host]


def host_probes_and_lifecycle(meta, spec) -> Result:
    bad, hosts = set(), set()
    for c in containers(spec):
        found = [host for f in ("liveness_probe", "readiness_probe", "startup_probe") if c.HasField(f)
                 for host in _handler_hosts(getattr(c, f))]
        found += [host for f in ("post_start", "pre_stop") if c.lifecycle.HasField(f)
                  for host in _handler_hosts(getattr(c.lifecycle, f))]
        if found:
            bad.add(c.name)
            hosts.update(found)
    if not bad:
        return None
    n = len(bad)
    return ("probe or lifecycle host",
            f"{plural('container', 'containers', n)} {join_quote(sorted(bad))} {plural('uses', 'use', n)} "
            f"{plural('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))} {join_quote(sorted(hosts))}")


def privileged(meta, spec) -> Result:
    bad = [c.name for c in containers(spec) if _sc(c, "privileged")]
    if not bad:
        return None
    return ("privileged", f"{plural('container', 'containers', len(bad))} {join_quote(bad)} must not set "
                          "securityContext.privileged=true")


def _valid_seccomp(t: str) -> bool:
    return t in ("Localhost", "RuntimeDefault")


def _seccomp_annotations(meta, spec) -> Result:
    keys = [SECCOMP_POD_ANNOTATION] + [SECCOMP_CONTAINER_PREFIX + c.name for c in containers(spec)]
    bad = sorted({f'{k}="{meta.annotations[k]}"' for k in keys if k in meta.annotations
                  and meta.annotations[k] not in ("runtime/default", "docker/default")
                  and not meta.annotations[k].startswith("localhost/")})
    if not bad:
        return None
    return ("seccompProfile", f"forbidden {plural('annotation', 'annotations', len(bad))} {', '.join(bad)}")


def _seccomp(spec, require: bool) -> Result:
    pod_sp = _pod_sc(spec, "seccomp_profile")
    pod_bad = pod_sp is not None and not _valid_seccomp(pod_sp.type)
    values = {pod_sp.type} if pod_bad else set()
    explicit, implicit = [], []
    for c in containers(spec):
        sp = _sc(c, "seccomp_profile")
        if sp is not None:
            if not _valid_seccomp(sp.type):
                explicit.append(c.name)
                values.add(sp.type)
        elif pod_sp is None or pod_bad:
            implicit.append(c.name)
    setters = _setters(pod_bad, explicit)
    if setters:
        return ("seccompProfile", f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
                                  f"{join_quote(sorted(values))}")
    if require and implicit:
        return ("seccompProfile", f"pod or {plural('container', 'containers', len(implicit))} {join_quote(implicit)} "
                                  'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')
    return None


def seccomp_baseline(meta, spec) -> Result:
    return _seccomp(spec, require=False) or _seccomp_annotations(meta, spec)


def sysctls_for(minor: int) -> Callable:
    allowed = set().union(*(names for since, names in SYSCTLS if since <= minor))

    def sysctls(meta, spec) -> Result:
        bad = [s.name for s in spec.security_context.sysctls if s.name not in allowed]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None
    return sysctls


# --------------------------------------------------------------- restricted

def allow_privilege_escalation(meta, spec) -> Result:
    bad = [c.name for c in containers(spec) if _sc(c, "allow_privilege_escalation") is not False]
    if not bad:
        return None
    return ("allowPrivilegeEscalation != false", f"{plural('container', 'containers', len(bad))} {join_quote(bad)} "
                                                 "must set securityContext.allowPrivilegeEscalation=false")


def capabilities_restricted(meta, spec) -> Result:
    missing_drop, adding, caps = [], [], set()
    for c in containers(spec):
        cap = c.security_context.capabilities
        if "ALL" not in cap.drop:
            missing_drop.append(c.name)
        added = [a for a in cap.add if a != "NET_BIND_SERVICE"]
        if added:
            adding.append(c.name)
            caps.update(added)
    details = []
    if missing_drop:
        details.append(f"{plural('container', 'containers', len(missing_drop))} {join_quote(missing_drop)} must set "
                       'securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{plural('container', 'containers', len(adding))} {join_quote(adding)} must not include "
                       f"{join_quote(sorted(caps))} in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def restricted_volumes(meta, spec) -> Result:
    bad, kinds = [], set()
    for v in spec.volumes:
        source = _volume_source(v)
        if source in ALLOWED_VOLUMES:
            continue
        bad.append(v.name)
        kinds.add("hostPath" if source == "host_path" else "unknown")
    if not bad:
        return None
    n = len(bad)
    return ("restricted volume types",
            f"{plural('volume', 'volumes', n)} {join_quote(bad)} {plural('uses', 'use', n)} "
            f"{plural('restricted volume type', 'restricted volume types', len(kinds))} {join_quote(sorted(kinds))}")


def _volume_source(v) -> str:
    """The name of the volume's source field (kctl's Volume has one message field per source)."""
    return next((f.name for f, _ in v.ListFields() if f.message_type is not None), "")


def run_as_non_root(meta, spec) -> Result:
    pod = _pod_sc(spec, "run_as_non_root")
    explicit = [c.name for c in containers(spec) if _sc(c, "run_as_non_root") is False]
    implicit = [c.name for c in containers(spec) if _sc(c, "run_as_non_root") is None and not pod]
    setters = _setters(pod is False, explicit)
    if setters:
        return ("runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        return ("runAsNonRoot != true", f"pod or {plural('container', 'containers', len(implicit))} "
                                        f"{join_quote(implicit)} must set securityContext.runAsNonRoot=true")
    return None


def run_as_user(meta, spec) -> Result:
    setters = _setters(_pod_sc(spec, "run_as_user") == 0,
                       [c.name for c in containers(spec) if _sc(c, "run_as_user") == 0])
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def seccomp_restricted(meta, spec) -> Result:
    return _seccomp(spec, require=True)


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    since: int                      # the first v1.<since> policy version it applies to
    fn: Callable[..., Result]
    overrides: str = ""             # the baseline check it replaces at restricted


CHECKS = [
    Check("appArmorProfile", BASELINE, 0, app_armor),
    Check("capabilities_baseline", BASELINE, 0, capabilities_baseline),
    Check("hostNamespaces", BASELINE, 0, host_namespaces),
    Check("hostPathVolumes", BASELINE, 0, host_path_volumes),
    Check("hostPorts", BASELINE, 0, host_ports),
    Check("hostProbesAndHostLifecycle", BASELINE, 34, host_probes_and_lifecycle),
    Check("privileged", BASELINE, 0, privileged),
    Check("seccompProfile_baseline", BASELINE, 0, seccomp_baseline),
    Check("sysctls", BASELINE, 0, sysctls_for(0)),
    Check("allowPrivilegeEscalation", RESTRICTED, 8, allow_privilege_escalation),
    Check("capabilities_restricted", RESTRICTED, 22, capabilities_restricted, "capabilities_baseline"),
    Check("restrictedVolumes", RESTRICTED, 0, restricted_volumes, "hostPathVolumes"),
    Check("runAsNonRoot", RESTRICTED, 0, run_as_non_root),
    Check("runAsUser", RESTRICTED, 23, run_as_user),
    Check("seccompProfile_restricted", RESTRICTED, 19, seccomp_restricted, "seccompProfile_baseline"),
]


def _for_version(check: Check, minor: int) -> Callable[..., Result]:
    return sysctls_for(minor) if check.id == "sysctls" else check.fn


def evaluate(level: str, minor: int, meta, spec) -> list[tuple[str, str]]:
    """The (reason, detail) of every check of `level` at policy version v1.<minor> the pod fails."""
    if level not in (BASELINE, RESTRICTED):
        return []
    active = [c for c in CHECKS if c.since <= minor and (c.level == BASELINE or level == RESTRICTED)]
    overridden = {c.overrides for c in active if c.overrides}
    ordered = sorted((c for c in active if c.level == BASELINE and c.id not in overridden), key=lambda c: c.id)
    ordered += sorted((c for c in active if c.level == RESTRICTED), key=lambda c: c.id)
    return [r for r in (_for_version(c, minor)(meta, spec) for c in ordered) if r]


def detail(results: list[tuple[str, str]]) -> str:
    return ", ".join(f"{reason} ({d})" if d else reason for reason, d in results)


def reasons(results: list[tuple[str, str]]) -> str:
    return ", ".join(reason for reason, _ in results)
