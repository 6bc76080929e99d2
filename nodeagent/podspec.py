"""From a pod spec container + its image to a runtime ContainerConfig.

Rules (the kubelet's):

* process args: ``command`` replaces the image Entrypoint (and drops its
  Cmd); ``args`` replace the image Cmd; ``$(VAR)`` in command/args/env values
  expands to earlier env vars (``$$`` escapes), unknown references stay as is.
* env: nodeagent/envvars.py (image Env, envFrom, env with valueFrom), from the
  ConfigMaps and Secrets in ``sources``; a missing one raises
  ``ContainerConfigError``: the container waits with reason
  CreateContainerConfigError.
* resources: cpu limit -> CFS quota (period 100 ms), cpu request -> shares
  (1024 per CPU, at least 2), memory limit -> memory limit (no swap).
* mounts: /etc/hosts, /etc/hostname, /etc/resolv.conf of the pod
  (nodeagent/podfiles.py); each volumeMount binds what nodeagent/volumes.py
  made of its volume (emptyDir, hostPath, configMap/secret/downwardAPI/
  projected files, a claim's PV directory), ``subPath``/``subPathExpr``
  resolved inside it.
* security: user, groups, capabilities, seccomp, sysctls, read-only root
  from the securityContext (nodeagent/security.py); runAsNonRoot with a
  root image is a ``ContainerConfigError``.

Pure functions apart from creating subPath directories (the host refusing
that is a ``ContainerRuntimeError``).
"""
from __future__ import annotations

from machinery import quantity
from machinery.pb import core_pb2
from nodeagent import envvars, security, volumes
from nodeagent.containers import ContainerConfig, Mount
from nodeagent.envvars import Sources, expand
from nodeagent.errors import ContainerConfigError
from nodeagent.images import Image
from nodeagent import podfiles
from nodeagent.network import Sandbox

CPU_PERIOD = 100_000

LABEL_POD_UID = "kctl.io/pod-uid"
LABEL_POD_NAME = "kctl.io/pod-name"
LABEL_POD_NAMESPACE = "kctl.io/pod-namespace"
LABEL_CONTAINER = "kctl.io/container-name"
LABEL_RESTART = "kctl.io/restart-count"


def build_env(pod: core_pb2.Pod, c: core_pb2.Container, image: Image, host_ip: str, pod_ip: str,
              sources: Sources | None = None) -> list[str]:
    """The container's environment (nodeagent/envvars.py)."""
    return envvars.build_env(pod, c, image.config.env, host_ip, pod_ip, sources)


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


def build_mounts(pod: core_pb2.Pod, c: core_pb2.Container, pod_dir: str,
                 pod_files: dict[str, str], sources: Sources | None = None,
                 env: dict[str, str] | None = None) -> list[Mount]:
    vols = {v.name: v for v in pod.spec.volumes}
    mounts = [Mount(src, dst, True) for dst, src in pod_files.items()]
    for vm in c.volume_mounts:
        v = vols.get(vm.name)
        if v is None:
            raise ContainerConfigError(f'volumeMount "{vm.name}": no volume of that name')
        src = volumes.mount_source(pod, v, vm, pod_dir, sources, env or {})
        mounts.append(Mount(src, vm.mount_path, vm.read_only or volumes.read_only(v)))
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
    """hostNetwork pods have the node's name (kctl node names are host names); others their own
    (the kubelet's rule, nodeagent/podfiles.py: /etc/hostname says the same)."""
    return podfiles.pod_hostname(pod)


def container_config(pod: core_pb2.Pod, c: core_pb2.Container, image: Image, sandbox: Sandbox,
                     pod_dir: str, pod_files: dict[str, str], host_ip: str, cid: str,
                     restart: int, lowerdirs: list[str], sources: Sources | None = None,
                     options: security.Options | None = None) -> ContainerConfig:
    env = build_env(pod, c, image, host_ip, sandbox.ip, sources)
    hostname = pod_hostname(pod)
    return ContainerConfig(
        id=cid, name=c.name, args=build_args(c, image, env), layers=lowerdirs, env=env,
        cwd=c.working_dir or image.config.working_dir or "/",
        **security.config(pod, c, image.config.user or "", lowerdirs, options),
        hostname=hostname, netns_path=sandbox.netns_path or None,
        mounts=build_mounts(pod, c, pod_dir, pod_files, sources, dict(kv.partition("=")[::2] for kv in env)),
        **resources(c),
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
