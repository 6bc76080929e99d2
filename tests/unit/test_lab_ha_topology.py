"""An HA lab's layout and command lines (`kctl lab up --control-planes N`,
issue 17), without building anything: the machines' addresses, netns and
ports; the etcd cluster's argv; each machine's components; the partition
rules of a machine; who leads etcd; which unit a fault verb means."""
from ipaddress import IPv4Network

import pytest

from deploy.lab import controlplane, naming
from deploy.lab.naming import LabError
from deploy.lab.topology import Lab, LabSpec

S = "172.30.9"


def lab(control_planes=3, nodes=2, name="ha"):
    lab = Lab(LabSpec(name=name, nodes=nodes, control_planes=control_planes))
    lab.subnet = IPv4Network(f"{S}.0/24")      # as after build(), without building
    return lab


@pytest.mark.parametrize("n", [1, 3, 5, 9])
def test_odd_control_plane_counts_are_accepted(n):
    assert naming.check_control_planes(n) == n


@pytest.mark.parametrize("n", [0, 2, 4, 11, -1, True, "3"])
def test_other_counts_are_refused_naming_the_rule(n):
    with pytest.raises(LabError, match="control planes must be an odd number from 1 to 9"):
        Lab(LabSpec(name="ha", control_planes=n))


def test_machines_sit_between_the_host_and_the_nodes():
    ha = lab()
    assert ha.machine_names == ["cp1", "cp2", "cp3"]
    cp2 = ha.machine("cp2")
    assert (cp2.ip, cp2.netns, cp2.netns_path, cp2.iface, cp2.bridge_port) == (
        f"{S}.3", "klha-cp2", "/var/run/netns/klha-cp2", "eth0", "klha-c2b")
    assert ha.cp_address == f"{S}.1"                       # the host keeps S.1
    assert ha.cp_addresses == [f"{S}.2", f"{S}.3", f"{S}.4"]
    assert [n.ip for n in ha.nodes] == [f"{S}.11", f"{S}.12"]
    assert ha.place("cp3").ip == f"{S}.4" and ha.place("node1").ip == f"{S}.11"
    # the longest interface name of the longest lab name fits Linux' 15 characters
    assert len(naming.machine_bridge_port("abcdefgh", 9)) <= 15


def test_one_control_plane_is_todays_layout():
    one = lab(control_planes=1)
    assert one.machine_names == [] and one.machines == []
    assert one.cp_addresses == [f"{S}.1"]
    with pytest.raises(LabError, match="no control-plane machine 'cp1'.*root netns"):
        one.machine("cp1")


def test_a_machine_partition_cuts_the_lab_but_not_the_host():
    ha = lab()
    assert ha.partition_rules("cp2") == [
        ["-s", f"{S}.3", "-d", f"{S}.3", "-j", "RETURN"],      # its own components reach each other
        ["-d", f"{S}.1", "-j", "RETURN"], ["-s", f"{S}.1", "-j", "RETURN"],
        ["-d", f"{S}.0/24", "-j", "DROP"], ["-s", f"{S}.0/24", "-j", "DROP"]]
    # a node is cut from every control-plane machine
    assert ha.partition_rules("node1") == [[f, f"{S}.{i}", "-j", "DROP"] for i in (2, 3, 4) for f in ("-d", "-s")]
    assert lab(control_planes=1).partition_rules("node1") == [["-d", f"{S}.1", "-j", "DROP"],
                                                              ["-s", f"{S}.1", "-j", "DROP"]]
    with pytest.raises(LabError, match="no node 'cp9'"):
        ha.partition_rules("cp9")


def flag(argv, name):
    return argv[argv.index(name) + 1]


def test_each_etcd_member_knows_the_whole_cluster():
    argv = controlplane.etcd_member_argv(lab(), "cp2")
    assert flag(argv, "--name") == "cp2"
    assert flag(argv, "--listen-client-urls") == flag(argv, "--advertise-client-urls") == f"http://{S}.3:2379"
    assert flag(argv, "--listen-peer-urls") == f"http://{S}.3:2380"
    assert flag(argv, "--initial-cluster") == ",".join(f"cp{i}=http://{S}.{i + 1}:2380" for i in (1, 2, 3))
    assert flag(argv, "--initial-cluster-token") == "klha-etcd"    # never joins another lab's members
    assert flag(argv, "--data-dir") == "/var/lib/kctl-lab/ha/etcd-cp2"


def test_a_machines_components_bind_its_address_and_get_every_apiserver_own_first():
    ha = lab()
    etcd = ",".join(controlplane.etcd_client_urls(ha).values())
    argvs = controlplane.control_plane_argv(ha, etcd, "cp2", controlplane.apiservers(ha))
    api = argvs["apiserver"]
    assert flag(api, "--etcd-servers") == f"http://{S}.2:2379,http://{S}.3:2379,http://{S}.4:2379"
    assert (flag(api, "--listen"), flag(api, "--http-listen")) == (f"{S}.3:6443", f"{S}.3:8080")
    for comp in ("scheduler", "controller-manager", "dns"):
        assert flag(argvs[comp], "--apiserver") == f"{S}.3:6443,{S}.2:6443,{S}.4:6443"
        assert flag(argvs[comp], "--metrics-listen").startswith(f"{S}.3:")
    assert flag(argvs["dns"], "--listen") == f"{S}.3:53"
    for comp in ("scheduler", "controller-manager"):       # leader-elected, the Lease names the machine
        assert "--leader-elect" in argvs[comp] and flag(argvs[comp], "--identity") == "cp2"
    assert "--leader-elect" not in argvs["dns"]
    assert flag(argvs["scheduler"], "--lease-name") == "kube-scheduler"   # what RBAC lets the scheduler update


def test_one_control_plane_keeps_its_single_endpoint_argv():
    one = lab(control_planes=1)
    argvs = controlplane.control_plane_argv(one, "http://127.0.0.1:2379")
    assert flag(argvs["apiserver"], "--listen") == f"{S}.1:6443"
    assert flag(argvs["scheduler"], "--apiserver") == f"{S}.1:6443"
    assert "--leader-elect" not in argvs["scheduler"] + argvs["controller-manager"]
    assert controlplane.apiservers(one) == [f"{S}.1:6443"]
    assert controlplane.unit_name("apiserver") == "apiserver"
    assert controlplane.unit_name("apiserver", "cp2") == "apiserver-cp2"


def member(id_, leader):
    return {"id": id_, "leader_id": leader}


def test_the_etcd_leader_is_the_one_most_members_name():
    assert controlplane.leader_of({"cp1": member("11", "22"), "cp2": member("22", "22"),
                                   "cp3": member("33", "22")}) == "cp2"
    # a partitioned old leader still naming itself is outvoted
    assert controlplane.leader_of({"cp1": member("11", "11"), "cp2": member("22", "33"),
                                   "cp3": member("33", "33")}) == "cp3"
    none = {"id": None, "leader_id": None}
    assert controlplane.leader_of({"cp1": none, "cp2": none, "cp3": none}) is None
    assert controlplane.leader_of({"cp1": member("11", "11"), "cp2": member("22", "22"), "cp3": none}) is None
    assert controlplane.leader_of({}) is None


def test_fault_verbs_resolve_a_component_on_a_machine(tmp_path, monkeypatch):
    from deploy.lab.faults import resolve
    monkeypatch.setattr(naming, "STATE_ROOT", str(tmp_path))
    ha = lab()
    ha.store.update(lambda s: s.setdefault("procs", {}).update(
        {n: {"supervised": True, "machine": m} for n, m in
         (("apiserver-cp2", "cp2"), ("etcd-cp1", "cp1"), ("agent-node1", None), ("registry", None))}))
    assert resolve(ha, "apiserver", "cp2") == "apiserver-cp2"
    assert resolve(ha, "apiserver-cp2") == "apiserver-cp2"
    assert resolve(ha, "node1") == "agent-node1" and resolve(ha, "registry") == "registry"
    with pytest.raises(LabError, match="on each of its control-plane machines cp1, cp2, cp3: say which with --machine"):
        resolve(ha, "etcd")
    with pytest.raises(LabError, match="registry does not run on a control-plane machine"):
        resolve(ha, "registry", "cp1")
    with pytest.raises(LabError, match="no control-plane machine 'cp7'"):
        resolve(ha, "etcd", "cp7")
    with pytest.raises(LabError, match="no component 'etcd-cp3'"):
        resolve(ha, "etcd", "cp3")


def test_status_names_each_members_role():
    from deploy.lab.cli import etcd_role, where
    assert etcd_role(member("11", "11"), "cp1", "cp1") == "leader"
    assert etcd_role(member("22", "11"), "cp1", "cp2") == "follower"
    assert etcd_role({"id": None}, "cp1", "cp3") == "unreachable"
    assert etcd_role(member("22", None), None, "cp2") == "no leader"
    assert where({"machine": "cp2"}) == "cp2" and where({"node": "node1"}) == "node1" and where({}) == "root netns"
