"""`kctl-apiserver`: the API on etcd.

    kctl-apiserver --etcd-servers http://127.0.0.1:2379 --listen 127.0.0.1:6443

Both transports serve TLS only and authenticate every request (client
certificates, bearer tokens: apiserver.auth.authn.Union); apiserver.tls
creates the cluster's certificates in --cert-dir when no files are given
and logs where the admin kubeconfig is.

`run()` is the whole process: bootstrap the system namespaces (retrying
until etcd answers), start one watch-cache task per kind, serve gRPC and
the Kubernetes HTTP API (apiserver.http, --http-listen; same event loop,
same Verbs) behind one Gate (authentication, impersonation, the
authorizer chain of --authorization-mode, the audit log of
--audit-log-path; apiserver.auth), scrape the node agents for metrics.k8s.io (apiserver.metricsapi), and stop cleanly on SIGTERM/SIGINT. The long-lived tasks run
under machinery.runner.run_tasks like every other component's: a task that
fails is logged and ends the process (exit code 1) rather than vanishing,
and a signal stops them all, after which the servers stop and etcd is
closed.

Bearer tokens: static (--token-auth-file), ServiceAccount JWTs and bootstrap
tokens (apiserver/serviceaccount, apiserver/auth/bootstraptoken.py), whose
objects are read from the watch cache (apiserver/auth/tokencache.py). The ServiceAccount keys
and issuer come from the `--service-account-*` flags (serviceaccount.add_flags).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import grpc
from google.protobuf.message import DecodeError

from apiserver import (admission, admission_priority, audit, auditpolicy, encryption, http, limits, metrics,
                       objects, podsecurity, serviceaccount, tls)
from apiserver import storage as st
from apiserver.admission_cache import FencedIndex
from apiserver.allocators import ServiceAllocator
from apiserver.auth.anonymous import AnonymousEndpoints
from apiserver.auth.authn import Union
from apiserver.auth.gate import Gate
from apiserver.auth.setup import MODES, Authorization
from apiserver.auth.tokencache import WatchedObjects
from apiserver.auth.tokenfile import StaticTokens, TokenFileError
from apiserver.serviceaccount.tokenrequest import TokenRequests
from apiserver.bootstrap import KubernetesService
from apiserver.crud import Store
from apiserver.compactor import compact_periodically
from apiserver.metricsapi import MetricsServicer, MetricsStore
from apiserver.nodeproxy import NodeProxy
from apiserver.server import ApiServicer
from apiserver.verbs import Verbs
from apiserver.watchcache import WatchCache
from machinery import errors, kinds
from machinery.client import MAX_MESSAGE
from machinery.durations import duration
from machinery.pb import api_pb2_grpc, metrics_pb2_grpc, node_pb2_grpc
from machinery.runner import run_component, run_tasks, setup_logging

log = logging.getLogger("kctl-apiserver")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# kube-system runs what the cluster itself needs: Pod Security does not restrict it (apiserver/podsecurity)
SYSTEM_NAMESPACE_LABELS = {"kube-system": {"pod-security.kubernetes.io/enforce": "privileged"}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kctl-apiserver", description="The kctl API server (gRPC) on etcd.")
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379",
                   help="etcd client URLs, comma-separated: every member of one cluster; calls fail over "
                        "between them (default %(default)s)")
    p.add_argument("--listen", default="127.0.0.1:6443", help="gRPC HOST:PORT (default %(default)s)")
    p.add_argument("--metric-resolution", type=float, default=15.0,
                   help="seconds between scrapes of the node agents for metrics.k8s.io (metrics-server's flag)")
    p.add_argument("--http-listen", default=None,
                   help="HOST:PORT of the Kubernetes HTTP API (kubectl, client libraries); 'off' disables. "
                        f"Default {http.DEFAULT_LISTEN}, kubectl's address when it has no kubeconfig; "
                        "a default port already in use is logged and skipped, a given one is fatal")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/16",
                   help="CIDR for Service ClusterIPs (default %(default)s)")
    p.add_argument("--service-node-port-range", default="30000-32767",
                   help="port range for NodePorts (default %(default)s)")
    p.add_argument("--metrics-listen", default="127.0.0.1:9464",
                   help="HOST:PORT of the Prometheus /metrics endpoint; 'off' disables (default %(default)s)")
    p.add_argument("--watch-cache-size", type=int, default=10_000,
                   help="events kept per kind for watchers; a watcher further behind is closed "
                        "(default %(default)s)")
    p.add_argument("--watch-bookmark-interval", type=float, default=10.0,
                   help="seconds between BOOKMARK events on idle watches that asked for them (default %(default)s)")
    p.add_argument("--etcd-cafile", help="CA of etcd's serving certificate (an https:// etcd)")
    p.add_argument("--etcd-certfile", help="the apiserver's client certificate towards etcd")
    p.add_argument("--etcd-keyfile", help="its key")
    p.add_argument("--etcd-timeout", type=float, default=3.0,
                   help="seconds before an etcd request fails as unavailable (default %(default)s)")
    p.add_argument("--event-ttl", type=duration, default=3600.0, metavar="DURATION",
                   help="how long an Event is kept after its last write, e.g. 1h0m0s (default 1h; 0: forever)")
    p.add_argument("--etcd-compaction-interval", type=float, default=300.0,
                   help="seconds between etcd compactions, keeping one interval of history; "
                        "0 disables (default %(default)s)")
    p.add_argument("--encryption-provider-config", metavar="FILE",
                   help="Kubernetes EncryptionConfiguration for encrypting resources in etcd; default: "
                        f"{encryption.DEFAULT_PATH}, generated with a new AES-GCM key for secrets if missing")
    p.add_argument("--max-requests-inflight", type=int, default=limits.DEFAULT_MAX_INFLIGHT,
                   help="read-only requests served at once; more get 429 (0: no limit; default %(default)s)")
    p.add_argument("--max-mutating-requests-inflight", type=int, default=limits.DEFAULT_MAX_MUTATING_INFLIGHT,
                   help="mutating requests served at once; more get 429 (0: no limit; default %(default)s)")
    p.add_argument("--watch-send-timeout", type=float, default=limits.DEFAULT_WATCH_SEND_TIMEOUT,
                   help="seconds a watcher may take to accept one event before it is dropped "
                        "(0: never; default %(default)s)")
    p.add_argument("--pod-security-default-enforce", choices=podsecurity.policy.LEVELS, default="baseline",
                   help="Pod Security level enforced in namespaces without a pod-security.kubernetes.io/enforce "
                        "label (Kubernetes' default is privileged; kctl's %(default)s)")
    serviceaccount.add_flags(p)
    p.add_argument("--disable-admission-plugins", default="", metavar="NAMES",
                   help="comma-separated admission plugins not to run (ServiceAccount, Priority, PodSecurity, "
                        "CertificateRequestor, CertificateSubjectRestriction)")
    p.add_argument("--cert-dir", default=tls.DEFAULT_CERT_DIR,
                   help="where the cluster CA, serving certificate, ServiceAccount keys and kubeconfigs are "
                        "created if missing, when --tls-cert-file is not given (default %(default)s)")
    p.add_argument("--tls-cert-file", help="serving certificate (PEM) for gRPC and HTTPS")
    p.add_argument("--tls-private-key-file", help="its private key (PEM)")
    p.add_argument("--client-ca-file", help="CA bundle that signs client certificates (default: the cert dir's ca.crt)")
    p.add_argument("--tls-san", action="append", default=[], metavar="NAME_OR_IP",
                   help="another address for the generated serving certificate (repeatable)")
    p.add_argument("--kubelet-client-certificate", help="client certificate towards node agents "
                   "(default: the cert dir's apiserver-kubelet-client.crt)")
    p.add_argument("--kubelet-client-key", help="its key")
    p.add_argument("--authorization-mode", default="Node,RBAC", choices=MODES,
                   help="who may do what: the Node authorizer and RBAC (default), or everyone everything; "
                        "system:masters may always do everything (default %(default)s)")
    p.add_argument("--token-auth-file", metavar="FILE",
                   help="static bearer tokens, Kubernetes' CSV format: token,user,uid,\"group1,group2\" "
                        "(HTTPS only: gRPC needs a client certificate)")
    p.add_argument("--audit-log-path", metavar="FILE",
                   help="append audit.k8s.io/v1 Events (JSON lines) to FILE: what --audit-policy-file says, or "
                        "Metadata for every request that writes and every refused one (401/403); "
                        "default: no audit log")
    p.add_argument("--audit-policy-file", metavar="FILE",
                   help="an audit.k8s.io/v1 Policy: which requests are logged, at which level (None, Metadata, "
                        "Request, RequestResponse) and stages; the first matching rule wins")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def token_authenticators(store: Store, issuer, token_file: str | None = None, objects=None) -> list:
    """The bearer-token kinds the apiserver accepts after client certificates, in
    order (apiserver.auth.authn.TokenAuthenticator each): static tokens
    (--token-auth-file), ServiceAccount JWTs verified with the service-account
    keys (<cert-dir>/sa.pub unless flags say otherwise), then bootstrap tokens,
    both reading `objects` (the watch cache: apiserver.auth.tokencache)."""
    static = []
    if token_file:
        try:
            static = [StaticTokens.load(token_file)]
        except TokenFileError as exc:
            raise SystemExit(f"kctl-apiserver: {exc}") from None
    return static + serviceaccount.token_authenticators(issuer, store, objects)


async def bootstrap(store: Store, *more) -> None:
    """Create the system namespaces if missing, then run `more` (coroutine
    functions: the default RBAC policy); wait for etcd as long as it takes."""
    delay = 0.2
    while True:
        try:
            for name in SYSTEM_NAMESPACES:
                ns = kinds.new("Namespace")
                ns.metadata.name = name
                ns.metadata.labels.update(SYSTEM_NAMESPACE_LABELS.get(name, {}))
                try:
                    await store.create(ns)
                    log.info("created namespace %s", name)
                except errors.AlreadyExists:
                    pass
            await admission_priority.bootstrap(store)
            for step in more:
                await step()
            return
        except errors.Unavailable as exc:
            log.warning("waiting for etcd: %s", exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _track_terminating(store: Store):
    """Keep Store.terminating_namespaces in step with the namespace watch."""
    info = kinds.BY_KIND["Namespace"]

    def terminating(raw: bytes) -> tuple[str, bool]:
        try:
            ns = info.message.FromString(raw)
        except DecodeError:
            return "", False
        return ns.metadata.name, ns.metadata.HasField("deletion_timestamp") or ns.status.phase == "Terminating"

    def on_reset(kvs) -> None:
        store.terminating_namespaces = {name for name, t in map(terminating, (kv.value for kv in kvs)) if t}

    def on_events(events) -> None:
        for ev in events:
            name, term = terminating(ev.raw) if ev.raw else (objects.name_of_key(info, ev.key)[1], False)
            if term and ev.type != "DELETED":
                store.terminating_namespaces.add(name)
            else:
                store.terminating_namespaces.discard(name)
    return on_reset, on_events


async def _serve_http(verbs: Verbs, listen: str | None, proxy: NodeProxy, metrics, gate: Gate, ssl_context):
    """The HTTP API's runner, or None when disabled (or the default port is taken)."""
    if listen == "off":
        return None
    try:
        return await http.serve(verbs, listen or http.DEFAULT_LISTEN, proxy, metrics, gate, ssl_context)
    except SystemExit as exc:
        if listen:
            raise
        log.warning("%s; the HTTP API is off (give --http-listen to choose another address)", exc)
        return None


async def run(args: argparse.Namespace) -> None:
    try:
        audit_policy = auditpolicy.load(args.audit_policy_file) if args.audit_policy_file else auditpolicy.DEFAULT
        enc = encryption.load_or_generate(args.encryption_provider_config)
    except (auditpolicy.PolicyError, encryption.EncryptionConfigError) as exc:
        raise SystemExit(f"kctl-apiserver: {exc}") from None
    serving = tls.setup(args)
    try:
        admission.disable(args.disable_admission_plugins.split(","))
        issuer = serviceaccount.issuer_from(args, directory=serving.cert_dir)
    except errors.ConfigError as exc:
        raise SystemExit(f"kctl-apiserver: {exc}") from None
    storage = st.Storage(args.etcd_servers, timeout=args.etcd_timeout, encryption=enc,
                         tls=tls.etcd_credentials(args))
    admission.POD_SECURITY.default = podsecurity.policy.with_enforce(args.pod_security_default_enforce)
    allocator = ServiceAllocator(storage, args.service_cluster_ip_range, args.service_node_port_range)
    store = Store(storage, allocator, ttls={"Event": int(args.event_ttl)})
    cache = WatchCache(storage, args.watch_cache_size, min(5.0, args.watch_bookmark_interval))
    store.cached = cache.current                 # updates start from the cache's copy (crud.py)
    store.priority_classes = admission_priority.ClassCache.attach(cache)   # Priority admission reads the cache
    ns_cache = cache["Namespace"]
    ns_cache.on_reset, ns_cache.on_events = _track_terminating(store)
    # PodSecurity reads namespace labels from the cache (attached after the hooks above: it chains them)
    store.namespaces = FencedIndex.follow(cache, "Namespace", podsecurity.admission.namespace_view)
    store.service_accounts = FencedIndex.follow(cache, "ServiceAccount", serviceaccount.admission.account_view)

    limiter = limits.Inflight(args.max_requests_inflight, args.max_mutating_requests_inflight,
                             args.watch_send_timeout)
    # who asks, and may they (apiserver.auth): client certificates, bearer tokens, anonymous
    # cluster-info; Node + RBAC on the watch cache; the audit log
    authorization = Authorization(cache, store, args.authorization_mode)
    audit_log = audit.AuditLog(args.audit_log_path, audit_policy) if args.audit_log_path else None
    token_objects = WatchedObjects.attach(cache, serviceaccount.store_getter(store),
                                          shared={"Pod": authorization.graph.pods})
    store.token_objects = token_objects      # admitted updates/deletes: read-your-writes (tokencache.expect)
    authenticator = Union(tokens=token_authenticators(store, issuer, args.token_auth_file, token_objects),
                          anonymous=AnonymousEndpoints())
    gate = Gate(authenticator, authorization.authorizer, audit=audit_log)
    server = grpc.aio.server(interceptors=[limits.GrpcInflight(limiter), gate],
                             options=[("grpc.max_receive_message_length", limits.MAX_REQUEST_BYTES),
                                      ("grpc.max_send_message_length", MAX_MESSAGE),
                                      ("grpc.keepalive_permit_without_calls", 1),
                                      ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                                      ("grpc.so_reuseport", 0)])
    verbs = Verbs(store, cache, args.watch_bookmark_interval)
    verbs.limiter = limiter          # the HTTP API's in-flight limit (apiserver.limits)
    verbs.token_requests = TokenRequests(store, issuer)     # serviceaccounts/token, both transports
    verbs.reviews = authorization.reviews      # SelfSubjectAccessReview & co. (apiserver.auth.reviews)
    api_pb2_grpc.add_ApiServicer_to_server(ApiServicer(verbs), server)
    proxy = NodeProxy(store, serving.kubelet)    # logs/exec/attach/port-forward -> node agents (gRPC and HTTP)
    proxy.authorize = gate.authorize_stream      # gRPC streams: authorized (and audited) on their first message
    node_pb2_grpc.add_NodeAgentServicer_to_server(proxy, server)
    metrics_store = MetricsStore(verbs, args.metric_resolution, serving.kubelet)   # metrics.k8s.io: scrapes the agents
    metrics_pb2_grpc.add_MetricsServicer_to_server(MetricsServicer(metrics_store), server)
    try:
        port = server.add_secure_port(args.listen, serving.grpc_credentials())  # bind now: a taken port fails at once
    except RuntimeError as exc:
        raise SystemExit(f"kctl-apiserver: cannot listen on {args.listen}: {exc}") from None
    if not port:
        raise SystemExit(f"kctl-apiserver: cannot listen on {args.listen}")
    metrics.serve(args.metrics_listen)
    await bootstrap(store, authorization.bootstrap)
    https_listen = None if args.http_listen == "off" else (args.http_listen or http.DEFAULT_LISTEN)
    kubernetes_service = KubernetesService(store, args.service_cluster_ip_range, args.listen, https_listen)
    await kubernetes_service.first_sync()       # before serving: clients find it from their first call

    runner = None
    try:
        await server.start()
        host = args.listen.rpartition(":")[0]
        log.info("serving kctl.v1.Api on %s:%d (etcd %s)", host, port, storage.endpoint)
        runner = await _serve_http(verbs, args.http_listen, proxy, metrics_store, gate, serving.ssl_context())
        tasks = {f"watchcache-{info.plural}": cache[info.kind].run() for info in kinds.KINDS}
        # shielded: cancelling grpc's wait_for_termination cancels the future stop() awaits
        tasks["grpc-server"] = asyncio.shield(server.wait_for_termination())
        tasks["kubernetes-service"] = kubernetes_service.run()
        tasks["metrics-scraper"] = metrics_store.run()
        tasks["rbac-aggregation"] = authorization.run()
        tasks.update(serving.reload_tasks())      # a renewed HTTPS serving certificate (apiserver/tls.py)
        if args.etcd_compaction_interval > 0:        # a task that returns would stop the server
            tasks["etcd-compactor"] = compact_periodically(storage, args.etcd_compaction_interval)
        await run_tasks(tasks)
        log.info("stopping")
    finally:
        if runner is not None:
            await runner.cleanup()
        await server.stop(grace=1.0)
        await storage.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging("kctl-apiserver", 2 if args.verbose else 0)
    return run_component(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
