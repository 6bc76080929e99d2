"""The `serviceaccounts/token` subresource (pkg/registry/core/serviceaccount/storage/token.go):
a TokenRequest in, the same TokenRequest with `status.token` and
`status.expirationTimestamp` out. Shared by the HTTP route (POST
.../serviceaccounts/NAME/token) and the gRPC CreateSubresource call.

Kubernetes' rules: expirationSeconds defaults to one hour and must lie
between 10 minutes and 2^32 s; no audiences means the apiserver's own
(--api-audiences, default the issuer); the ServiceAccount must exist; a
boundObjectRef names a Pod or Secret of the same namespace that must
exist (and have the given uid; a Pod must run as this ServiceAccount); the
token then carries its name and uid and dies with it (authn.py checks).
Dry-run requests are validated and answered without a token.
"""
from __future__ import annotations

from google.protobuf import json_format

from apiserver.serviceaccount.tokens import Issuer
from machinery import codec, errors, kinds
from machinery.pb import serviceaccount_pb2
from machinery.validation.serviceaccount import validate_token_request

API_VERSION, KIND = "authentication.k8s.io/v1", "TokenRequest"
DEFAULT_EXPIRATION = 3600


def from_json(data: dict) -> serviceaccount_pb2.TokenRequest:
    """A TokenRequest from a JSON (or protobuf-decoded) body; 400 when it is not one."""
    if data.get("kind", KIND) != KIND or data.get("apiVersion", API_VERSION) != API_VERSION:
        raise errors.BadRequest(f"the body must be an {API_VERSION} {KIND}, not "
                                f"{data.get('apiVersion')} {data.get('kind')}")
    tr = serviceaccount_pb2.TokenRequest()
    try:
        json_format.ParseDict({k: v for k, v in data.items() if k not in ("apiVersion", "kind")}, tr)
    except json_format.ParseError as exc:
        raise errors.BadRequest(f"{KIND} in version \"v1\" cannot be handled as a {KIND}: {exc}") from None
    return tr


def to_json(tr: serviceaccount_pb2.TokenRequest) -> dict:
    return {"apiVersion": API_VERSION, "kind": KIND, **codec.to_dict(tr)}


class TokenRequests:
    def __init__(self, store, issuer: Issuer):
        self.store, self.issuer = store, issuer

    async def _get(self, kind: str, ns: str, name: str):
        return codec.unpack(await self.store.get(kinds.BY_KIND[kind], ns, name))

    async def create(self, namespace: str, name: str, tr: serviceaccount_pb2.TokenRequest,
                     dry_run: bool = False) -> serviceaccount_pb2.TokenRequest:
        namespace = namespace or "default"
        spec = tr.spec
        if not spec.HasField("expiration_seconds"):
            spec.expiration_seconds = DEFAULT_EXPIRATION
        problems = validate_token_request(tr)
        if tr.metadata.name and tr.metadata.name != name:
            problems.append(errors.invalid("metadata.name", tr.metadata.name,
                                           "must match the service account name if specified"))
        if tr.metadata.namespace and tr.metadata.namespace != namespace:
            problems.append(errors.invalid("metadata.namespace", tr.metadata.namespace,
                                           "must match the service account namespace if specified"))
        if problems:
            raise errors.Invalid.of(f"{KIND}.authentication.k8s.io", name, problems, kind=KIND,
                                    group="authentication.k8s.io")
        sa = await self._get("ServiceAccount", namespace, name)
        if not spec.audiences:
            spec.audiences.extend(self.issuer.api_audiences)
        bound = await self._bound(namespace, sa, spec.bound_object_ref) if spec.HasField("bound_object_ref") else {}
        tr.metadata.name, tr.metadata.namespace = name, namespace
        tr.metadata.creation_timestamp.GetCurrentTime()
        tr.metadata.creation_timestamp.nanos = 0
        if dry_run:
            return tr
        token, exp = self.issuer.issue(namespace, name, sa.metadata.uid, list(spec.audiences),
                                       spec.expiration_seconds, **bound)
        tr.status.token = token
        tr.status.expiration_timestamp.seconds = exp
        return tr

    async def _bound(self, namespace: str, sa, ref) -> dict:
        obj = await self._get(ref.kind, namespace, ref.name)
        if ref.uid and ref.uid != obj.metadata.uid:
            raise errors.Conflict(f"the UID in the bound object reference ({ref.uid}) does not match the UID in "
                                  "record. The object might have been deleted and then recreated")
        if ref.kind == "Pod":
            if obj.spec.service_account_name != sa.metadata.name:
                raise errors.BadRequest(f'cannot bind token for serviceaccount "{sa.metadata.name}" to pod '
                                        "running with different serviceaccount name.")
            return {"pod": (obj.metadata.name, obj.metadata.uid)}
        return {"secret": (obj.metadata.name, obj.metadata.uid)}
