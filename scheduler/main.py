"""`kctl-scheduler`: flags, configuration, leader election, metrics endpoint.

    kctl-scheduler --kubeconfig /etc/kctl/scheduler.conf [--config FILE] [--leader-elect]
                   [--lease-name kube-scheduler] [--identity ID] [--batch-size 128]
                   [--metrics-listen 127.0.0.1:10259]
                   [--percentage-of-nodes-to-score 0] [--weight-least-allocated 1] ...

--config FILE reads a KubeSchedulerConfiguration (apiVersion
kubescheduler.config.k8s.io/v1; format and merge rules in config.py): its
profiles say which plugins run at which extension point, with which score
weights and pluginConfig args, and which schedulerName each profile serves.
Without it the scheduler runs the built-in default profile
(config.default_profile()), whose score weights the --weight-* flags
change; --weight-* and --percentage-of-nodes-to-score cannot be combined
with --config (set them in the file). A configuration that does not
validate — unknown field, unknown plugin name, plugin at a point it does
not implement, duplicate schedulerName, ... — is reported with the field
that is wrong and the scheduler exits with code 1 before connecting.

With --leader-elect, instances compete for the Lease kube-system/<lease-name>
(machinery/leaderelection); only the holder runs the Scheduler (informers
included: a standby holds no cache and starts from a fresh list when it takes
over, within lease-duration + retry-period). Losing the lease ends the
process (exit code 1), as kube-scheduler does; a supervisor restarts it.

Certificate renewal: --kubeconfig is read again every
--credentials-reload-interval seconds (10); a renewed client certificate
there (`kctl pki renew scheduler.conf`) is used from then on, no restart
(machinery/certreload.py).
"""
from __future__ import annotations

import argparse
import logging
import sys

from prometheus_client import start_http_server

from machinery import certreload, errors
from machinery.client import Client
from machinery.leaderelection import LeaderElector, default_identity
from machinery.runner import run_component, run_tasks, setup_logging
from scheduler import config as schedconfig
from scheduler.config import Config
from scheduler.framework import Handle
from scheduler.metrics import Metrics
from scheduler.plugins import in_tree_registry
from scheduler.runtime import Framework
from scheduler.scheduler import Scheduler

log = logging.getLogger("kctl.scheduler")
WEIGHT_FLAGS = {"--weight-least-allocated": "LeastAllocated", "--weight-balanced-allocation": "BalancedAllocation",
                "--weight-node-affinity": "NodeAffinity", "--weight-owner-spread": "OwnerSpread"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kctl-scheduler", description="Bind pending pods to nodes.")
    p.add_argument("--kubeconfig", help="kubeconfig with this component's credentials (CA, client certificate)")
    p.add_argument("--apiserver", default=None, help="apiserver HOST:PORT, or several comma-separated (HA: fails "
                   "over; overrides the kubeconfig's; "
                   "without --kubeconfig: 127.0.0.1:6443 with the default kubeconfig's credentials)")
    certreload.add_arguments(p)
    p.add_argument("--leader-elect", action="store_true", help="run only while holding the lease")
    p.add_argument("--lease-name", default="kube-scheduler")
    p.add_argument("--lease-namespace", default="kube-system")
    p.add_argument("--identity", default="", help="leader election identity (default host_random)")
    p.add_argument("--lease-duration", type=float, default=5.0)
    p.add_argument("--renew-deadline", type=float, default=4.0)
    p.add_argument("--retry-period", type=float, default=1.0)
    p.add_argument("--config", default="", metavar="FILE",
                   help="KubeSchedulerConfiguration YAML (profiles, plugins, weights)")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=None,
                   help="0 = adaptive (50%% - nodes/125, at least 5%%, at least 100 nodes)")
    p.add_argument("--batch-size", type=int, default=128, help="bindings per BindBatch (max 128)")
    p.add_argument("--binds-in-flight", type=int, default=2, help="BindBatch calls outstanding at once")
    p.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics (off when empty)")
    for flag, plugin in WEIGHT_FLAGS.items():
        p.add_argument(flag, type=float, default=None, help=f"score weight of {plugin} (default profile)")
    p.add_argument("--profile", default="", help="write a cProfile of the whole run to this file")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p.parse_args(argv)


def _weight_flags(args) -> dict[str, tuple[str, float]]:
    """flag -> (plugin, weight) for the --weight-* flags given."""
    given = {flag: (plugin, getattr(args, flag[2:].replace("-", "_"))) for flag, plugin in WEIGHT_FLAGS.items()}
    return {flag: pw for flag, pw in given.items() if pw[1] is not None}


def config_of(args, registry=None) -> Config:
    """The Config the flags and --config describe; ConfigError if unusable."""
    cfg = Config(batch_size=args.batch_size, binds_in_flight=args.binds_in_flight)
    weights = _weight_flags(args)
    if args.config:
        clash = list(weights)
        if args.percentage_of_nodes_to_score is not None:
            clash.append("--percentage-of-nodes-to-score")
        if clash:
            raise errors.ConfigError(f"{', '.join(clash)}: cannot be combined with --config "
                                     "(set percentageOfNodesToScore or plugins.score in the file)")
        registry = registry or in_tree_registry()
        cfg.percentage_of_nodes_to_score, cfg.profiles = schedconfig.load(args.config, registry)
        for profile in cfg.profiles:          # every factory accepts its args, or we stop here
            Framework(profile, registry, Handle(snapshot=None))
        return cfg
    if args.percentage_of_nodes_to_score is not None:
        cfg.percentage_of_nodes_to_score = args.percentage_of_nodes_to_score
    cfg.profiles = [p.with_weights(dict(weights.values())) for p in cfg.profiles]
    return cfg


async def run(args, config: Config) -> None:
    metrics = Metrics()
    if args.metrics_listen:
        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=metrics.registry)
    async with Client.for_component(args.kubeconfig, args.apiserver, user_agent="kctl-scheduler") as client:
        def new_scheduler() -> Scheduler:
            return Scheduler(client, config, metrics=metrics)

        reload = certreload.reload_tasks(client, args.kubeconfig, args.credentials_reload_interval)

        if not args.leader_elect:
            await run_tasks({"scheduler": new_scheduler().run(), **reload})
            return
        elector = LeaderElector(client, args.lease_name, args.identity or default_identity(),
                                lease_namespace=args.lease_namespace,
                                lease_duration=args.lease_duration, renew_deadline=args.renew_deadline,
                                retry_period=args.retry_period)

        async def lead() -> None:
            log.info("%s: started leading", elector.identity)
            await new_scheduler().run()

        await run_tasks({"leader-election": elector.run(lead), **reload})


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging("kctl-scheduler", args.verbose)
    try:
        config = config_of(args)
    except errors.ConfigError as exc:
        print(f"kctl-scheduler: {exc}", file=sys.stderr)
        return 1
    if not args.profile:
        return run_component(lambda: run(args, config))
    import cProfile
    prof = cProfile.Profile()
    try:
        return prof.runcall(run_component, lambda: run(args, config))
    finally:
        prof.dump_stats(args.profile)


if __name__ == "__main__":
    sys.exit(main())
