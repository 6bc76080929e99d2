"""From a pod spec container + its image to a runtime ContainerConfig.

Rules (the kubelet's):

* process args: ``command`` replaces the image Entrypoint (and drops its
  Cmd); ``args`` replace the image Cmd; ``$(VAR)`` in command/args/env values
  expands to earlier env vars (``$$`` escapes), unknown references stay as is.
* env: the image Env first, then the pod's env in order (a later name wins);
  ``valueFrom.fieldRef`` for metadata.name/namespace/uid, metadata.labels[..],
  metadata.annotations[..], spec.nodeName, spec.serviceAccountName,
  status.podIP, status.hostIP; ``resourceFieldRef`` for limits/requests.
  ``secretKeyRef``/``configMapKeyRef`` and secret/configMap/PVC volumes raise
  ``ContainerConfigError`` (kctl has no such kinds): the container waits with reason
  CreateContainerConfigError.
* resources: cpu limit -> CFS quota (period 100 ms), cpu request -> shares
  (1024 per CPU, at least 2), memory limit -> memory limit (no swap).
* mounts: /etc/hosts, /etc/hostname, /etc/resolv.conf of the pod; emptyDir =
  a directory under the pod dir shared by the pod's containers; hostPath as is
  (created for ``DirectoryOrCreate``/``FileOrCreate``); ``subPath`` supported.

Pure functions apart from creating the volume directories (the host
refusing that is a ``ContainerRuntimeError``).
"""
from __future__ import annotations

import os
import re

from machinery import quantity
from machinery.pb import core_pb2
from nodeagent.containers import ContainerConfig, Mount
from nodeagent.errors import ContainerConfigError, ContainerRuntimeError
from nodeagent.images import Image
from nodeagent.network import Sandbox

CPU_PERIOD = 100_000

LABEL_POD_UID = "kctl.io/pod-uid"
LABEL_POD_NAME = "kctl.io/pod-name"
LABEL_POD_NAMESPACE = "kctl.io/pod-namespace"
LABEL_CONTAINER = "kctl.io/container-name"
LABEL_RESTART = "kctl.io/restart-count"


def unsupported_volumes(pod: core_pb2.Pod) -> str:
    """A message naming the first volume kctl cannot provide, or ''."""
    for v in pod.spec.volumes:
        if v.HasField("secret"):
            return f'volume "{v.name}": secret "{v.secret.secret_name}" not found (kctl has no Secrets)'
        if v.HasField("config_map"):
            return f'volume "{v.name}": configmap "{v.config_map.name}" not found (kctl has no ConfigMaps)'
        if v.HasField("persistent_volume_claim"):
            return (f'volume "{v.name}": persistentvolumeclaim "{v.persistent_volume_claim.claim_name}" '
                    "not found (kctl has no PersistentVolumeClaims)")
    return ""


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(s: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _REF.sub(sub, s)


def _field(pod: core_pb2.Pod, path: str, host_ip: str, pod_ip: str) -> str:
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
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _resource_field(c: core_pb2.Container, sel: core_pb2.ResourceFieldSelector) -> str:
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


def build_env(pod: core_pb2.Pod, c: core_pb2.Container, image: Image, host_ip: str, pod_ip: str) -> list[str]:
    env: dict[str, str] = {}
    for kv in image.config.env:
        k, _, v = kv.partition("=")
        env[k] = v
    for e in c.env:
        if e.HasField("value_from"):
            vf = e.value_from
            if vf.HasField("secret_key_ref"):
                raise ContainerConfigError(f'couldn\'t find key {vf.secret_key_ref.key} in Secret '
                                  f'{pod.metadata.namespace}/{vf.secret_key_ref.name} (kctl has no Secrets)')
            if vf.HasField("config_map_key_ref"):
                raise ContainerConfigError(f'couldn\'t find key {vf.config_map_key_ref.key} in ConfigMap '
                                  f'{pod.metadata.namespace}/{vf.config_map_key_ref.name} (kctl has no ConfigMaps)')
            if vf.HasField("field_ref"):
                env[e.name] = _field(pod, vf.field_ref.field_path, host_ip, pod_ip)
            elif vf.HasField("resource_field_ref"):
                env[e.name] = _resource_field(c, vf.resource_field_ref)
            else:
                env[e.name] = ""
        else:
            env[e.name] = expand(e.value, env)
    return [f"{k}={v}" for k, v in env.items()]


def build_args(c: core_pb2.Container, image: Image, env: list[str]) -> list[str]:
    envd = dict(kv.partition("=")[::2] for kv in env)
    if c.command:
        args = [expand(a, envd) for a in c.command] + [expand(a, envd) for a in c.args]
    elif c.args:
        args = list(image.config.entrypoint) + [expand(a, envd) for a in c.args]
    else:
        args = list(image.config.entrypoint) + list(image.config.cmd)
    if not args:
        raise ContainerConfigError(f"no command specified for container {c.name!r} and the image has none")
    return args


def volume_dir(pod_dir: str, name: str) -> str:
    return os.path.join(pod_dir, "volumes", name)


def prepare_volumes(pod: core_pb2.Pod, pod_dir: str) -> None:
    """Create emptyDir directories and hostPath *OrCreate targets."""
    try:
        _prepare_volumes(pod, pod_dir)
    except OSError as exc:
        raise ContainerRuntimeError(f"preparing the volumes of pod {pod.metadata.name}: {exc}") from exc


def _prepare_volumes(pod: core_pb2.Pod, pod_dir: str) -> None:
    for v in pod.spec.volumes:
        if v.HasField("empty_dir"):
            d = volume_dir(pod_dir, v.name)
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o777)
        elif v.HasField("host_path"):
            if v.host_path.type == "DirectoryOrCreate":
                os.makedirs(v.host_path.path, exist_ok=True)
            elif v.host_path.type == "FileOrCreate" and not os.path.exists(v.host_path.path):
                os.makedirs(os.path.dirname(v.host_path.path) or "/", exist_ok=True)
                open(v.host_path.path, "a").close()


def build_mounts(pod: core_pb2.Pod, c: core_pb2.Container, pod_dir: str,
                 pod_files: dict[str, str]) -> list[Mount]:
    vols = {v.name: v for v in pod.spec.volumes}
    mounts = [Mount(src, dst, True) for dst, src in pod_files.items()]
    for vm in c.volume_mounts:
        v = vols.get(vm.name)
        if v is None:
            raise ContainerConfigError(f'volumeMount "{vm.name}": no volume of that name')
        if v.HasField("empty_dir"):
            src = volume_dir(pod_dir, v.name)
        elif v.HasField("host_path"):
            src = v.host_path.path
            if not os.path.exists(src):
                raise ContainerConfigError(f'hostPath "{src}" of volume "{v.name}" does not exist')
        else:
            raise ContainerConfigError(unsupported_volumes(pod) or f'volume "{v.name}" has no supported source')
        if vm.sub_path:
            if os.path.isabs(vm.sub_path) or ".." in vm.sub_path.split("/"):
                raise ContainerConfigError(f"subPath {vm.sub_path!r} must be a relative path without '..'")
            src = os.path.join(src, vm.sub_path)
            try:
                os.makedirs(src, exist_ok=True)
            except OSError as exc:
                raise ContainerRuntimeError(f'subPath {vm.sub_path!r} of volume "{v.name}": {exc}') from exc
        mounts.append(Mount(src, vm.mount_path, vm.read_only))
    return mounts


def resources(c: core_pb2.Container) -> dict:
    out: dict = {}
    limits, requests = dict(c.resources.limits), dict(c.resources.requests)
    if "cpu" in limits:
        out["cpu_quota"] = max(1000, quantity.milli_value(limits["cpu"]) * CPU_PERIOD // 1000)
        out["cpu_period"] = CPU_PERIOD
    cpu_req = requests.get("cpu", limits.get("cpu"))
    out["cpu_shares"] = max(2, quantity.milli_value(cpu_req) * 1024 // 1000) if cpu_req else 2
    if "memory" in limits:
        out["memory_limit"] = quantity.value(limits["memory"])
    return out


def pod_hostname(pod: core_pb2.Pod) -> str:
    """hostNetwork pods have the node's name (kctl node names are host names); others their own."""
    if pod.spec.host_network:
        return pod.spec.node_name[:63]
    return (pod.spec.hostname or pod.metadata.name)[:63]


def container_config(pod: core_pb2.Pod, c: core_pb2.Container, image: Image, sandbox: Sandbox,
                     pod_dir: str, pod_files: dict[str, str], host_ip: str, cid: str,
                     restart: int, lowerdirs: list[str]) -> ContainerConfig:
    env = build_env(pod, c, image, host_ip, sandbox.ip)
    hostname = pod_hostname(pod)
    return ContainerConfig(
        id=cid, name=c.name, args=build_args(c, image, env), layers=lowerdirs, env=env,
        cwd=c.working_dir or image.config.working_dir or "/", user=image.config.user or None,
        hostname=hostname, netns_path=sandbox.netns_path or None,
        mounts=build_mounts(pod, c, pod_dir, pod_files), **resources(c),
        labels={LABEL_POD_UID: pod.metadata.uid, LABEL_POD_NAME: pod.metadata.name,
                LABEL_POD_NAMESPACE: pod.metadata.namespace, LABEL_CONTAINER: c.name,
                LABEL_RESTART: str(restart)},
        stdin=c.stdin, tty=c.tty)


def resolve_port(c: core_pb2.Container, port) -> int:
    """An IntOrString probe/handler port: a number, or a named container port."""
    which = port.WhichOneof("value")
    if which == "int_val":
        return port.int_val
    name = port.str_val
    if name.isdigit():
        return int(name)
    for p in c.ports:
        if p.name == name:
            return p.container_port
    raise ContainerConfigError(f"port {name!r} not found in container {c.name!r}")
