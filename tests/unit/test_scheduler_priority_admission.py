"""PriorityClass validation and the Priority admission plugin
(apiserver/admission_priority.py), against a fake etcd read side.

Cases follow Kubernetes' plugin/pkg/admission/priority/admission_test.go
(TestPodAdmission: "Pod with no priority class and no global default",
"pod with a priority class that doesn't exist", "pod with existing priority
class", "pod with no priority class and a default", "pod with priority set
but not from the class", "pod with preemption policy differing from its
class") and TestPriorityClassAdmission ("one default class", "multiple
default classes"), and pkg/apis/scheduling/validation's
TestValidatePriorityClass ("system prefix", "value too large",
"invalid preemptionPolicy").
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from apiserver import admission_priority
from machinery import errors, kinds
from machinery.validation import validate
from scheduler import hollow
from tests.unit.fake_storage import FakeStorage




def pc(name, value, default=False, policy=None):
    c = kinds.new("PriorityClass")
    c.metadata.name = name
    c.value, c.global_default = value, default
    if policy:
        c.preemption_policy = policy
    return c


def admit(obj, *classes):
    asyncio.run(admission_priority.admit(SimpleNamespace(storage=FakeStorage(*classes)), obj))
    return obj


def test_no_class_and_no_default_gives_priority_zero():
    p = admit(hollow.pod("a"))
    assert p.spec.priority == 0 and p.spec.priority_class_name == ""
    assert p.spec.preemption_policy == "PreemptLowerPriority"


def test_missing_class_is_forbidden_with_kubernetes_message():
    p = hollow.pod("a")
    p.spec.priority_class_name = "nope"
    with pytest.raises(errors.Forbidden, match='pods "a" is forbidden: no PriorityClass with name nope was found'):
        admit(p)


def test_existing_class_sets_priority_and_policy():
    p = hollow.pod("a")
    p.spec.priority_class_name = "high"
    admit(p, pc("high", 1000, policy="Never"))
    assert (p.spec.priority, p.spec.preemption_policy) == (1000, "Never")


def test_global_default_is_the_lowest_default_and_names_itself():
    p = admit(hollow.pod("a"), pc("d1", 50, default=True), pc("d2", 10, default=True), pc("x", 5))
    assert (p.spec.priority, p.spec.priority_class_name) == (10, "d2")


def test_system_classes_resolve_before_they_are_stored():
    p = hollow.pod("a")
    p.spec.priority_class_name = "system-node-critical"
    assert admit(p).spec.priority == 2_000_001_000


def test_priority_not_from_class_is_forbidden():
    p = hollow.pod("a")
    p.spec.priority_class_name = "high"
    p.spec.priority = 7
    with pytest.raises(errors.Forbidden, match=r"the integer value of priority \(7\) must not be provided"):
        admit(p, pc("high", 1000))


def test_preemption_policy_differing_from_class_is_forbidden():
    p = hollow.pod("a")
    p.spec.priority_class_name = "high"
    p.spec.preemption_policy = "Never"
    with pytest.raises(errors.Forbidden, match=r"the string value of PreemptionPolicy \(Never\)"):
        admit(p, pc("high", 1000, policy="PreemptLowerPriority"))


def test_second_global_default_is_forbidden():
    with pytest.raises(errors.Forbidden, match="PriorityClass d1 is already marked as default. Only one default"):
        admit(pc("d2", 1, default=True), pc("d1", 2, default=True))
    admit(pc("d2", 1, default=False), pc("d1", 2, default=True))


def messages(obj, old=None):
    return [str(e) for e in validate(obj, old)]


def test_priority_class_validation():
    assert messages(pc("fine", 10)) == []
    assert messages(admission_priority.system_class("system-cluster-critical")) == []
    assert messages(pc("system-foo", 10)) == [
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use "
        "only. error: system-foo is not a known system priority class"]
    assert messages(pc("big", 1_000_000_001)) == [
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    assert messages(pc("p", 1, policy="Sometimes")) == [
        'preemptionPolicy: Unsupported value: "Sometimes": supported values: "PreemptLowerPriority", "Never"']
    old, new = pc("p", 1), pc("p", 2)
    new.metadata.resource_version = old.metadata.resource_version = "5"
    assert "value: Forbidden: may not be changed in an update." in messages(new, old)


def test_pod_placement_validation():
    p = hollow.pod("a")
    c = p.spec.topology_spread_constraints.add(max_skew=0, topology_key="", when_unsatisfiable="Maybe")
    c.min_domains = 2
    p.spec.topology_spread_constraints.add(max_skew=1, topology_key="zone", when_unsatisfiable="DoNotSchedule")
    p.spec.topology_spread_constraints.add(max_skew=1, topology_key="zone", when_unsatisfiable="DoNotSchedule")
    p.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution.add(topology_key="")
    p.spec.preemption_policy = "Sometimes"
    got = messages(p)
    assert "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero" in got
    assert "spec.topologySpreadConstraints[0].topologyKey: Required value: can not be empty" in got
    assert ('spec.topologySpreadConstraints[0].minDomains: Invalid value: 2: can only use minDomains if '
            'whenUnsatisfiable=DoNotSchedule, not Maybe') in got
    assert ('spec.topologySpreadConstraints[2].{topologyKey, whenUnsatisfiable}: Duplicate value: '
            '"{zone, DoNotSchedule}"') in got
    assert ("spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: "
            "Required value: can not be empty") in got
    assert any(m.startswith('spec.preemptionPolicy: Unsupported value: "Sometimes"') for m in got)
