"""What every etcd write path of the apiserver's Store shares: the retry
bound, etcd's txn limits, copying an object, and the NotFound / Conflict /
Invalid errors in Kubernetes' wording.

Why a module of its own: apiserver/crud.py (create, get, list, update,
delete) and apiserver/crudbind.py (bind, bind_batch) both need them, and
crud.py's Store builds on crudbind.py's mixin, so they cannot live in
crud.py without an import circle. crud.py re-exports every name here.
"""
from __future__ import annotations

from google.protobuf.message import Message

from machinery import errors, kinds

MAX_ATTEMPTS = 16
TXN_MAX_OPS = 128            # etcd's default --max-txn-ops
TXN_MAX_BYTES = 1024 * 1024  # under etcd's default --max-request-bytes (1.5 MiB)


def _copy(obj: Message) -> Message:
    c = type(obj)()
    c.CopyFrom(obj)
    return c


def not_found(info: kinds.KindInfo, name: str) -> errors.NotFound:
    return errors.NotFound(f'{info.resource} "{name}" not found', kind=info.plural, name=name, group=info.group)


def conflict(info: kinds.KindInfo, name: str, why: str = "") -> errors.Conflict:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return errors.Conflict(f'Operation cannot be fulfilled on {info.resource} "{name}": {why}',
                           kind=info.plural, name=name, group=info.group)


def invalid(info: kinds.KindInfo, name: str, problems) -> errors.Invalid:
    qualified = f"{info.kind}.{info.group}" if info.group else info.kind
    return errors.Invalid.of(qualified, name, problems, kind=info.kind, group=info.group)
