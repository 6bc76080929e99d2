"""ServiceAccounts in the apiserver: tokens (claims, expiry, audiences, keys),
the TokenRequest subresource's rules, the token authenticator (incl. the
liveness of the account and the bound pod) and the ServiceAccount admission
plugin's output, against a fake Store. Cases follow Kubernetes'
pkg/serviceaccount/jwt_test.go, pkg/registry/core/serviceaccount/storage
and plugin/pkg/admission/serviceaccount/admission_test.go."""
from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from apiserver import admission
from apiserver.serviceaccount import authn, keys, store_getter, tokens
from apiserver.admission_cache import FencedIndex
from apiserver.auth.index import ObjectIndex
from apiserver.serviceaccount.admission import MOUNT_PATH, ServiceAccountPlugin, account_view
from apiserver.serviceaccount.tokenrequest import TokenRequests, from_json, to_json
from machinery import codec, defaults, errors, kinds
from machinery.pb import serviceaccount_pb2
from machinery.validation import validate


def run(coro):
    return asyncio.run(coro)


class FakeStore:
    def __init__(self, *objs):
        self.objs = {}
        for o in objs:
            self.put(o)

    def put(self, o):
        self.objs[(kinds.of(o).kind, o.metadata.namespace, o.metadata.name)] = o

    async def get(self, info, ns, name):
        o = self.objs.get((info.kind, ns, name))
        if o is None:
            raise errors.NotFound(f'{info.resource} "{name}" not found')
        return codec.pack(o)


def sa(name="default", ns="default", uid="sa-uid", automount=None):
    o = kinds.new("ServiceAccount")
    o.metadata.name, o.metadata.namespace, o.metadata.uid = name, ns, uid
    if automount is not None:
        o.automount_service_account_token = automount
    return o


def pod(name="p", ns="default", uid="pod-uid", sa_name="", automount=None, containers=("app",), init=()):
    o = kinds.new("Pod")
    o.metadata.name, o.metadata.namespace, o.metadata.uid = name, ns, uid
    o.spec.service_account_name = sa_name
    for c in containers:
        o.spec.containers.add(name=c, image="busybox")
    for c in init:
        o.spec.init_containers.add(name=c, image="busybox")
    if automount is not None:
        o.spec.automount_service_account_token = automount
    return o


@pytest.fixture(scope="module")
def key_set(tmp_path_factory):
    return keys.load(directory=tmp_path_factory.mktemp("keys"))


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def issuer_with(key_set, clock=None, auds=()):
    return tokens.Issuer(key_set, api_audiences=auds, clock=clock or Clock())


# ------------------------------------------------------------------ keys

def test_keys_are_generated_once_and_reloaded(tmp_path):
    first = keys.load(directory=tmp_path)
    assert (tmp_path / "sa.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "sa.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    again = keys.load(directory=tmp_path)
    assert again.kid == first.kid and len(again.public) == 1


def test_key_flags_sign_with_one_and_verify_with_others(tmp_path, key_set):
    other = keys.load(directory=tmp_path / "b")
    ks = keys.load(str(tmp_path / "b" / "sa.key"), [str(tmp_path / "b" / "sa.pub")], None)
    assert ks.kid == other.kid and len(ks.public) == 1
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(keys.KeyFileError, match="not a PEM-encoded key"):
        keys.load(str(bad))
    with pytest.raises(keys.KeyFileError, match="cannot read"):
        keys.load(str(tmp_path / "missing"))


# ---------------------------------------------------------------- tokens

def test_token_carries_kubernetes_claims(key_set):
    clock = Clock()
    iss = issuer_with(key_set, clock)
    token, exp = iss.issue("ns1", "robot", "sa-uid", ["api"], 3600, pod=("p", "pod-uid"))
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == key_set.kid
    c = jwt.decode(token, options={"verify_signature": False})
    now = int(clock.now)
    assert exp == now + 3600
    assert {k: c[k] for k in ("iss", "sub", "aud", "exp", "iat", "nbf")} == {
        "iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:ns1:robot",
        "aud": ["api"], "exp": now + 3600, "iat": now, "nbf": now}
    assert c["kubernetes.io"] == {"namespace": "ns1", "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                                  "pod": {"name": "p", "uid": "pod-uid"}}
    assert c["jti"]


def test_verify_accepts_own_token_and_refuses_expired_foreign_and_wrong_audience(key_set, tmp_path):
    clock = Clock(time.time())
    iss = issuer_with(key_set, clock)
    token, _ = iss.issue("default", "default", "u", [], 600)
    claims = iss.verify(token)
    assert claims.username == "system:serviceaccount:default:default"
    assert claims.audiences == (tokens.DEFAULT_ISSUER,)
    clock.now += 600 + tokens.LEEWAY + 1
    with pytest.raises(tokens.InvalidToken, match="expired"):
        iss.verify(token)
    other = issuer_with(keys.load(directory=tmp_path), Clock(time.time()))
    forged, _ = other.issue("default", "default", "u", [], 600)
    with pytest.raises(tokens.InvalidToken, match="unknown key"):
        issuer_with(key_set).verify(forged)
    aud_token, _ = issuer_with(key_set, Clock(time.time())).issue("default", "default", "u", ["vault"], 600)
    with pytest.raises(tokens.InvalidToken, match="audiences"):
        issuer_with(key_set, Clock(time.time())).verify(aud_token)
    assert issuer_with(key_set, Clock(time.time()), ("vault", "api")).verify(aud_token).audiences == ("vault",)


def test_tampered_token_is_refused(key_set):
    iss = issuer_with(key_set, Clock(time.time()))
    token, _ = iss.issue("default", "default", "u", [], 600)
    head, body, sig = token.split(".")
    evil = jwt.utils.base64url_encode(jwt.utils.base64url_decode(body).replace(b'"default"', b'"kube-system"', 1))
    with pytest.raises(tokens.InvalidToken, match="signature"):
        iss.verify(f"{head}.{evil.decode()}.{sig}")


# ------------------------------------------------------------ TokenRequest

def token_request(**spec):
    return from_json({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})


def test_token_request_defaults_and_binds_to_pod(key_set):
    store = FakeStore(sa("robot"), pod(sa_name="robot"))
    reqs = TokenRequests(store, issuer_with(key_set, Clock(time.time())))
    out = run(reqs.create("default", "robot", token_request(boundObjectRef={"kind": "Pod", "apiVersion": "v1",
                                                                            "name": "p", "uid": "pod-uid"})))
    assert out.spec.expiration_seconds == 3600 and list(out.spec.audiences) == [tokens.DEFAULT_ISSUER]
    body = to_json(out)
    assert body["kind"] == "TokenRequest" and body["metadata"]["name"] == "robot"
    assert body["status"]["expirationTimestamp"].endswith("Z")
    c = jwt.decode(out.status.token, options={"verify_signature": False})
    assert c["kubernetes.io"]["pod"] == {"name": "p", "uid": "pod-uid"}
    assert c["exp"] - c["iat"] == 3600


@pytest.mark.parametrize("spec,store_objs,err,msg", [
    ({"expirationSeconds": 599}, [sa()], errors.Invalid,
     'TokenRequest.authentication.k8s.io "default" is invalid: spec.expirationSeconds: Invalid value: 599: '
     "may not specify a duration less than 10 minutes"),
    ({"expirationSeconds": 2**32 + 1}, [sa()], errors.Invalid, "may not specify a duration larger than 2^32 seconds"),
    ({}, [], errors.NotFound, 'serviceaccounts "default" not found'),
    ({"boundObjectRef": {"kind": "Node", "name": "n"}}, [sa()], errors.Invalid,
     'spec.boundObjectRef.kind: Unsupported value: "Node"'),
    ({"boundObjectRef": {"kind": "Pod", "name": "p", "uid": "old"}}, [sa(), pod(sa_name="default")],
     errors.Conflict, "the UID in the bound object reference (old) does not match the UID in record"),
    ({"boundObjectRef": {"kind": "Pod", "name": "p"}}, [sa(), pod(sa_name="other")], errors.BadRequest,
     'cannot bind token for serviceaccount "default" to pod running with different serviceaccount name.'),
    ({"boundObjectRef": {"kind": "Secret", "name": "s"}}, [sa()], errors.NotFound, 'secrets "s" not found'),
])
def test_token_request_refusals(key_set, spec, store_objs, err, msg):
    reqs = TokenRequests(FakeStore(*store_objs), issuer_with(key_set))
    with pytest.raises(err) as exc:
        run(reqs.create("default", "default", token_request(**spec)))
    assert msg in exc.value.message


def test_token_request_body_must_be_a_token_request():
    with pytest.raises(errors.BadRequest, match="must be an authentication.k8s.io/v1 TokenRequest"):
        from_json({"apiVersion": "v1", "kind": "Pod"})


# ----------------------------------------------------------- authenticator

def authenticator(store, iss):
    return authn.ServiceAccountTokens(iss, store_getter(store))


def test_authenticator_identity_and_liveness(key_set):
    store = FakeStore(sa("robot", "ns1", uid="u1"), pod("p", "ns1", uid="pu", sa_name="robot"))
    iss = issuer_with(key_set, Clock(time.time()))
    a = authenticator(store, iss)
    token, _ = iss.issue("ns1", "robot", "u1", [], 3600, pod=("p", "pu"))
    who = run(a.token(token))
    assert who.name == "system:serviceaccount:ns1:robot" and who.uid == "u1"
    assert who.groups == ("system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated")
    assert who.extra[authn.POD_NAME] == ("p",) and who.extra[authn.POD_UID] == ("pu",)
    assert run(a.token("not-a-jwt")) is None                     # someone else's kind of token
    store.put(pod("p", "ns1", uid="recreated", sa_name="robot"))
    with pytest.raises(errors.Unauthorized):
        run(a.token(token))
    store.objs.clear()
    unbound, _ = iss.issue("ns1", "robot", "u1", [], 3600)
    with pytest.raises(errors.Unauthorized):                     # the account is gone
        run(a.token(unbound))


def test_authenticator_refuses_expired_token_with_401(key_set):
    clock = Clock(time.time() - 4000)
    iss = issuer_with(key_set, clock)
    token, _ = iss.issue("default", "default", "sa-uid", [], 3600)
    with pytest.raises(errors.Unauthorized) as exc:
        run(authenticator(FakeStore(sa()), issuer_with(key_set, Clock(time.time()))).token(token))
    assert exc.value.http_code == 401 and exc.value.message == "Unauthorized"


def test_bearer_header_parsing():
    from apiserver.auth.authn import _bearer as bearer
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer(None) is None and bearer("Bearer ") is None


# ------------------------------------------------------------- admission

def admit(store, p):
    defaults.apply_defaults(p)
    req = admission.Request(admission.CREATE, kinds.BY_KIND["Pod"], p, store=store)

    async def no_sleep(_):
        return None
    run(ServiceAccountPlugin(sleep=no_sleep).mutate(req))
    return p


def test_admission_defaults_account_and_mounts_api_access():
    p = admit(FakeStore(sa()), pod(containers=("a", "b"), init=("i",)))
    assert p.spec.service_account_name == "default"
    [vol] = p.spec.volumes
    assert vol.name.startswith("kube-api-access-") and len(vol.name) == len("kube-api-access-") + 5
    assert codec.to_dict(vol)["projected"] == {
        "defaultMode": 420,
        "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    for c in list(p.spec.containers) + list(p.spec.init_containers):
        [m] = c.volume_mounts
        assert (m.name, m.mount_path, m.read_only) == (vol.name, MOUNT_PATH, True)
    assert validate(p) == []


@pytest.mark.parametrize("pod_auto,sa_auto,mounted", [
    (None, None, True), (False, None, False), (None, False, False), (True, False, True), (False, True, False)])
def test_admission_automount_rules(pod_auto, sa_auto, mounted):
    p = admit(FakeStore(sa(automount=sa_auto)), pod(automount=pod_auto))
    assert bool(p.spec.volumes) is mounted


def test_admission_keeps_an_existing_mount_and_refuses_a_missing_account():
    p = pod(containers=("a", "b"))
    p.spec.volumes.add(name="own").empty_dir.SetInParent()
    p.spec.containers[0].volume_mounts.add(name="own", mount_path=MOUNT_PATH)
    p = admit(FakeStore(sa()), p)
    assert [v.name for v in p.spec.volumes][0] == "own" and len(p.spec.volumes) == 2
    assert [m.name for m in p.spec.containers[0].volume_mounts] == ["own"]
    with pytest.raises(errors.Forbidden) as exc:
        admit(FakeStore(sa()), pod(sa_name="robot"))
    assert exc.value.message == ('pods "p" is forbidden: error looking up service account default/robot: '
                                 'serviceaccount "robot" not found')
    with pytest.raises(errors.Forbidden, match="default/default"):
        admit(FakeStore(), pod())


def test_admission_disable_knows_its_plugins():
    with pytest.raises(errors.ConfigError, match="unknown admission plugins: Nope"):
        admission.disable(["Nope"])


# ------------------------------------------------------------- validation

def test_projected_token_validation():
    p = pod()
    v = p.spec.volumes.add(name="t")
    v.projected.sources.add().service_account_token.path = "/abs"
    v.projected.sources.add().service_account_token.SetInParent()
    p.spec.volumes.add(name="u").projected.sources.add().service_account_token.path = "tok"
    defaults.apply_defaults(p)
    assert p.spec.volumes[1].projected.sources[0].service_account_token.expiration_seconds == 3600
    p.spec.volumes[1].projected.sources[0].service_account_token.expiration_seconds = 60
    msgs = [str(e) for e in validate(p)]
    assert msgs == [
        'spec.volumes[0].projected.sources[0].serviceAccountToken.path: Invalid value: "/abs": must be a relative path',
        "spec.volumes[0].projected.sources[1].serviceAccountToken.path: Required value",
        "spec.volumes[1].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: "
        "may not specify a duration less than 10 minutes"]


def test_service_account_kind():
    info = kinds.resolve("sa")
    assert (info.kind, info.api_version, info.namespaced) == ("ServiceAccount", "v1", True)
    o = sa()
    assert validate(o) == []
    o.secrets.add()
    assert [str(e) for e in validate(o)] == ["secrets[0].name: Required value"]
    assert isinstance(serviceaccount_pb2.TokenRequest(), object)


def test_describe_shows_the_api_access_volume_as_kubectl_does():
    from kubectlish.describe_blocks import volume_lines
    from apiserver.serviceaccount.admission import api_access_volume
    assert volume_lines([api_access_volume("kube-api-access-x2b4c")]) == [
        "Volumes:", "  kube-api-access-x2b4c:",
        "    Type:\tProjected (a volume that contains injected data from multiple sources)",
        "    TokenExpirationSeconds:\t3607", "    ConfigMapName:\tkube-root-ca.crt", "    ConfigMapOptional:\t<nil>",
        "    DownwardAPI:\ttrue"]


def test_admission_copies_the_accounts_image_pull_secrets_unless_the_pod_has_some():
    account = sa()
    account.image_pull_secrets.add(name="registry")
    assert [s.name for s in admit(FakeStore(account), pod()).spec.image_pull_secrets] == ["registry"]
    own = pod()
    own.spec.image_pull_secrets.add(name="mine")
    assert [s.name for s in admit(FakeStore(account), own).spec.image_pull_secrets] == ["mine"]


def test_key_dir_that_cannot_be_written_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(keys.KeyFileError, match="cannot create the service account key pair"):
        keys.load(directory=blocker / "sub")


# ------------------------------------------------ admission over the watch cache

class CountingStore(FakeStore):
    """FakeStore that counts etcd reads, with a FencedIndex of ServiceAccounts."""

    def __init__(self, *objs, indexed=(), ready=True):
        super().__init__(*objs)
        self.reads = 0
        index = ObjectIndex("ServiceAccount")
        for o in indexed:
            index.put(o)
        index.ready = ready
        self.service_accounts = FencedIndex(index, account_view)

    async def get(self, info, ns, name):
        self.reads += 1
        return await super().get(info, ns, name)


def test_admission_reads_the_account_from_the_cache_else_etcd():
    store = CountingStore(sa(automount=True), indexed=[sa(automount=False)])
    assert admit(store, pod()).spec.volumes == [] and store.reads == 0    # the index's account decides
    store = CountingStore(sa(automount=False), indexed=[sa("other")])     # not in the index: etcd
    assert admit(store, pod()).spec.volumes == [] and store.reads == 1
    store = CountingStore(sa(automount=False), indexed=[sa(automount=True)], ready=False)
    assert admit(store, pod()).spec.volumes == [] and store.reads == 1    # before the first list


def test_an_account_this_apiserver_wrote_is_read_from_etcd_until_the_cache_has_it():
    old, new = sa(automount=True), sa(automount=False)
    store = CountingStore(new, indexed=[old])
    run(ServiceAccountPlugin().validate(admission.Request(admission.UPDATE, kinds.BY_KIND["ServiceAccount"],
                                                          new, old, store=store)))
    assert admit(store, pod()).spec.volumes == [] and store.reads == 1
    store.service_accounts.index.put(new)                                 # the watch event arrived
    assert admit(store, pod()).spec.volumes == [] and store.reads == 1
    assert store.service_accounts.pending == {}
