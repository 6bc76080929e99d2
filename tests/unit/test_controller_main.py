"""kctl-controller-manager flags and wiring."""
import argparse

import pytest

from controllers import main as cm
from machinery.fakeclient import FakeClient


def test_durations_and_defaults():
    assert cm.duration("4s") == 4 and cm.duration("500ms") == 0.5 and cm.duration("1m") == 60
    assert cm.duration("2") == 2
    with pytest.raises(argparse.ArgumentTypeError):
        cm.duration("soon")
    a = cm.parse_args([])
    assert (a.node_monitor_grace_period, a.pod_eviction_timeout, a.cluster_cidr, a.node_cidr_mask_size) == \
        (4.0, 2.0, "10.244.0.0/16", 24)


def test_controller_selection():
    assert cm.selected("replicaset,deployment") == ["replicaset", "deployment"]
    assert "nodeipam" not in cm.selected("*,-nodeipam") and len(cm.selected("*,-nodeipam")) == len(cm.ALL) - 1
    assert cm.selected("-namespace") == [n for n in cm.ALL if n != "namespace"]
    with pytest.raises(SystemExit):
        cm.selected("replicaset,nope")


async def test_build_wires_every_controller_on_shared_informers():
    tasks, ctrls = cm.build(FakeClient(), cm.parse_args(["--concurrent-replicaset-syncs", "7"]))
    try:
        assert list(ctrls) == [n for n in cm.ALL if n != "csrsigning"]     # no CA files: no signer
        assert ctrls["replicaset"].workers == 7
        assert ctrls["replicaset"].pod_inf is ctrls["deployment"].pod_inf is ctrls["endpoints"].pod_inf
        assert {"informers", "events", "controller:deployment", "controller:nodelifecycle"} <= set(tasks)
    finally:
        for coro in tasks.values():
            coro.close()


async def test_csrsigning_runs_with_the_cluster_ca_files(tmp_path):
    from tests.unit.certs import make_ca
    cert, key = make_ca()
    (tmp_path / "ca.crt").write_bytes(cert)
    (tmp_path / "ca.key").write_bytes(key)
    args = cm.parse_args(["--controllers", "csrsigning,bootstrapsigner",
                          "--cluster-signing-cert-file", str(tmp_path / "ca.crt"),
                          "--cluster-signing-key-file", str(tmp_path / "ca.key"),
                          "--cluster-signing-duration", "2h", "--cluster-info-server", "https://10.0.0.1:6443"])
    tasks, ctrls = cm.build(FakeClient(), args)
    try:
        assert list(ctrls) == ["csrsigning", "bootstrapsigner"]
        assert ctrls["csrsigning"].duration == 7200 and ctrls["bootstrapsigner"].ca_pem == cert
        assert cm.parse_args([]).cluster_signing_duration == 365 * 24 * 3600
    finally:
        for coro in tasks.values():
            coro.close()
