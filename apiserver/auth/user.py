"""The identity of a request (Kubernetes' user.Info) and where it lives.

Each transport sets it once per request (gate.py); code below reads
`current()`. The default, for calls that never went through a transport,
is LOOPBACK: the apiserver acting on its own behalf.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field

SYSTEM_MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False, compare=False)
    impersonator: "UserInfo | None" = field(default=None, hash=False, compare=False)   # who asked (impersonation)

    def in_group(self, group: str) -> bool:
        return group in self.groups


LOOPBACK = UserInfo("system:apiserver", groups=(SYSTEM_MASTERS, AUTHENTICATED))
UNSECURED = UserInfo("system:unsecured", groups=(SYSTEM_MASTERS, AUTHENTICATED))
ANONYMOUS = UserInfo("system:anonymous", groups=(UNAUTHENTICATED,))

_current: ContextVar[UserInfo] = ContextVar("kctl_request_user", default=LOOPBACK)


def current() -> UserInfo:
    """The identity of the request being served (LOOPBACK outside any request)."""
    return _current.get()


def set_current(user: UserInfo):
    """Set the identity for the rest of this task; returns the token to reset it."""
    return _current.set(user)


@contextlib.contextmanager
def acting_as(user: UserInfo):
    token = _current.set(user)
    try:
        yield user
    finally:
        _current.reset(token)
