"""DefaultBinder: binds through the scheduler's batched Binder (binder.py).

kube-scheduler's DefaultBinder POSTs one Binding per pod; ours submits a
BindItem to the pipelined BindBatch writer the framework's Handle carries,
and the result comes back to the scheduler through the Binder's callback
(success → Scheduled event; failure → forget the assumption, back off).
"""
from __future__ import annotations

from scheduler.binder import BindItem
from scheduler.framework import SUCCESS, BindPlugin, Handle, PodInfo, Status


class DefaultBinder(BindPlugin):
    name = "DefaultBinder"

    def __init__(self, binder):
        self.binder = binder

    @classmethod
    def new(cls, args: dict, handle: Handle) -> "DefaultBinder":
        return cls(handle.binder)

    def bind(self, state, pod: PodInfo, node: str, annotations: dict, ctx) -> Status:
        self.binder.submit(BindItem(pod.namespace, pod.name, pod.uid, node, annotations, ctx))
        return SUCCESS
