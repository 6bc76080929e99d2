"""Columns of the RBAC kinds, as kubectl prints them (printRole,
printClusterRole: NAME, CREATED AT; printRoleBinding,
printClusterRoleBinding: NAME, ROLE, AGE and, with -o wide, USERS, GROUPS,
SERVICEACCOUNTS); registered into machinery.tables.PRINTERS."""
from __future__ import annotations

import datetime

from machinery.tables import Printer, _all, _cols, age


def created_at(ts) -> str:
    if not ts.seconds:
        return ""
    return datetime.datetime.fromtimestamp(ts.seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _role(r, wide, at):
    return [r.metadata.name, created_at(r.metadata.creation_timestamp)]


def _binding(b, wide, at):
    def names(kind):
        return ", ".join((f"{s.namespace}/{s.name}" if kind == "ServiceAccount" and s.namespace else s.name)
                         for s in b.subjects if s.kind == kind)
    return [b.metadata.name, f"{b.role_ref.kind}/{b.role_ref.name}", age(b.metadata.creation_timestamp, at),
            names("User"), names("Group"), names("ServiceAccount")]


RBAC_PRINTERS = {
    "Role": Printer(_cols("NAME|CREATED AT"), _all(_role)),
    "ClusterRole": Printer(_cols("NAME|CREATED AT"), _all(_role)),
    "RoleBinding": Printer(_cols("NAME|ROLE|AGE", "USERS|GROUPS|SERVICEACCOUNTS"), _all(_binding)),
    "ClusterRoleBinding": Printer(_cols("NAME|ROLE|AGE", "USERS|GROUPS|SERVICEACCOUNTS"), _all(_binding)),
}
