"""The node agent's errors: one family under machinery.errors (design: one exception tree).

Everything the agent does to the host (runc/conmon, mounts and cgroups,
skopeo and layer files, netlink and netns, iptables) can be refused by the
host, so those errors are ``HostError``s, grouped under ``NodeAgentError``;
a container the pod spec cannot configure is a ``ConfigError``::

    machinery.errors.HostError
    └── NodeAgentError
        ├── ContainerRuntimeError     runc, conmon, overlay mounts, bundle files
        │   ├── ContainerNotFound     no container with that id
        │   ├── ContainerNotRunning   an exec into a container that has exited
        │   └── ExecTimeout           an exec ran past its timeout
        ├── ImagePullError            reason ErrImagePull / ErrImageNeverPull / InvalidImageName
        ├── SkopeoError               one skopeo call failed (the store tries the next source)
        ├── NetworkError              netlink, sysctl, netns, IPAM
        │   └── IPAMExhausted         no free address in the pod CIDR
        ├── IptablesError             an iptables/conntrack command failed
        └── ProxyError                a proxy sync or cleanup failed (wraps an IptablesError)
    machinery.errors.ConfigError
    ├── ContainerConfigError          a container cannot be configured
    │   │                             (reason CreateContainerConfigError)
    │   └── VolumeSetupError          a volume's object is missing or unusable
    │                                 (ContainerCreating + FailedMount event)
    └── AgentConfigError              an agent setting that cannot be used
                                      (proxy mode, node IP, CIDRs); also a ValueError

Each boundary translates the foreign error it meets (OSError, NetlinkError,
tarfile errors, a non-zero exit) into one of these with ``raise ... from exc``,
so callers catch the family and the cause stays in the traceback.
"""
from __future__ import annotations

from machinery.errors import ConfigError, HostError


class NodeAgentError(HostError):
    """The host refused something the node agent asked of it."""


class ContainerRuntimeError(NodeAgentError):
    """A runtime operation failed (runc/conmon/mount/cgroup)."""


class ContainerNotFound(ContainerRuntimeError):
    """No container with this id under the runtime's root."""


class ContainerNotRunning(ContainerRuntimeError):
    """The container has exited: nothing can be exec'd in it."""


class ExecTimeout(ContainerRuntimeError):
    """An exec in a container did not finish within its timeout (the command was killed)."""


class ImagePullError(NodeAgentError):
    """A pull failed; reason is Kubernetes' (ErrImagePull, ErrImageNeverPull, InvalidImageName)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class SkopeoError(NodeAgentError):
    """One skopeo call failed; the message is skopeo's fatal message as one line."""


class NetworkError(NodeAgentError):
    """Any failure of the pod network layer (netlink, sysctl, netns, IPAM)."""


class IPAMExhausted(NetworkError):
    """No free address left in the node's pod CIDR."""


class IptablesError(NodeAgentError):
    """An iptables command failed (the message carries stderr and, for restore, the bad line)."""


class ProxyError(NodeAgentError):
    """A proxy sync or cleanup failed (wraps the IptablesError)."""


class ContainerConfigError(ConfigError):
    """The container cannot be configured (reason CreateContainerConfigError)."""


class VolumeSetupError(ContainerConfigError):
    """A volume cannot be set up: its ConfigMap/Secret/claim is missing, a key is absent."""

    volume = ""        # the pod's volume it is about, when known


class AgentConfigError(ConfigError, ValueError):
    """A node agent setting that cannot be used; the message names it."""
