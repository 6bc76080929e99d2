"""The node agent's projected ServiceAccount tokens (nodeagent/tokens.py):
the kubelet's refresh rule, caching, failures, and the projected payload."""
import asyncio

import pytest

from machinery import errors, kinds
from machinery.pb import core_pb2
from nodeagent import volumes
from nodeagent.envvars import Sources
from nodeagent.errors import VolumeSetupError
from nodeagent.tokens import PodTokens, refresh_at


class Clock:
    now = 1_000_000.0

    def __call__(self):
        return self.now


class FakeTokenClient:
    def __init__(self, clock):
        self.clock, self.requests, self.fail = clock, [], None

    async def create_token(self, ns, sa, tr):
        if self.fail:
            raise self.fail
        self.requests.append((ns, sa, tr))
        out = type(tr)()
        out.CopyFrom(tr)
        out.status.token = f"tok{len(self.requests)}"
        out.status.expiration_timestamp.seconds = int(self.clock.now) + tr.spec.expiration_seconds
        return out


def pod():
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "team", "uid-1"
    p.spec.service_account_name = "robot"
    v = p.spec.volumes.add(name="kube-api-access-abcde")
    v.projected.default_mode = 0o644
    tok = v.projected.sources.add().service_account_token
    tok.path, tok.expiration_seconds, tok.audience = "token", 3607, ""
    return p


def test_refresh_rule_is_eighty_percent_or_a_day():
    assert refresh_at(10_000, 3600, 0) == 10_000 - 720
    assert refresh_at(1_000_000, 7 * 86400, 5) == 1_000_000 - 7 * 86400 + 86400 - 5


async def test_token_is_bound_to_the_pod_cached_and_refreshed():
    clock, woken = Clock(), []
    client = FakeTokenClient(clock)
    toks = PodTokens(client, lambda: woken.append(clock.now), clock=clock, jitter=lambda: 0)
    p = pod()
    proj = p.spec.volumes[0].projected.sources[0].service_account_token
    assert await toks.get(p, proj) == b"tok1"
    ns, sa, tr = client.requests[0]
    assert (ns, sa, list(tr.spec.audiences), tr.spec.expiration_seconds) == ("team", "robot", [], 3607)
    ref = tr.spec.bound_object_ref
    assert (ref.kind, ref.api_version, ref.name, ref.uid) == ("Pod", "v1", "web", "uid-1")
    clock.now += 2800
    assert await toks.get(p, proj) == b"tok1"                # before 80 % of 3607 s
    clock.now += 100
    assert await toks.get(p, proj) == b"tok2"                # after
    client.fail = errors.Unavailable("apiserver down")
    clock.now += 3000
    assert await toks.get(p, proj) == b"tok2"                # refresh failed, old token still valid
    clock.now += 1000
    with pytest.raises(VolumeSetupError, match="failed to fetch token: apiserver down"):
        await toks.get(p, proj)                               # expired, nothing to fall back on
    toks.close()
    await asyncio.sleep(0)


def test_projected_payload_writes_the_token_on_tmpfs():
    p = pod()
    src = Sources(tokens={("", 3607): b"jwt"})
    files, tmpfs = volumes.payload(p, p.spec.volumes[0], src, "10.0.0.1", "10.1.0.2")
    assert tmpfs and files["token"].data == b"jwt" and files["token"].mode == 0o644
    with pytest.raises(VolumeSetupError, match="failed to fetch token"):
        volumes.payload(p, p.spec.volumes[0], Sources(), "", "")
    assert isinstance(p.spec.volumes[0], core_pb2.Volume)


def test_kubernetes_service_env_as_the_kubelet_writes_it():
    from nodeagent.envvars import build_env, service_env
    svc = kinds.new("Service")
    svc.metadata.name = "kubernetes"
    svc.spec.cluster_ip = "10.96.0.1"
    svc.spec.ports.add(name="https", port=443, protocol="TCP")
    env = service_env(svc)
    assert env == {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
                   "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
                   "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
                   "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1"}
    p = pod()
    c = p.spec.containers.add(name="app", image="busybox")
    c.env.add(name="KUBERNETES_SERVICE_PORT", value="8443")
    out = build_env(p, c, ["PATH=/bin"], "", "", Sources(service_env=env))
    assert out[0] == "PATH=/bin" and "KUBERNETES_SERVICE_HOST=10.96.0.1" in out
    assert "KUBERNETES_SERVICE_PORT=8443" in out and "KUBERNETES_SERVICE_PORT=443" not in out
    svc.spec.cluster_ip = "None"
    assert service_env(svc) == {}
