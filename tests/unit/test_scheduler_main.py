"""kctl-scheduler flags (and --config) → Config; a bad config stops it."""
import pytest

from machinery import errors
from scheduler.main import config_of, main, parse_args


def test_defaults():
    args = parse_args(["--apiserver", "127.0.0.1:1"])
    cfg = config_of(args)
    assert (args.apiserver, args.leader_elect, args.lease_name) == ("127.0.0.1:1", False, "kube-scheduler")
    assert cfg.percentage_of_nodes_to_score == 0 and cfg.batch_size == 128
    assert [p.scheduler_name for p in cfg.profiles] == ["default-scheduler"]
    assert cfg.profiles[0].weights() == {"LeastAllocated": 1, "BalancedAllocation": 1,
                                         "NodeAffinity": 2, "OwnerSpread": 2,
                                         "PodTopologySpread": 2, "InterPodAffinity": 2}


def test_flags():
    args = parse_args(["--leader-elect", "--identity", "a", "--percentage-of-nodes-to-score", "30",
                       "--batch-size", "64", "--weight-owner-spread", "5", "--weight-least-allocated", "0",
                       "--metrics-listen", "127.0.0.1:10259", "--binds-in-flight", "3"])
    cfg = config_of(args)
    assert args.leader_elect and args.identity == "a" and args.metrics_listen == "127.0.0.1:10259"
    assert (cfg.percentage_of_nodes_to_score, cfg.batch_size, cfg.binds_in_flight) == (30, 64, 3)
    w = cfg.profiles[0].weights()
    assert w["OwnerSpread"] == 5 and w["LeastAllocated"] == 0 and w["NodeAffinity"] == 2


CONFIG = """\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 40
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    score:
      disabled: [{name: LeastAllocated}, {name: OwnerSpread}]
"""


def test_config_file(tmp_path):
    f = tmp_path / "sched.yaml"
    f.write_text(CONFIG)
    cfg = config_of(parse_args(["--config", str(f), "--batch-size", "32"]))
    assert cfg.percentage_of_nodes_to_score == 40 and cfg.batch_size == 32
    assert [p.scheduler_name for p in cfg.profiles] == ["default-scheduler", "packer"]
    assert cfg.profiles[1].weights() == {"BalancedAllocation": 1, "NodeAffinity": 2,
                                         "PodTopologySpread": 2, "InterPodAffinity": 2}


def test_config_cannot_be_combined_with_weight_flags(tmp_path):
    f = tmp_path / "sched.yaml"
    f.write_text(CONFIG)
    with pytest.raises(errors.ConfigError, match="--weight-owner-spread: cannot be combined with --config"):
        config_of(parse_args(["--config", str(f), "--weight-owner-spread", "3"]))


def test_bad_config_refuses_to_start(tmp_path, capsys):
    f = tmp_path / "sched.yaml"
    f.write_text(CONFIG.replace("LeastAllocated", "LeastAlocated"))
    assert main(["--config", str(f), "--apiserver", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert 'profiles[1].plugins.score.disabled[0].name: Unsupported value: "LeastAlocated"' in err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 1
    assert "No such file or directory" in capsys.readouterr().err
