"""kctl-scheduler flags → Config."""
from scheduler.main import config_of, parse_args


def test_defaults():
    args = parse_args(["--apiserver", "127.0.0.1:1"])
    cfg = config_of(args)
    assert (args.apiserver, args.leader_elect, args.lease_name) == ("127.0.0.1:1", False, "kctl-scheduler")
    assert cfg.percentage_of_nodes_to_score == 0 and cfg.batch_size == 128
    assert (cfg.weights.least_allocated, cfg.weights.balanced_allocation,
            cfg.weights.node_affinity, cfg.weights.owner_spread) == (1, 1, 2, 2)


def test_flags():
    args = parse_args(["--leader-elect", "--identity", "a", "--percentage-of-nodes-to-score", "30",
                       "--batch-size", "64", "--weight-owner-spread", "5", "--weight-least-allocated", "0",
                       "--metrics-listen", "127.0.0.1:10259", "--binds-in-flight", "3"])
    cfg = config_of(args)
    assert args.leader_elect and args.identity == "a" and args.metrics_listen == "127.0.0.1:10259"
    assert (cfg.percentage_of_nodes_to_score, cfg.batch_size, cfg.binds_in_flight) == (30, 64, 3)
    assert cfg.weights.owner_spread == 5 and cfg.weights.least_allocated == 0
