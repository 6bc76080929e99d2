"""`kctl create role|clusterrole|rolebinding|clusterrolebinding`, as kubectl
builds them (k8s.io/kubectl/pkg/cmd/create):

    kctl create role pod-reader --verb=get,list,watch --resource=pods,pods/log -n team
    kctl create clusterrole node-reader --verb=get --resource=nodes [--non-resource-url=/healthz]
    kctl create rolebinding jane-view --clusterrole=view --user=jane -n team
    kctl create clusterrolebinding ci --clusterrole=edit --serviceaccount=ci:builder --group=devs

Resources are resolved to their API group (`deployments` -> apps, `pods/log`
keeps its subresource; an unknown `foo.example.com` is taken as
resource.group) and rules are grouped per API group; verbs are checked
against kubectl's list; --dry-run and -o work as for the other generators.
"""
from __future__ import annotations

import click

from kubectlish.common import Ctx, Failed, run
from kubectlish.generators import _common, _create_or_print
from machinery import kinds

RBAC_V1 = "rbac.authorization.k8s.io/v1"
VALID_VERBS = ("*", "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "use", "bind",
               "escalate", "impersonate")
NON_RESOURCE_VERBS = ("*", "get", "post", "put", "delete", "patch", "head", "options")


def _split(values) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _group_of(resource: str) -> tuple[str, str]:
    """(group, resource[/sub]) of what the user typed."""
    base, slash, sub = resource.partition("/")
    if base == "*":
        return "", resource
    try:
        info = kinds.resolve(base)
        return info.group, info.plural + slash + sub
    except kinds.UnknownKind:
        plural, _, group = base.partition(".")
        return group, plural + slash + sub


def rules(verbs, resources, names=(), urls=()) -> list[dict]:
    verbs, resources, names, urls = _split(verbs), _split(resources), _split(names), _split(urls)
    if not verbs:
        raise Failed("error: at least one verb must be specified")
    if not resources and not urls:
        raise Failed("error: at least one resource must be specified")
    out: list[dict] = []
    if resources:
        for v in verbs:
            if v not in VALID_VERBS:
                raise Failed(f"error: invalid verb: '{v}'")
        by_group: dict[str, list[str]] = {}
        for r in resources:
            group, res = _group_of(r)
            if res not in by_group.setdefault(group, []):
                by_group[group].append(res)
        for group in sorted(by_group):
            rule = {"verbs": verbs, "apiGroups": [group], "resources": by_group[group]}
            if names:
                rule["resourceNames"] = names
            out.append(rule)
    if urls:
        bad = [v for v in verbs if v not in NON_RESOURCE_VERBS]
        if bad:
            raise Failed(f"error: invalid verb: '{bad[0]}' for nonResourceURL")
        out.append({"verbs": verbs, "nonResourceURLs": urls})
    return out


def subjects(users, groups, service_accounts) -> list[dict]:
    out = [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": u} for u in users]
    out += [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g} for g in groups]
    for sa in service_accounts:
        ns, sep, name = sa.partition(":")
        if not sep or not ns or not name:
            raise Failed(f"error: serviceaccount must be <namespace>:<name>, got {sa!r}")
        out.append({"kind": "ServiceAccount", "namespace": ns, "name": name})
    return out


def _role_options(f):
    f = click.option("--resource-name", "names", multiple=True, help="Resource names in the white list.")(f)
    f = click.option("--resource", "resources", multiple=True, help="Resources the rule applies to.")(f)
    return click.option("--verb", "verbs", multiple=True, help="Verbs that apply to the resources.")(f)


def _binding_options(f):
    f = click.option("--serviceaccount", "service_accounts", multiple=True, help="NAMESPACE:NAME to bind.")(f)
    f = click.option("--group", "groups", multiple=True, help="Groups to bind to the role.")(f)
    return click.option("--user", "users", multiple=True, help="Usernames to bind to the role.")(f)


@click.command("role")
@click.argument("name")
@_role_options
@_common
@click.pass_obj
def create_role_cmd(ctx: Ctx, name, verbs, resources, names, dry_run, output):
    """Create a role with single rule."""
    run(ctx, _make, lambda: {"apiVersion": RBAC_V1, "kind": "Role", "metadata": {"name": name},
                             "rules": rules(verbs, resources, names)}, dry_run, output)


@click.command("clusterrole")
@click.argument("name")
@_role_options
@click.option("--non-resource-url", "urls", multiple=True, help="Partial URLs the user may access.")
@click.option("--aggregation-rule", default="", help="An aggregation label selector, k=v[,k2=v2].")
@_common
@click.pass_obj
def create_clusterrole_cmd(ctx: Ctx, name, verbs, resources, names, urls, aggregation_rule, dry_run, output):
    """Create a cluster role."""
    def build():
        manifest = {"apiVersion": RBAC_V1, "kind": "ClusterRole", "metadata": {"name": name}}
        if aggregation_rule:
            labels = dict(kv.split("=", 1) for kv in _split([aggregation_rule]) if "=" in kv)
            manifest["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": labels}]}
        else:
            manifest["rules"] = rules(verbs, resources, names, urls)
        return manifest
    run(ctx, _make, build, dry_run, output)


def _binding(kind: str, name: str, role_kind: str, role: str, users, groups, service_accounts) -> dict:
    return {"apiVersion": RBAC_V1, "kind": kind, "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": subjects(users, groups, service_accounts)}


@click.command("rolebinding")
@click.argument("name")
@click.option("--clusterrole", default="", help="ClusterRole this RoleBinding should reference.")
@click.option("--role", default="", help="Role this RoleBinding should reference.")
@_binding_options
@_common
@click.pass_obj
def create_rolebinding_cmd(ctx: Ctx, name, clusterrole, role, users, groups, service_accounts, dry_run, output):
    """Create a role binding for a particular role or cluster role."""
    def build():
        if bool(clusterrole) == bool(role):
            raise Failed("error: exactly one of clusterrole or role must be specified")
        kind, ref = ("ClusterRole", clusterrole) if clusterrole else ("Role", role)
        return _binding("RoleBinding", name, kind, ref, users, groups, service_accounts)
    run(ctx, _make, build, dry_run, output)


@click.command("clusterrolebinding")
@click.argument("name")
@click.option("--clusterrole", required=True, help="ClusterRole this ClusterRoleBinding should reference.")
@_binding_options
@_common
@click.pass_obj
def create_clusterrolebinding_cmd(ctx: Ctx, name, clusterrole, users, groups, service_accounts, dry_run, output):
    """Create a cluster role binding for a particular cluster role."""
    run(ctx, _make, lambda: _binding("ClusterRoleBinding", name, "ClusterRole", clusterrole, users, groups,
                                     service_accounts), dry_run, output)


async def _make(ctx: Ctx, build, dry_run: str, output: str | None):
    """Build the manifest (bad flags end as kubectl's one-line errors) and create or print it."""
    return await _create_or_print(ctx, build(), dry_run, output)
