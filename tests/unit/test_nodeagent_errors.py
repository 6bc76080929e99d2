"""The node agent's errors sit in the project's one exception tree (nodeagent/errors.py)."""
from __future__ import annotations

import pytest

from machinery import errors as kerrors
from nodeagent import errors


@pytest.mark.parametrize("cls", [
    errors.ContainerRuntimeError, errors.ContainerNotFound, errors.ContainerNotRunning, errors.ExecTimeout,
    errors.ImagePullError, errors.SkopeoError, errors.NetworkError, errors.IPAMExhausted,
    errors.IptablesError, errors.ProxyError,
])
def test_host_operations_are_host_errors(cls):
    assert issubclass(cls, errors.NodeAgentError) and issubclass(cls, kerrors.HostError)
    assert issubclass(cls, kerrors.KctlError)


def test_config_errors_are_the_one_config_error_family():
    for cls in (errors.ContainerConfigError, errors.AgentConfigError):
        assert issubclass(cls, kerrors.ConfigError) and not issubclass(cls, kerrors.HostError)
    assert issubclass(errors.AgentConfigError, ValueError)       # argument checks callers know


def test_image_pull_error_keeps_kubernetes_reason():
    err = errors.ImagePullError("ErrImageNeverPull", 'image "x" is not present')
    assert (err.reason, err.message, str(err)) == ("ErrImageNeverPull", 'image "x" is not present',
                                                   'ErrImageNeverPull: image "x" is not present')
