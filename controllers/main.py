"""`kctl-controller-manager`: every controller in one process.

    kctl-controller-manager --kubeconfig /etc/kctl/controller-manager.conf [--leader-elect]
        [--controllers replicaset,deployment,nodelifecycle,nodeipam,endpoints,endpointslice,
                       endpointslicemirroring,garbagecollector,daemonset,statefulset,job,cronjob,
                       ttlafterfinished,disruption,namespace,persistentvolume-binder,pvc-protection,pv-protection,
                       horizontalpodautoscaling,serviceaccount,root-ca-cert-publisher,csrapproving,csrsigning,
                       csrcleaner,tokencleaner,bootstrapsigner]
        [--root-ca-file ca.crt]
        [--cluster-signing-cert-file ca.crt --cluster-signing-key-file ca.key]
        [--cluster-signing-duration 8760h] [--cluster-info-server https://HOST:PORT]
        [--horizontal-pod-autoscaler-sync-period 15s]
        [--horizontal-pod-autoscaler-downscale-stabilization 5m]
        [--job-backoff 10s] [--job-backoff-max 6m] [--max-endpoints-per-slice 100]
        [--node-monitor-grace-period 4s] [--pod-eviction-timeout 2s]
        [--cluster-cidr 10.244.0.0/16] [--node-cidr-mask-size 24]
        [--concurrent-replicaset-syncs 5] [--concurrent-deployment-syncs 5] ...
        [--root-ca-file ca.crt] [--cluster-signing-cert-file ca.crt --cluster-signing-key-file ca.key]
        [--cluster-signing-duration 8760h] [--metrics-listen 127.0.0.1:10257]

`build(client, args)` creates one SharedInformerFactory and the selected
controllers (each registers its informers, indexes and handlers), and returns
the named long-lived coroutines: the informers, the event writer and each
controller's run(). With --leader-elect they run only while this instance
holds the Lease kube-system/kctl-controller-manager; losing it ends the
process (exit 1) as in Kubernetes — a standby starts from a fresh list.

Certificate renewal: --kubeconfig is read again every
--credentials-reload-interval seconds (10); a renewed client certificate
there (`kctl pki renew controller-manager.conf`) is used from then on, no
restart (machinery/certreload.py).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

from prometheus_client import start_http_server

from machinery import certreload
from machinery.client import Client
from machinery.durations import duration
from machinery.events import EventRecorder
from machinery.informer import SharedInformerFactory
from machinery.leaderelection import LeaderElector, default_identity
from machinery.runner import run_component, run_tasks, setup_logging

log = logging.getLogger("kctl.controllers.manager")

ALL = ("replicaset", "deployment", "nodelifecycle", "nodeipam", "endpoints", "endpointslice",
       "endpointslicemirroring", "garbagecollector", "daemonset", "statefulset", "job", "cronjob",
       "ttlafterfinished", "disruption", "namespace", "persistentvolume-binder", "pvc-protection", "pv-protection",
       "horizontalpodautoscaling", "serviceaccount", "root-ca-cert-publisher", "csrapproving", "csrsigning",
       "csrcleaner", "tokencleaner", "bootstrapsigner")


# The source component of each controller's Events, as Kubernetes' controllers name themselves.
EVENT_SOURCES = {
    "replicaset": "replicaset-controller", "deployment": "deployment-controller",
    "nodelifecycle": "node-controller", "nodeipam": "cidrAllocator", "endpoints": "endpoint-controller",
    "endpointslice": "endpoint-slice-controller", "endpointslicemirroring": "endpoint-slice-mirroring-controller",
    "garbagecollector": "garbage-collector-controller", "persistentvolume-binder": "persistentvolume-controller",
    "ttlafterfinished": "ttl-after-finished-controller", "disruption": "controllermanager",
    "horizontalpodautoscaling": "horizontal-pod-autoscaler",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kctl-controller-manager", description="Run the kctl controllers.")
    p.add_argument("--kubeconfig", help="kubeconfig with this component's credentials (CA, client certificate)")
    p.add_argument("--apiserver", default=None, help="apiserver HOST:PORT, or several comma-separated (HA: fails "
                   "over; overrides the kubeconfig's; "
                   "without --kubeconfig: 127.0.0.1:6443 with the default kubeconfig's credentials)")
    certreload.add_arguments(p)
    p.add_argument("--controllers", default=",".join(ALL),
                   help="comma-separated list; '*' = all, '-name' disables one")
    p.add_argument("--leader-elect", action="store_true")
    p.add_argument("--lease-name", default="kube-controller-manager")
    p.add_argument("--lease-namespace", default="kube-system")
    p.add_argument("--identity", default="")
    p.add_argument("--lease-duration", type=duration, default=5.0)
    p.add_argument("--renew-deadline", type=duration, default=4.0)
    p.add_argument("--retry-period", type=duration, default=1.0)
    p.add_argument("--node-monitor-grace-period", type=duration, default=4.0)
    p.add_argument("--node-monitor-period", type=duration, default=0.5)
    p.add_argument("--pod-eviction-timeout", type=duration, default=2.0)
    p.add_argument("--cluster-cidr", default="10.244.0.0/16")
    p.add_argument("--node-cidr-mask-size", type=int, default=24)
    for name, n in (("replicaset", 5), ("deployment", 5), ("endpoint", 5), ("gc", 5), ("namespace", 2),
                    ("daemonset", 2), ("statefulset", 5), ("job", 5), ("cronjob", 5), ("ttl-after-finished", 2),
                    ("disruption", 2)):
        p.add_argument(f"--concurrent-{name}-syncs", type=int, default=n)
    p.add_argument("--job-backoff", type=duration, default=10.0,
                   help="first back-off after a Job's pod fails (doubles per failure)")
    p.add_argument("--job-backoff-max", type=duration, default=360.0, help="cap of the Job pod back-off")
    p.add_argument("--concurrent-service-endpoint-syncs", type=int, default=5,
                   help="EndpointSlice controller workers")
    p.add_argument("--max-endpoints-per-slice", type=int, default=100,
                   help="the most endpoints one EndpointSlice holds (1-1000)")
    p.add_argument("--horizontal-pod-autoscaler-sync-period", type=duration, default=15.0,
                   help="how often every HPA is reconciled")
    p.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", type=duration, default=300.0,
                   help="the scale-down stabilization window of HPAs without spec.behavior")
    p.add_argument("--root-ca-file", default="",
                   help="the cluster CA (PEM) published as ca.crt in every namespace's kube-root-ca.crt "
                        "ConfigMap (empty when not given)")
    p.add_argument("--cluster-signing-cert-file", default="",
                   help="the cluster CA certificate (PEM) that signs CSRs; csrsigning is off without it")
    p.add_argument("--cluster-signing-key-file", default="", help="the cluster CA's private key (PEM)")
    p.add_argument("--cluster-signing-duration", type=duration, default=8760 * 3600.0,
                   help="the longest validity of a signed certificate (default 8760h)")
    p.add_argument("--cluster-info-server", default="",
                   help="the apiserver URL joining nodes use; with --cluster-signing-cert-file the "
                        "bootstrap signer publishes kube-public/cluster-info with it when missing")
    p.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics (off when empty)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    if not 1 <= args.max_endpoints_per_slice <= 1000:
        p.error("--max-endpoints-per-slice must be between 1 and 1000")
    return args


def selected(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = set(ALL) if "*" in names or not any(not n.startswith("-") for n in names) else set()
    for n in names:
        if n == "*":
            continue
        if n.startswith("-"):
            chosen.discard(n[1:])
        elif n in ALL:
            chosen.add(n)
        else:
            raise SystemExit(f"kctl-controller-manager: unknown controller {n!r} (known: {', '.join(ALL)})")
    return [n for n in ALL if n in chosen]


def read_file(path: str, flag: str) -> bytes:
    """A PEM file named by a flag (b'' without one)."""
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SystemExit(f"kctl-controller-manager: cannot read {flag} {path}: {exc.strerror}") from None


def read_root_ca(path: str) -> str:
    """The --root-ca-file's PEM text ('' without one)."""
    return read_file(path, "--root-ca-file").decode("ascii", "replace")


def build(client, args) -> tuple[dict, dict]:
    """(named coroutines to run, controllers by name)."""
    from controllers.cronjob import CronJobController
    from controllers.daemonset import DaemonSetController
    from controllers.deployment import DeploymentController
    from controllers.disruption import DisruptionController
    from controllers.endpoints import EndpointsController
    from controllers.endpointslice import EndpointSliceController
    from controllers.endpointslicemirroring import EndpointSliceMirroringController
    from controllers.garbagecollector import GarbageCollector
    from controllers.hpa import HPAController
    from controllers.job import JobController
    from controllers.namespace import NamespaceController
    from controllers.nodeipam import NodeIpamController
    from controllers.nodelifecycle import NodeLifecycleController
    from controllers.pvbinder import PersistentVolumeController
    from controllers.pvprotection import PVCProtectionController, PVProtectionController
    from controllers.replicaset import ReplicaSetController
    from controllers.serviceaccounts import RootCACertPublisher, ServiceAccountsController
    from controllers.statefulset import StatefulSetController
    from controllers.ttlafterfinished import TTLAfterFinishedController

    factory = SharedInformerFactory(client)
    recorder = EventRecorder(client, "controller-manager", socket.gethostname())
    makers = {
        "replicaset": lambda: ReplicaSetController(client, factory, recorder, args.concurrent_replicaset_syncs),
        "deployment": lambda: DeploymentController(client, factory, recorder, args.concurrent_deployment_syncs),
        "nodelifecycle": lambda: NodeLifecycleController(
            client, factory, recorder, grace=args.node_monitor_grace_period,
            eviction_timeout=args.pod_eviction_timeout, monitor_period=args.node_monitor_period),
        "nodeipam": lambda: NodeIpamController(client, factory, recorder, cluster_cidr=args.cluster_cidr,
                                               node_mask=args.node_cidr_mask_size),
        "endpoints": lambda: EndpointsController(client, factory, recorder, args.concurrent_endpoint_syncs),
        "endpointslice": lambda: EndpointSliceController(
            client, factory, recorder, args.concurrent_service_endpoint_syncs,
            max_endpoints_per_slice=args.max_endpoints_per_slice),
        "endpointslicemirroring": lambda: EndpointSliceMirroringController(
            client, factory, recorder, args.concurrent_service_endpoint_syncs),
        "garbagecollector": lambda: GarbageCollector(client, factory, recorder, args.concurrent_gc_syncs),
        "namespace": lambda: NamespaceController(client, factory, recorder, args.concurrent_namespace_syncs),
        "persistentvolume-binder": lambda: PersistentVolumeController(client, factory, recorder),
        "pvc-protection": lambda: PVCProtectionController(client, factory, recorder),
        "pv-protection": lambda: PVProtectionController(client, factory, recorder),
        "daemonset": lambda: DaemonSetController(client, factory, recorder, args.concurrent_daemonset_syncs),
        "statefulset": lambda: StatefulSetController(client, factory, recorder, args.concurrent_statefulset_syncs),
        "job": lambda: JobController(client, factory, recorder, args.concurrent_job_syncs,
                                     backoff_base=args.job_backoff, backoff_cap=args.job_backoff_max),
        "cronjob": lambda: CronJobController(client, factory, recorder, args.concurrent_cronjob_syncs),
        "ttlafterfinished": lambda: TTLAfterFinishedController(client, factory, recorder,
                                                               args.concurrent_ttl_after_finished_syncs),
        "disruption": lambda: DisruptionController(client, factory, recorder, args.concurrent_disruption_syncs),
        "horizontalpodautoscaling": lambda: HPAController(
            client, factory, recorder, sync_period=args.horizontal_pod_autoscaler_sync_period,
            downscale_window=args.horizontal_pod_autoscaler_downscale_stabilization),
        "serviceaccount": lambda: ServiceAccountsController(client, factory, recorder),
        "root-ca-cert-publisher": lambda: RootCACertPublisher(client, factory, recorder,
                                                              root_ca=read_root_ca(args.root_ca_file)),
    }
    makers.update(_certificate_makers(client, factory, recorder, args))
    ctrls = {name: c for name in selected(args.controllers) if (c := makers[name]()) is not None}
    for name, c in ctrls.items():          # one writer, each controller's own `From:` (as Kubernetes')
        c.recorder = recorder.for_component(EVENT_SOURCES.get(name, f"{name}-controller"))
    tasks = {"informers": factory.run(), "events": recorder.run()}
    for name, c in ctrls.items():
        tasks[f"controller:{name}"] = c.run()
    return tasks, ctrls


def _certificate_makers(client, factory, recorder, args) -> dict:
    """Node join (issue 14): CSR approval, signing and cleanup, bootstrap tokens.
    csrsigning needs the CA files (None, i.e. not started, without them, as
    in Kubernetes)."""
    from controllers.bootstrap import BootstrapSigner, TokenCleaner
    from controllers.csrapproving import CSRApprovingController
    from controllers.csrcleaner import CSRCleaner
    from controllers.csrsigning import CA, CSRSigningController

    have_ca = bool(args.cluster_signing_cert_file and args.cluster_signing_key_file)

    def signing():
        if not have_ca:
            log.info("skipping csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file")
            return None
        ca = CA.from_files(args.cluster_signing_cert_file, args.cluster_signing_key_file)
        return CSRSigningController(client, factory, recorder, ca=ca, duration=args.cluster_signing_duration)

    def bootstrapsigner():
        ca_pem = None
        if args.cluster_info_server:
            ca_pem = read_file(args.cluster_signing_cert_file, "--cluster-signing-cert-file") or None
        return BootstrapSigner(client, factory, recorder, ca_pem=ca_pem, server=args.cluster_info_server)

    return {"csrapproving": lambda: CSRApprovingController(client, factory, recorder),
            "csrsigning": signing,
            "csrcleaner": lambda: CSRCleaner(client, factory, recorder),
            "tokencleaner": lambda: TokenCleaner(client, factory, recorder),
            "bootstrapsigner": bootstrapsigner}


async def run_all(client, args) -> None:
    tasks, ctrls = build(client, args)
    log.info("starting controllers: %s", ", ".join(ctrls))
    async with asyncio.TaskGroup() as tg:
        for name, coro in tasks.items():
            tg.create_task(coro, name=name)


async def run(args) -> None:
    if args.metrics_listen:
        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0")
    async with Client.for_component(args.kubeconfig, args.apiserver, user_agent="kctl-controller-manager") as client:
        reload = certreload.reload_tasks(client, args.kubeconfig, args.credentials_reload_interval)
        if not args.leader_elect:
            tasks, ctrls = build(client, args)
            log.info("starting controllers: %s", ", ".join(ctrls))
            await run_tasks({**tasks, **reload})
            return
        elector = LeaderElector(client, args.lease_name, args.identity or default_identity(),
                                lease_namespace=args.lease_namespace, lease_duration=args.lease_duration,
                                renew_deadline=args.renew_deadline, retry_period=args.retry_period)

        async def lead() -> None:
            log.info("%s: started leading", elector.identity)
            await run_all(client, args)

        await run_tasks({"leader-election": elector.run(lead), **reload})


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging("kctl-controller-manager", args.verbose)
    return run_component(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
