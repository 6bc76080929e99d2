"""`kctl-scheduler`: flags, leader election, metrics endpoint.

    kctl-scheduler --apiserver 127.0.0.1:6443 [--leader-elect] [--lease-name kctl-scheduler]
                   [--identity ID] [--percentage-of-nodes-to-score 0] [--batch-size 128]
                   [--metrics-listen 127.0.0.1:10259] [--weight-least-allocated 1] ...

With --leader-elect, instances compete for the Lease kube-system/<lease-name>
(machinery/leaderelection); only the holder runs the Scheduler (informers
included: a standby holds no cache and starts from a fresh list when it takes
over, within lease-duration + retry-period). Losing the lease ends the
process (exit code 1), as kube-scheduler does; a supervisor restarts it.
"""
from __future__ import annotations

import argparse
import logging
import sys

from prometheus_client import start_http_server

from machinery.client import Client
from machinery.leaderelection import LeaderElector, default_identity
from machinery.runner import run_component, run_tasks, setup_logging
from scheduler.framework import Config, Weights
from scheduler.metrics import Metrics
from scheduler.scheduler import Scheduler

log = logging.getLogger("kctl.scheduler")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kctl-scheduler", description="Bind pending pods to nodes.")
    p.add_argument("--apiserver", default="127.0.0.1:6443", help="apiserver HOST:PORT")
    p.add_argument("--leader-elect", action="store_true", help="run only while holding the lease")
    p.add_argument("--lease-name", default="kctl-scheduler")
    p.add_argument("--lease-namespace", default="kube-system")
    p.add_argument("--identity", default="", help="leader election identity (default host_random)")
    p.add_argument("--lease-duration", type=float, default=5.0)
    p.add_argument("--renew-deadline", type=float, default=4.0)
    p.add_argument("--retry-period", type=float, default=1.0)
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                   help="0 = adaptive (50%% - nodes/125, at least 5%%, at least 100 nodes)")
    p.add_argument("--batch-size", type=int, default=128, help="bindings per BindBatch (max 128)")
    p.add_argument("--binds-in-flight", type=int, default=2, help="BindBatch calls outstanding at once")
    p.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics (off when empty)")
    w = Weights()
    p.add_argument("--weight-least-allocated", type=float, default=w.least_allocated)
    p.add_argument("--weight-balanced-allocation", type=float, default=w.balanced_allocation)
    p.add_argument("--weight-node-affinity", type=float, default=w.node_affinity)
    p.add_argument("--weight-owner-spread", type=float, default=w.owner_spread)
    p.add_argument("--profile", default="", help="write a cProfile of the whole run to this file")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p.parse_args(argv)


def config_of(args) -> Config:
    return Config(percentage_of_nodes_to_score=args.percentage_of_nodes_to_score,
                  batch_size=args.batch_size, binds_in_flight=args.binds_in_flight,
                  weights=Weights(least_allocated=args.weight_least_allocated,
                                  balanced_allocation=args.weight_balanced_allocation,
                                  node_affinity=args.weight_node_affinity,
                                  owner_spread=args.weight_owner_spread))


async def run(args) -> None:
    metrics = Metrics()
    if args.metrics_listen:
        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=metrics.registry)
    async with Client(args.apiserver, user_agent="kctl-scheduler") as client:
        def new_scheduler() -> Scheduler:
            return Scheduler(client, config_of(args), metrics=metrics)

        if not args.leader_elect:
            await run_tasks({"scheduler": new_scheduler().run()})
            return
        elector = LeaderElector(client, args.lease_name, args.identity or default_identity(),
                                lease_namespace=args.lease_namespace,
                                lease_duration=args.lease_duration, renew_deadline=args.renew_deadline,
                                retry_period=args.retry_period)

        async def lead() -> None:
            log.info("%s: started leading", elector.identity)
            await new_scheduler().run()

        await run_tasks({"leader-election": elector.run(lead)})


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging("kctl-scheduler", args.verbose)
    if not args.profile:
        return run_component(lambda: run(args))
    import cProfile
    prof = cProfile.Profile()
    try:
        return prof.runcall(run_component, lambda: run(args))
    finally:
        prof.dump_stats(args.profile)


if __name__ == "__main__":
    sys.exit(main())
