"""A container's environment, the kubelet's makeEnvironmentVariables
(pkg/kubelet/kubelet_pods.go).

Order: the image's Env, then the Services' variables (the `kubernetes`
Service's ``KUBERNETES_SERVICE_HOST``/``_PORT`` and Docker-link
``KUBERNETES_PORT*`` ones, and unless the pod says ``enableServiceLinks:
false`` those of the other Services of its namespace with a ClusterIP:
``service_env``, from the agent's watch in nodeagent/serviceenv.py;
``Sources.service_env`` None — that watch has not listed yet — is the
kubelet's ``services have not yet been read at least once`` error), then ``envFrom`` sources in order (each key with the
source's ``prefix``; a key that is not a valid variable name is skipped and
reported with the kubelet's InvalidEnvironmentVariableNames event), then
``env`` in order — a later name wins.  ``env`` values expand ``$(VAR)``
references to variables defined before (``$$`` escapes; unknown references
stay as written).  ``valueFrom``:

* ``configMapKeyRef`` / ``secretKeyRef``: the object must exist (else
  ``configmap "x" not found`` / ``secret "x" not found``) and hold the key
  (else ``couldn't find key k in ConfigMap ns/x``), unless ``optional``,
  which leaves the variable out;
* ``fieldRef``: metadata.name/namespace/uid, metadata.labels['k'],
  metadata.annotations['k'], spec.nodeName, spec.serviceAccountName,
  status.podIP(s), status.hostIP(s);
* ``resourceFieldRef``: a container's limits/requests, rounded up to the
  divisor (1 or 1m for cpu, 1 for memory).

The referenced objects come in a ``Sources`` (fetched by the pod worker
through nodeagent/configwatch.py), so everything here is pure; a problem is
a ``ContainerConfigError`` (the container waits with CreateContainerConfigError).
The same field resolution serves downwardAPI volumes (nodeagent/volumes.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from machinery import quantity
from machinery.pb import core_pb2
from nodeagent.errors import ContainerConfigError

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


@dataclass
class Sources:
    """The API objects a pod refers to, by name in the pod's namespace (None: it does not exist),
    and the events building a container's config wants recorded."""
    config_maps: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)
    claims: dict[str, tuple[str, str]] = field(default_factory=dict)  # volume -> (PV path, hostPath type)
    tokens: dict[tuple[str, int], bytes] = field(default_factory=dict)  # (audience, expirationSeconds) -> token
    service_env: dict[str, str] | None = field(default_factory=dict)  # KUBERNETES_SERVICE_HOST and friends;
    #                                                                     None: not listed yet (serviceenv.py)
    events: list[tuple[str, str, str]] = field(default_factory=list)    # (type, reason, message)

    def config_map(self, ns: str, name: str, optional: bool):
        obj = self.config_maps.get(name)
        if obj is None and not optional:
            raise ContainerConfigError(f'configmap "{name}" not found')
        return obj

    def secret(self, ns: str, name: str, optional: bool):
        obj = self.secrets.get(name)
        if obj is None and not optional:
            raise ContainerConfigError(f'secret "{name}" not found')
        return obj


def expand(s: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _REF.sub(sub, s)


def is_env_var_name(name: str) -> bool:
    """validation.IsEnvVarName: [-._a-zA-Z][-._a-zA-Z0-9]*, and not '.' or '..'-prefixed."""
    return bool(_ENV_NAME.fullmatch(name)) and name != "." and not name.startswith("..")


def field_value(pod: core_pb2.Pod, path: str, host_ip: str, pod_ip: str) -> str:
    md = pod.metadata
    simple = {"metadata.name": md.name, "metadata.namespace": md.namespace, "metadata.uid": md.uid,
              "spec.nodeName": pod.spec.node_name, "spec.serviceAccountName": pod.spec.service_account_name,
              "status.podIP": pod_ip, "status.hostIP": host_ip, "status.podIPs": pod_ip,
              "status.hostIPs": host_ip}
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if m:
        return dict(getattr(md, m.group(1))).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):      # downwardAPI volumes: k="v" lines
        items = sorted(dict(getattr(md, path.split(".")[1])).items())
        return "\n".join(f'{k}="{_quote(v)}"' for k, v in items)
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _quote(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def resource_value(c: core_pb2.Container, sel: core_pb2.ResourceFieldSelector) -> str:
    kind, _, res = sel.resource.partition(".")
    src = dict(c.resources.limits if kind == "limits" else c.resources.requests)
    q = src.get(res)
    if q is None:
        return "0"
    if res == "cpu":
        div = quantity.milli_value(sel.divisor) if sel.divisor else 1000
        return str(-(-quantity.milli_value(q) // div))
    div = quantity.value(sel.divisor) if sel.divisor else 1
    return str(-(-quantity.value(q) // div))


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _env_from(pod: core_pb2.Pod, ef, sources: Sources, env: dict[str, str]) -> None:
    ns = pod.metadata.namespace
    if ef.HasField("config_map_ref"):
        ref, what = ef.config_map_ref, "configMap"
        obj = sources.config_map(ns, ref.name, ref.HasField("optional") and ref.optional)
        data = dict(obj.data) if obj is not None else {}
    elif ef.HasField("secret_ref"):
        ref, what = ef.secret_ref, "secret"
        obj = sources.secret(ns, ref.name, ref.HasField("optional") and ref.optional)
        data = {k: _text(v) for k, v in obj.data.items()} if obj is not None else {}
    else:
        return
    invalid = []
    for k, v in data.items():
        name = ef.prefix + k
        if not is_env_var_name(name):
            invalid.append(name)
            continue
        env[name] = v
    if invalid:
        sources.events.append(("Warning", "InvalidEnvironmentVariableNames",
                               f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {what} {ns}/{ref.name} "
                               "were skipped since they are considered invalid environment variable names."))


def _value_from(pod: core_pb2.Pod, c: core_pb2.Container, vf, sources: Sources, host_ip: str,
                pod_ip: str) -> str | None:
    ns = pod.metadata.namespace
    for field_name, kind, lookup in (("config_map_key_ref", "ConfigMap", sources.config_map),
                                     ("secret_key_ref", "Secret", sources.secret)):
        if not vf.HasField(field_name):
            continue
        ref = getattr(vf, field_name)
        optional = ref.HasField("optional") and ref.optional
        obj = lookup(ns, ref.name, optional)
        if obj is None or (optional and ref.key not in obj.data):
            return None
        if ref.key not in obj.data:
            raise ContainerConfigError(f"couldn't find key {ref.key} in {kind} {ns}/{ref.name}")
        return _text(obj.data[ref.key])
    if vf.HasField("field_ref"):
        return field_value(pod, vf.field_ref.field_path, host_ip, pod_ip)
    if vf.HasField("resource_field_ref"):
        return resource_value(c, vf.resource_field_ref)
    return ""


def service_env(svc) -> dict[str, str]:
    """The kubelet's variables for one Service (pkg/kubelet/envvars FromServices):
    NAME_SERVICE_HOST/_PORT/_PORT_<port name> and the Docker-link NAME_PORT* ones."""
    ip = svc.spec.cluster_ip
    if not ip or ip == "None" or not svc.spec.ports:
        return {}
    name = svc.metadata.name.upper().replace("-", "_")
    first = svc.spec.ports[0]
    host = f"[{ip}]" if ":" in ip else ip
    env = {f"{name}_SERVICE_HOST": ip, f"{name}_SERVICE_PORT": str(first.port)}
    for sp in svc.spec.ports:
        if sp.name:
            env[f"{name}_SERVICE_PORT_{sp.name.upper().replace('-', '_')}"] = str(sp.port)
    proto = (first.protocol or "TCP").lower()
    env[f"{name}_PORT"] = f"{proto}://{host}:{first.port}"
    for sp in svc.spec.ports:
        proto = (sp.protocol or "TCP").lower()
        prefix = f"{name}_PORT_{sp.port}_{proto.upper()}"
        env.update({prefix: f"{proto}://{host}:{sp.port}", f"{prefix}_PROTO": proto,
                    f"{prefix}_PORT": str(sp.port), f"{prefix}_ADDR": ip})
    return env


def build_env(pod: core_pb2.Pod, c: core_pb2.Container, image_env, host_ip: str, pod_ip: str,
              sources: Sources | None = None) -> list[str]:
    """NAME=value strings for the container (see module docstring)."""
    sources = sources if sources is not None else Sources()
    if sources.service_env is None:
        raise ContainerConfigError("services have not yet been read at least once, cannot construct envvars")
    env: dict[str, str] = {}
    for kv in image_env:
        k, _, v = kv.partition("=")
        env[k] = v
    env.update(sources.service_env)
    for ef in c.env_from:
        _env_from(pod, ef, sources, env)
    for e in c.env:
        if e.HasField("value_from"):
            v = _value_from(pod, c, e.value_from, sources, host_ip, pod_ip)
            if v is not None:
                env[e.name] = v
        else:
            env[e.name] = expand(e.value, env)
    return [f"{k}={v}" for k, v in env.items()]
