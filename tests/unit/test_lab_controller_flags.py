"""The lab's controller-manager flags (deploy/lab/cluster.py CONTROLLER_FLAGS)
are ones kctl-controller-manager accepts, with the values the lab documents:
node grace 4 s, eviction 2 s later, HPAs synced every 5 s."""
from controllers.main import parse_args
from deploy.lab import cluster


def test_the_lab_flags_parse_to_the_documented_values():
    args = parse_args(["--apiserver", "127.0.0.1:1", *cluster.CONTROLLER_FLAGS])
    assert (args.node_monitor_grace_period, args.pod_eviction_timeout) == (cluster.NODE_GRACE, cluster.POD_EVICTION)
    assert args.horizontal_pod_autoscaler_sync_period == cluster.HPA_SYNC == 5.0
    assert parse_args(["--apiserver", "127.0.0.1:1"]).horizontal_pod_autoscaler_sync_period == 15.0
