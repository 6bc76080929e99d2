"""The asyncio API client every component (and kctl) uses.

A thin typed layer over the generated gRPC stub: objects in and out are the
kinds' protobuf messages, failures are machinery.errors.ApiError subclasses
(translated in one place, `_call`). Watches are async iterators of
WatchEvent(type, object, resource_version); a watch that cannot be served
from the requested resourceVersion raises errors.Expired, and callers relist
(see machinery/informer.py).

The channel is TLS only (1.2+, gRPC's default): the cluster's CA verifies
the apiserver, and the client certificate of a machinery.kubeconfig.Credentials
says who is asking. The gRPC port requires that certificate in the TLS
handshake, so a bearer token alone (bootstrap or ServiceAccount token) is
refused here at once with a one-line ConfigError: such callers speak HTTPS
(machinery/restclient.py). Without credentials a
Client uses those of the default kubeconfig's current context, as `kubectl
--server=ADDR` does; `Client.from_kubeconfig(path)` takes the address from
the file too. One channel per apiserver serves every call and watch of a
Client: open one per process, not one per request (each TLS handshake
costs a round trip and a signature).

Several apiservers (an HA control plane): `Client("a:6443,b:6443,c:6443")`
(or a list; the kubeconfig's `kctl.dev/grpc` `servers`) uses one at a time
and fails over by itself: reads are retried on the next apiserver, writes
only when they surely were not sent, and a watch resumes on the next one
from the last resourceVersion it delivered. The rules and why they are
ours rather than gRPC's load balancing: machinery/endpoints.py. The
serving certificate must name every address (the TLS name check is per
endpoint). `target` is the comma list, `targets` the endpoints; `channel`
is the current endpoint's.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import AsyncIterator, Iterable, Sequence

import grpc
from google.protobuf.message import Message

from machinery import callmeta, codec, endpoints, errors, kinds, kubeconfig, safeyaml
from machinery.endpoints import normalize_target  # also kubectlish/join.py's, as client.normalize_target
from machinery.pb import api_pb2

# Large lists (10,000 pods) exceed gRPC's 4 MiB default message size; a
# request is at most 3 MiB, the apiserver's limit (safeyaml.MAX_BYTES).
MAX_MESSAGE = 256 * 1024 * 1024
MAX_REQUEST = safeyaml.MAX_BYTES
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_REQUEST),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_http_proxy", 0),
    *endpoints.RECONNECT_OPTIONS,
]


@dataclass
class WatchEvent:
    type: str               # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Message | None
    resource_version: str


def _ns(info: kinds.KindInfo, namespace: str) -> str:
    if not info.namespaced:
        return ""
    return namespace or "default"


ROTATE_GRACE = 30.0      # seconds the old channel lives on after Client.rotate()


class Client:
    """Channels to the apiserver(s); safe to share between tasks."""

    def __init__(self, target: str | Sequence[str], *, timeout: float | None = 30.0, user_agent: str = "kctl",
                 credentials: kubeconfig.Credentials | None = None, metadata: Sequence[tuple[str, str]] = ()):
        """`target`: HOST:PORT, or several (comma list or sequence: failover,
        machinery/endpoints.py). `metadata`: sent with every call
        (impersonation, machinery/callmeta.py)."""
        self.targets = endpoints.parse(target)
        self.target = ",".join(self.targets)
        self.timeout = timeout
        self.credentials = credentials if credentials is not None else kubeconfig.default_credentials()
        if self.credentials.token and not self.credentials.cert_pem:
            raise errors.ConfigError(token_over_grpc(self.target))
        self._user_agent, self._metadata = user_agent, tuple(metadata)
        self._endpoints = endpoints.Endpoints(self.targets, self._channel_for(self.credentials))
        self.warnings: list[str] = []

    def _channel_for(self, credentials: kubeconfig.Credentials):
        return lambda target: secure_channel(target, credentials, self._user_agent, self._metadata)

    async def rotate(self, credentials: kubeconfig.Credentials, grace: float = ROTATE_GRACE) -> None:
        """Use new credentials (a renewed client certificate) for every call
        from now on: new channels to every apiserver, whose connections
        present the new certificate. The old channels are closed after
        `grace` seconds, which ends the watches still open on them
        (informers then watch again, on the new channels)."""
        self.credentials = credentials
        old = self._endpoints.renew(self._channel_for(credentials))

        async def close_old():
            await asyncio.sleep(grace)
            await self._endpoints.close(old)
        self._closing = asyncio.ensure_future(close_old())

    @classmethod
    def from_kubeconfig(cls, path: str, server: str | None = None, **kw) -> "Client":
        """A client for the current context of the kubeconfig at `path`
        (`server`, when given, overrides its address: the components' --apiserver)."""
        sel = kubeconfig.select(path)
        target = server or sel.grpc
        if not target:
            raise errors.ConfigError(f"{path}: no server in the current context")
        return cls(target, credentials=sel.credentials, **kw)

    @classmethod
    def for_component(cls, kubeconfig_path: str | None, apiserver: str | None, **kw) -> "Client":
        """A component's client: its --kubeconfig (--apiserver overriding the address),
        else --apiserver (127.0.0.1:6443) with the default kubeconfig's credentials."""
        if kubeconfig_path:
            return cls.from_kubeconfig(kubeconfig_path, apiserver, **kw)
        return cls(apiserver or "127.0.0.1:6443", **kw)

    @property
    def endpoint(self) -> str:
        """The apiserver (HOST:PORT) calls go to now."""
        return self.targets[self._endpoints.current]

    @property
    def channel(self) -> grpc.aio.Channel:
        """The current apiserver's channel, for its other services (machinery/metricsclient.py)."""
        return self._endpoints.channels[self._endpoints.current]

    async def close(self) -> None:
        await self._endpoints.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _call(self, method: str, request, timeout=None, *, read: bool = False):
        """One call of the Api service (`method` by name) with failover; `read`:
        safe to send again (get, list, reviews), see machinery/endpoints.py."""
        return await self._endpoints.call(method, request, read=read, translate=self._error,
                                          timeout=timeout if timeout is not None else self.timeout)

    def _error(self, exc: grpc.aio.AioRpcError, target: str) -> errors.ApiError:
        """The ApiError of a failed call. The apiserver's gRPC port refuses a
        connection without a client certificate in the TLS handshake (no call
        reaches it to answer 401): without one, an unavailable server is
        reported as what it most likely is."""
        err = errors.from_rpc_error(exc, target)
        if isinstance(err, errors.Unavailable) and not self.credentials.cert_pem \
                and "connection refused" not in err.message.lower():
            return errors.Unauthorized(f"Unauthorized: the apiserver at {target} requires a client "
                                       f"certificate over gRPC and the credentials have none ({err.message})")
        return err

    # ------------------------------------------------------------ CRUD

    async def create(self, obj: Message, *, dry_run: bool = False, field_manager: str = "") -> Message:
        """field_manager: who is recorded in managedFields (empty: the user agent)."""
        resp = await self._call("Create", api_pb2.CreateRequest(
            object=codec.pack(obj), dry_run=dry_run, field_manager=field_manager))
        self.warnings = list(resp.warnings)
        return codec.unpack(resp.object)

    async def review(self, obj: Message) -> Message:
        """A create-only review (SelfSubjectAccessReview & co.): the answer, of obj's type."""
        resp = await self._call("Create", api_pb2.CreateRequest(object=codec.pack(obj)), read=True)
        out = type(obj)()
        resp.object.Unpack(out)
        return out

    async def get(self, kind, name: str, namespace: str = "") -> Message:
        info = kinds.lookup(kind)
        resp = await self._call("Get", api_pb2.GetRequest(
            kind=info.kind, namespace=_ns(info, namespace), name=name), read=True)
        return codec.unpack(resp.object)

    async def list(self, kind, namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "", timeout: float | None = None) -> tuple[list[Message], str]:
        """All matching objects and the list's resourceVersion (start watches there).
        An empty namespace lists across all namespaces."""
        info = kinds.lookup(kind)
        resp = await self._call("List", api_pb2.ListRequest(
            kind=info.kind, namespace=namespace if info.namespaced else "",
            label_selector=label_selector, field_selector=field_selector), timeout=timeout, read=True)
        return [codec.unpack(a) for a in resp.items], resp.resource_version

    async def update(self, obj: Message, *, dry_run: bool = False, field_manager: str = "") -> Message:
        resp = await self._call("Update", api_pb2.UpdateRequest(
            object=codec.pack(obj), dry_run=dry_run, field_manager=field_manager))
        self.warnings = list(resp.warnings)
        return codec.unpack(resp.object)

    async def update_status(self, obj: Message, *, subresource: str = "") -> Message:
        """Write status ("status", the default) or another status-like
        subresource ("approval": a CSR's Approved/Denied conditions)."""
        resp = await self._call("UpdateStatus",
                                api_pb2.UpdateRequest(object=codec.pack(obj), subresource=subresource))
        return codec.unpack(resp.object)

    async def delete(self, kind, name: str, namespace: str = "", *, grace_period: int | None = None,
                     propagation: str = "", uid: str = "", resource_version: str = "",
                     dry_run: bool = False) -> tuple[Message, bool]:
        """Delete; returns (object, deleted). deleted is False while deletion is
        pending (graceful pod deletion or finalizers)."""
        info = kinds.lookup(kind)
        req = api_pb2.DeleteRequest(kind=info.kind, namespace=_ns(info, namespace), name=name,
                                    propagation_policy=propagation, dry_run=dry_run,
                                    preconditions=api_pb2.Preconditions(uid=uid, resource_version=resource_version))
        if grace_period is not None:
            req.grace_period_seconds = grace_period
        resp = await self._call("Delete", req)
        return codec.unpack(resp.object), resp.deleted

    # ----------------------------------------------------------- watch

    async def watch(self, kind, namespace: str = "", *, resource_version: str = "",
                    label_selector: str = "", field_selector: str = "",
                    allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]:
        """Yield changes after resource_version (or the current state as ADDED
        events, then changes, when it is empty). Raises errors.Expired when the
        server cannot serve that resourceVersion any more. A watch whose
        apiserver goes away resumes on the next one from the last
        resourceVersion it yielded (machinery/endpoints.py)."""
        info = kinds.lookup(kind)
        request = api_pb2.WatchRequest(
            kind=info.kind, namespace=namespace if info.namespaced else "",
            label_selector=label_selector, field_selector=field_selector,
            resource_version=resource_version, allow_bookmarks=allow_bookmarks)
        async for ev in self._endpoints.watch(request, self._error):
            obj = codec.unpack(ev.object) if ev.object.type_url else None
            yield WatchEvent(ev.type, obj, ev.resource_version)

    # ------------------------------------------------------------ pods

    async def bind(self, namespace: str, name: str, node_name: str, *, uid: str = "",
                   annotations: dict[str, str] | None = None) -> Message:
        resp = await self._call("Bind", api_pb2.BindRequest(
            namespace=namespace, name=name, uid=uid, node_name=node_name, annotations=annotations or {}))
        return codec.unpack(resp.object)

    async def bind_batch(self, bindings: Iterable[api_pb2.BindRequest]) -> list[errors.ApiError | None]:
        """Bind many pods at once (each a BindRequest: namespace, name, uid,
        node_name, annotations). Returns, per binding in order, None on
        success or the ApiError that refused it."""
        req = api_pb2.BindBatchRequest(bindings=list(bindings))
        resp = await self._call("BindBatch", req)
        return [None if r.ok else errors.ApiError.from_status(r.error) for r in resp.results]

    async def create_token(self, namespace: str, service_account: str, request: Message, *,
                           dry_run: bool = False) -> Message:
        """serviceaccounts/token: a kctl.v1.TokenRequest in, the TokenRequest with status.token out."""
        resp = await self._call("CreateSubresource", api_pb2.CreateSubresourceRequest(
            kind="ServiceAccount", namespace=namespace, name=service_account, subresource="token",
            object=codec.pack(request), dry_run=dry_run))
        out = type(request)()
        resp.object.Unpack(out)
        return out

    async def version(self) -> api_pb2.VersionResponse:
        return await self._call("Version", api_pb2.VersionRequest(), read=True)


def token_over_grpc(target: str) -> str:
    """The one-line refusal of a token-only client on the gRPC port."""
    return (f"a bearer token cannot authenticate over gRPC: the apiserver's gRPC port ({target}) requires a "
            f"client certificate of the cluster CA; use the token over HTTPS (the HTTP API, e.g. kubectl)")


def secure_channel(target: str, credentials: kubeconfig.Credentials, user_agent: str = "kctl",
                   metadata: Sequence[tuple[str, str]] = ()) -> grpc.aio.Channel:
    """A TLS channel to the apiserver with these credentials; `metadata` goes
    with every call (impersonation, machinery/callmeta.py)."""
    options = CHANNEL_OPTIONS + [("grpc.primary_user_agent", user_agent)]
    return grpc.aio.secure_channel(normalize_target(target), credentials.grpc(), options=options,
                                   interceptors=callmeta.interceptors(metadata) or None)


def default_server() -> str | None:
    return os.environ.get("KCTL_SERVER")
