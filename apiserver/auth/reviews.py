"""The create-only review APIs: nothing is stored, the answer is the
request with its status filled in (201 Created), over HTTP and gRPC.

    authorization.k8s.io/v1  SelfSubjectAccessReview   may I ...?          (kubectl auth can-i)
                             SubjectAccessReview       may USER ...?       (admins, webhooks)
                             LocalSubjectAccessReview  may USER ... in NS? (namespace admins)
                             SelfSubjectRulesReview    what may I do in NS? (kubectl auth can-i --list)
    authentication.k8s.io/v1 SelfSubjectReview         who am I?            (kubectl auth whoami)

A review is authorized like any create (`create selfsubjectaccessreviews`
in authorization.k8s.io; system:basic-user grants the self reviews to
every authenticated user; a LocalSubjectAccessReview is a create in its
namespace, which the `admin` role grants). Over gRPC a review is a Create
of its message (the type URL names the kind; a LocalSubjectAccessReview's
namespace is its metadata.namespace); over HTTP a POST to its collection
(apiserver/http/review_routes.py). Discovery lists them (create only). The access reviews ask the apiserver's own
authorizer chain; the rules review lists the RBAC rules (and a node's
static rules) that apply in the namespace, as Kubernetes' RulesFor does.
Validation follows Kubernetes' (exactly one of resourceAttributes and
nonResourceAttributes; a SubjectAccessReview names a user or a group).
"""
from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import Message

from apiserver.auth.authz import ALLOW, DENY, Attributes
from apiserver.auth.user import UserInfo
from machinery import errors
from machinery.errors import invalid
from machinery.pb import authorization_pb2 as pb


@dataclass(frozen=True)
class Review:
    kind: str
    group: str
    plural: str
    message: type
    namespaced: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1"

    @property
    def type_url(self) -> str:
        return "type.googleapis.com/" + self.message.DESCRIPTOR.full_name


AUTHZ, AUTHN = "authorization.k8s.io", "authentication.k8s.io"
REVIEWS = (Review("SelfSubjectAccessReview", AUTHZ, "selfsubjectaccessreviews", pb.SelfSubjectAccessReview),
           Review("SubjectAccessReview", AUTHZ, "subjectaccessreviews", pb.SubjectAccessReview),
           Review("SelfSubjectRulesReview", AUTHZ, "selfsubjectrulesreviews", pb.SelfSubjectRulesReview),
           Review("SelfSubjectReview", AUTHN, "selfsubjectreviews", pb.SelfSubjectReview))
# A SubjectAccessReview confined to one namespace
# (/apis/authorization.k8s.io/v1/namespaces/NS/localsubjectaccessreviews over HTTP).
LOCAL = Review("LocalSubjectAccessReview", AUTHZ, "localsubjectaccessreviews", pb.LocalSubjectAccessReview, True)
ALL = (*REVIEWS, LOCAL)
BY_TYPE_URL = {r.type_url: r for r in ALL}
BY_PATH = {(r.group, r.plural): r for r in ALL}


def grpc_attributes(user: UserInfo, review: Review, any_obj) -> Attributes:
    namespace = ""
    if review.namespaced:
        obj = review.message()
        any_obj.Unpack(obj)
        namespace = obj.metadata.namespace
    return Attributes(user, "create", namespace=namespace, api_group=review.group, api_version="v1",
                      resource=review.plural)


def decode(review: Review, data: dict) -> Message:
    data = dict(data)
    data.setdefault("apiVersion", review.api_version)
    data.setdefault("kind", review.kind)
    if data.get("kind") != review.kind or data.get("apiVersion") != review.api_version:
        raise errors.BadRequest(f"the kind in the data ({data.get('kind')}) does not match the expected kind "
                                f"({review.kind})")
    msg = review.message()
    try:
        json_format.ParseDict(data, msg)
    except json_format.ParseError as exc:
        raise errors.BadRequest(f'{review.kind} in version "v1" cannot be handled as a {review.kind}: '
                                f"strict decoding error: {exc}") from None
    return msg


def to_json(obj: Message) -> dict:
    """JSON as Kubernetes writes it: `status.allowed` is never omitted (clients require it)."""
    d = json_format.MessageToDict(obj)
    d.setdefault("metadata", {})
    if "allowed" in obj.status.DESCRIPTOR.fields_by_name:
        d.setdefault("status", {}).setdefault("allowed", obj.status.allowed)
    return d


def _attributes(user: UserInfo, spec) -> Attributes:
    if spec.HasField("resource_attributes"):
        r = spec.resource_attributes
        return Attributes(user, r.verb, namespace=r.namespace, api_group=r.group, api_version=r.version,
                          resource=r.resource, subresource=r.subresource, name=r.name)
    n = spec.non_resource_attributes
    return Attributes(user, n.verb, resource_request=False, path=n.path)


def _validate(review: Review, obj) -> None:
    spec, problems = obj.spec, []
    has_res, has_non = spec.HasField("resource_attributes"), spec.HasField("non_resource_attributes")
    if has_res and has_non:
        problems.append(invalid("spec.nonResourceAttributes", "{...}",
                                "cannot be specified in combination with resourceAttributes"))
    if not has_res and not has_non:
        problems.append(invalid("spec.resourceAttributes", None,
                                "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    if review.kind in ("SubjectAccessReview", "LocalSubjectAccessReview") and not spec.user and not spec.groups:
        problems.append(invalid("spec.user", spec.user, "at least one of user or group must be specified"))
    if review.kind == "LocalSubjectAccessReview":
        if has_res and spec.resource_attributes.namespace != obj.metadata.namespace:
            problems.append(invalid("spec.resourceAttributes.namespace", spec.resource_attributes.namespace,
                                    "must match metadata.namespace"))
        if has_non:
            problems.append(invalid("spec.nonResourceAttributes", "{...}", "disallowed on this kind of request"))
    if problems:
        raise errors.Invalid.of(f"{review.kind}.{review.group}", "", problems, kind=review.kind,
                                group=review.group)


def _extra(struct) -> dict[str, tuple[str, ...]]:
    d = json_format.MessageToDict(struct) if struct is not None else {}
    return {k: tuple(v if isinstance(v, list) else [v]) for k, v in d.items()}


class Reviews:
    """Answers reviews with the apiserver's authorizer (and the RBAC rules for rules reviews)."""

    def __init__(self, authorizer, rule_sources=()):
        self.authorizer = authorizer
        self.rule_sources = list(rule_sources)      # callables (user, namespace) -> [PolicyRule]

    async def review(self, review: Review, obj, user: UserInfo):
        if review.kind == "SelfSubjectReview":
            ui = obj.status.user_info
            ui.username, ui.uid = user.name, user.uid
            ui.groups[:] = list(user.groups)
            if user.extra:
                ui.extra.update({k: list(v) for k, v in user.extra.items()})
            return obj
        if review.kind == "SelfSubjectRulesReview":
            return self._rules(obj, user)
        if review.namespaced and not obj.metadata.namespace:
            raise errors.BadRequest("namespace is required on this type")
        _validate(review, obj)
        if review.kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
            s = obj.spec
            user = UserInfo(s.user, uid=s.uid, groups=tuple(s.groups), extra=_extra(s.extra))
        d = await self.authorizer.authorize(_attributes(user, obj.spec))
        obj.status.allowed, obj.status.denied = d.verdict == ALLOW, d.verdict == DENY
        obj.status.reason = d.reason
        return obj

    def _rules(self, obj, user: UserInfo):
        if not obj.spec.namespace:
            raise errors.Invalid.of("SelfSubjectRulesReview.authorization.k8s.io", "",
                                    [errors.required("spec.namespace")], kind="SelfSubjectRulesReview",
                                    group=AUTHZ)
        for source in self.rule_sources:
            for r in source(user, obj.spec.namespace):
                if r.non_resource_urls:
                    obj.status.non_resource_rules.add(verbs=r.verbs, non_resource_urls=r.non_resource_urls)
                else:
                    obj.status.resource_rules.add(verbs=r.verbs, api_groups=r.api_groups, resources=r.resources,
                                                  resource_names=r.resource_names)
        return obj
