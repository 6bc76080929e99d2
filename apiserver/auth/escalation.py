"""Privilege-escalation prevention, as Kubernetes' RBAC registry does it
(pkg/registry/rbac/validation): nobody grants rights they do not hold.

* Creating or updating a Role/ClusterRole needs every rule it lists to be
  covered by the requester's own rules in that namespace (cluster-wide
  rules only, for a ClusterRole), unless the requester may `escalate`
  that role. A ClusterRole with an aggregationRule needs full authority.
* Creating or updating a RoleBinding/ClusterRoleBinding needs the
  referenced role's rules covered the same way, unless the requester may
  `bind` that role (verb `bind` on roles/clusterroles with its name).
* system:masters may always.

`covers(owner, servant)` breaks each servant rule into atoms (one verb,
group, resource and name; or one verb and URL) and checks each against
the owner's rules with Kubernetes' ruleCovers; the refusal lists the
uncovered atoms compacted by verbs, in Kubernetes' CompactString form:

    user "jane" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC
    permissions not currently held:
    {APIGroups:[""], Resources:["pods"], Verbs:["create" "delete"]}
"""
from __future__ import annotations

from apiserver.auth import bootstrappolicy as bp
from apiserver.auth.user import SYSTEM_MASTERS, UserInfo

ALL = "*"
FULL_AUTHORITY = [bp.rule(["*"], ["*"], ["*"]), bp.rule(["*"], urls=["*"])]


def breakdown(rule) -> list:
    """One rule per verb x group x resource x name (or verb x URL)."""
    out = []
    names = list(rule.resource_names) or [None]
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                for name in names:
                    out.append(bp.rule([verb], [group], [resource], names=[name] if name else []))
    for url in rule.non_resource_urls:
        for verb in rule.verbs:
            out.append(bp.rule([verb], urls=[url]))
    return out


def _resource_covers(owner: list[str], requested: str) -> bool:
    if ALL in owner or requested in owner:
        return True
    if "/" in requested:
        return "*/" + requested.split("/", 1)[1] in owner
    return False


def _url_covers(owner: list[str], requested: str) -> bool:
    return any(o == requested or (o.endswith("*") and requested.startswith(o.rstrip("*"))) or o == ALL
               for o in owner)


def rule_covers(owner, sub) -> bool:
    verbs = ALL in owner.verbs or set(sub.verbs) <= set(owner.verbs)
    groups = ALL in owner.api_groups or set(sub.api_groups) <= set(owner.api_groups)
    resources = all(_resource_covers(list(owner.resources), r) for r in sub.resources)
    urls = all(_url_covers(list(owner.non_resource_urls), u) for u in sub.non_resource_urls)
    if not sub.resource_names:
        names = not owner.resource_names
    else:
        names = not owner.resource_names or set(sub.resource_names) <= set(owner.resource_names)
    return verbs and groups and resources and urls and names


def uncovered(owner_rules, servant_rules) -> list:
    return [atom for rule in servant_rules for atom in breakdown(rule)
            if not any(rule_covers(o, atom) for o in owner_rules)]


def _q(values) -> str:
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


def compact_string(rule) -> str:
    fields = (("APIGroups", rule.api_groups), ("Resources", rule.resources),
              ("NonResourceURLs", rule.non_resource_urls), ("ResourceNames", rule.resource_names),
              ("Verbs", rule.verbs))
    return "{" + ", ".join(f"{label}:{_q(values)}" for label, values in fields if values) + "}"


def compact(atoms) -> list:
    """Atoms that differ only in their verb become one rule (Kubernetes' CompactRules)."""
    merged: dict[tuple, object] = {}
    for a in atoms:
        key = (tuple(a.api_groups), tuple(a.resources), tuple(a.resource_names), tuple(a.non_resource_urls))
        if key in merged:
            if a.verbs[0] not in merged[key].verbs:
                merged[key].verbs.append(a.verbs[0])
        else:
            merged[key] = bp.rule(list(a.verbs), a.api_groups, a.resources, a.resource_names, a.non_resource_urls)
    return list(merged.values())


def escalation_message(user: UserInfo, missing, errors=()) -> str:
    rules = "\n".join(sorted(compact_string(r) for r in compact(missing)))
    msg = (f'user "{user.name}" (groups={_q(user.groups)}) is attempting to grant RBAC permissions not '
           f"currently held:\n{rules}")
    if errors:
        msg += f"; resolution errors: [{' '.join(errors)}]"
    return msg


def is_master(user: UserInfo) -> bool:
    return user.in_group(SYSTEM_MASTERS)
