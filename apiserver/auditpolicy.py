"""The audit policy (--audit-policy-file): which requests the audit log
records, and at which level, in Kubernetes' own `audit.k8s.io/v1` Policy
format (k8s.io/apiserver/pkg/apis/audit, policy/checker.go):

    apiVersion: audit.k8s.io/v1
    kind: Policy
    omitStages: [RequestReceived]          # for every rule
    rules:
      - level: None                        # never log the node agents' lease renewals
        users: [system:node:node1]
        resources: [{group: coordination.k8s.io, resources: [leases]}]
      - level: RequestResponse             # Secrets' bodies ... are better not logged: an example
        resources: [{group: "", resources: [pods, pods/status], resourceNames: [web]}]
      - level: Metadata
        nonResourceURLs: ["/healthz*", "/version"]
      - level: Request
        verbs: [create, update, patch, delete]
        namespaces: [default]
        omitStages: [ResponseComplete]

The first rule that matches the request decides its level; a request no
rule matches is not logged (level None), as in Kubernetes. A rule matches
when each of its non-empty lists matches: `users` (the name of the
authenticated user, the impersonator when there is one), `userGroups` (any
group), `verbs`, then either `namespaces`/`resources` (resource requests
only; "" is a cluster-scoped request's namespace; `resources` entries name
a group and plurals, `pods/log`, `*`, `*/status` or `pods/*`, and
optionally `resourceNames`) or `nonResourceURLs` (non-resource requests;
an exact path, `*`, or a prefix ending in `*`).

Levels: None (no event), Metadata (who, what, outcome), Request (plus
`requestObject`), RequestResponse (plus `responseObject`). Stages: kctl
writes `RequestReceived` (once the user is known) and `ResponseComplete`
events; `ResponseStarted` and `Panic` are accepted in omitStages but kctl
never writes them. A policy's `omitStages` is added to every rule's.

A policy file is checked when the apiserver starts: an unknown field, a
value of the wrong type, an unknown level or stage, a URL without a
leading `/`, or a `*` other than last is refused, naming the field as
Kubernetes does (`rules[0].level: Unsupported value: "Everything": ...`).

Without a file, `DEFAULT` keeps kctl's earlier behaviour: Metadata for
every request that writes and every request refused with 401 or 403, and
one event per request (no RequestReceived).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import yaml

from apiserver.auth.authz import READ_VERBS, Attributes
from apiserver.auth.user import UserInfo
from machinery import errors

NONE, METADATA, REQUEST, REQUEST_RESPONSE = "None", "Metadata", "Request", "RequestResponse"
LEVELS = (NONE, METADATA, REQUEST, REQUEST_RESPONSE)
RECEIVED, STARTED, COMPLETE, PANIC = "RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"
STAGES = (RECEIVED, STARTED, COMPLETE, PANIC)
API_VERSION, KIND = "audit.k8s.io/v1", "Policy"

# the schema, for strict decoding: field -> str, [str], or a nested schema (a list of objects: [schema])
_STRINGS = [str]
_GROUP_RESOURCES = {"group": str, "resources": _STRINGS, "resourceNames": _STRINGS}
_RULE = {"level": str, "users": _STRINGS, "userGroups": _STRINGS, "verbs": _STRINGS,
         "resources": [_GROUP_RESOURCES], "namespaces": _STRINGS, "nonResourceURLs": _STRINGS,
         "omitStages": _STRINGS, "omitManagedFields": bool}
_POLICY = {"apiVersion": str, "kind": str, "metadata": dict, "rules": [_RULE], "omitStages": _STRINGS,
           "omitManagedFields": bool}


class PolicyError(errors.ConfigError):
    """An audit policy file that cannot be used; the message names the field."""


def _check_shape(value, schema, path: str, problems: list) -> None:
    """Strict decoding: unknown fields and wrong types, by path."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{path or '<root>'}: expected an object, got {type(value).__name__}")
            return
        for key, v in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in schema:
                problems.append(f'unknown field "{where}"')
            elif v is not None:
                _check_shape(v, schema[key], where, problems)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check_shape(item, schema[0], f"{path}[{i}]", problems)
    elif not isinstance(value, schema) or (schema is not bool and isinstance(value, bool)):
        problems.append(f"{path}: expected {schema.__name__}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def matches(self, a: Attributes) -> bool:
        if self.group != a.api_group:
            return False
        if not self.resources:
            return True
        if self.resource_names and a.name not in self.resource_names:
            return False
        combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        for res in self.resources:
            if res in (combined, "*"):
                return True
            if a.subresource and res.startswith("*/") and res[2:] == a.subresource:
                return True
            if res.endswith("/*") and res[:-2] == a.resource:
                return True
        return False


def _path_matches(path: str, spec: str) -> bool:
    return spec == "*" or spec == path or (spec.endswith("*") and path.startswith(spec.rstrip("*")))


@dataclass(frozen=True)
class Rule:
    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False

    def matches(self, user: UserInfo | None, a: Attributes | None) -> bool:
        if self.users and (user is None or user.name not in self.users):
            return False
        if self.user_groups and (user is None or not set(user.groups) & set(self.user_groups)):
            return False
        verb = a.verb if a is not None else ""
        if self.verbs and verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            if a is None or not a.resource_request:
                return False
            if self.namespaces and a.namespace not in self.namespaces:
                return False
            return not self.resources or any(gr.matches(a) for gr in self.resources)
        if self.non_resource_urls:
            return a is not None and not a.resource_request and any(
                _path_matches(a.path, s) for s in self.non_resource_urls)
        return True


class Policy:
    """A loaded audit.k8s.io/v1 Policy: `evaluate` -> the Rule that decides
    (its level, omitStages, omitManagedFields)."""

    def __init__(self, rules: list[Rule], omit_stages: frozenset[str] = frozenset(),
                 omit_managed_fields: bool = False):
        self.nothing = Rule(NONE, omit_stages=omit_stages)
        self.rules = [dataclasses.replace(r, omit_stages=r.omit_stages | omit_stages,
                                          omit_managed_fields=r.omit_managed_fields or omit_managed_fields)
                      for r in rules]

    def evaluate(self, user: UserInfo | None, attrs: Attributes | None, code: int = 0) -> Rule:
        """The first rule matching a request (level None when none does); `user`
        is the authenticated (not impersonated) user, None when authentication
        failed. `code` is not used by a policy file (only by DEFAULT)."""
        for rule in self.rules:
            if rule.matches(user, attrs):
                return rule
        return self.nothing


class DefaultPolicy(Policy):
    """kctl's audit log without a policy file: writes and refusals at Metadata, one event each."""

    def __init__(self):
        super().__init__([], frozenset({RECEIVED}))
        self.metadata = Rule(METADATA, omit_stages=frozenset({RECEIVED}))

    def evaluate(self, user, attrs, code: int = 0) -> Rule:
        verb = attrs.verb if attrs is not None else ""
        if code in (401, 403) or (verb not in READ_VERBS and verb not in ("", "head", "options")):
            return self.metadata
        return self.nothing


DEFAULT = DefaultPolicy()


def _stages(values, path: str) -> tuple[frozenset, list]:
    bad = [errors.invalid(f"{path}[{i}]", s, "allowed stages are " + ",".join(STAGES))
           for i, s in enumerate(values) if s not in STAGES]
    return frozenset(values), bad


def _rule(d: dict, path: str) -> tuple[Rule, list]:
    problems: list = []
    level = d.get("level") or ""
    if not level:
        problems.append(errors.required(f"{path}.level"))
    elif level not in LEVELS:
        problems.append(errors.not_supported(f"{path}.level", level, LEVELS))
    urls = d.get("nonResourceURLs") or []
    for i, url in enumerate(urls):
        if url == "*":
            continue
        if not url.startswith("/"):
            problems.append(errors.invalid(f"{path}.nonResourceURLs[{i}]", url,
                                           "non-resource URL rules must begin with a '/' character"))
        if "*" in url[:-1]:
            problems.append(errors.invalid(f"{path}.nonResourceURLs[{i}]", url,
                                           "non-resource URL wildcards '*' must be the final character of the rule"))
    groups = []
    for i, gr in enumerate(d.get("resources") or []):
        g = GroupResources(gr.get("group") or "", tuple(gr.get("resources") or ()),
                           tuple(gr.get("resourceNames") or ()))
        if g.group and (g.group != g.group.lower() or "/" in g.group or not g.group.replace("-", "").replace(
                ".", "").isalnum()):
            problems.append(errors.invalid(f"{path}.resources[{i}].group", g.group,
                                           "a lowercase RFC 1123 subdomain must consist of lower case "
                                           "alphanumeric characters, '-' or '.'"))
        if g.resource_names and not g.resources:
            problems.append(errors.invalid(f"{path}.resources[{i}].resourceNames", list(g.resource_names),
                                           "using resourceNames requires at least one resource"))
        groups.append(g)
    if urls and (groups or d.get("namespaces")):
        problems.append(errors.invalid(f"{path}.nonResourceURLs", urls,
                                       "rules cannot apply to both regular resources and non-resource URLs"))
    omit, bad = _stages(d.get("omitStages") or [], f"{path}.omitStages")
    rule = Rule(level, tuple(d.get("users") or ()), tuple(d.get("userGroups") or ()), tuple(d.get("verbs") or ()),
                tuple(groups), tuple(d.get("namespaces") or ()), tuple(urls), omit,
                bool(d.get("omitManagedFields")))
    return rule, problems + bad


def parse(doc, source: str = "audit policy") -> Policy:
    """A Policy from a decoded YAML/JSON document; PolicyError naming every bad field."""
    shape: list[str] = []
    _check_shape(doc, _POLICY, "", shape)
    if shape:
        raise PolicyError(f"{source}: strict decoding error: " + "; ".join(shape))
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise PolicyError(f'{source}: apiVersion/kind must be "{API_VERSION}"/"{KIND}", got '
                          f'"{doc.get("apiVersion", "")}"/"{doc.get("kind", "")}"')
    omit, problems = _stages(doc.get("omitStages") or [], "omitStages")
    rules = []
    for i, d in enumerate(doc.get("rules") or []):
        rule, bad = _rule(d, f"rules[{i}]")
        rules.append(rule)
        problems += bad
    if problems:
        raise PolicyError(f"{source}: " + "; ".join(map(str, problems)))
    if not rules:
        raise PolicyError(f"{source}: loaded illegal policy with 0 rules")
    return Policy(rules, omit, bool(doc.get("omitManagedFields")))


def load(path: str) -> Policy:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise PolicyError(f"audit policy {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"audit policy {path}: not YAML: {exc}") from exc
    return parse(doc if doc is not None else {}, f"audit policy {path}")
