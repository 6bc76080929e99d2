"""StatefulSet defaulting and validation, after Kubernetes' SetDefaults_StatefulSet and
pkg/apis/apps/validation TestValidateStatefulSet / TestValidateStatefulSetUpdate /
TestValidateStatefulSetStatus cases."""
from machinery import codec, defaults, validation


def sts(**spec):
    doc = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                        {"name": "c", "image": "nginx", "volumeMounts": [{"name": "www", "mountPath": "/w"}]}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}
    doc["spec"].update(spec)
    obj = codec.from_dict(doc)
    defaults.apply_defaults(obj)
    return obj


def errs(obj, old=None):
    return [str(e) for e in validation.validate(obj, old)]


def test_defaults():
    """SetDefaults_StatefulSet: OrderedReady, RollingUpdate with partition 0, Retain/Retain, 1 replica, 10 revisions."""
    s = sts()
    sp = s.spec
    assert (sp.pod_management_policy, sp.update_strategy.type, sp.update_strategy.rolling_update.partition,
            sp.replicas, sp.revision_history_limit) == ("OrderedReady", "RollingUpdate", 0, 1, 10)
    assert sp.update_strategy.rolling_update.HasField("partition")
    policy = sp.persistent_volume_claim_retention_policy
    assert (policy.when_deleted, policy.when_scaled) == ("Retain", "Retain")
    assert sp.volume_claim_templates[0].spec.volume_mode == "Filesystem"
    assert errs(s) == []
    on_delete = sts(updateStrategy={"type": "OnDelete"})
    assert not on_delete.spec.update_strategy.HasField("rolling_update") and errs(on_delete) == []


def test_invalid_specs_name_the_field():
    assert errs(sts(podManagementPolicy="Random")) == [
        'spec.podManagementPolicy: Unsupported value: "Random": supported values: "OrderedReady", "Parallel"']
    assert errs(sts(updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}})) == [
        "spec.updateStrategy.rollingUpdate: Invalid value: \"\": only allowed for updateStrategy 'RollingUpdate'"]
    assert errs(sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": -1}})) == [
        "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"]
    assert errs(sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}})) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: must be greater than 0"]
    assert errs(sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "120%"}})) == [
        'spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: "120%": must not be greater than 100%']
    assert errs(sts(persistentVolumeClaimRetentionPolicy={"whenScaled": "Keep"})) == [
        'spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: "Keep": supported values: '
        '"Retain", "Delete"']
    assert errs(sts(replicas=-1)) == ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    assert errs(sts(ordinals={"start": -2})) == [
        "spec.ordinals.start: Invalid value: -2: must be greater than or equal to 0"]
    bad = sts()
    bad.spec.template.spec.active_deadline_seconds = 5
    assert errs(bad) == ["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in "
                         "StatefulSet is not Supported"]
    bad = sts()
    bad.spec.template.metadata.labels["app"] = "other"
    assert errs(bad)[0].startswith("spec.template.metadata.labels: Invalid value")
    bad = sts()
    del bad.spec.volume_claim_templates[0].spec.resources.requests["storage"]
    assert errs(bad) == ["spec.volumeClaimTemplates[0].spec.resources[storage]: Required value"]
    bad = sts()
    bad.spec.template.spec.containers[0].volume_mounts[0].name = "nope"
    assert errs(bad) == ['spec.template.spec.containers[0].volumeMounts[0].name: Not found: "nope"']


def test_update_allows_only_the_mutable_fields():
    """ValidateStatefulSetUpdate: replicas, template, updateStrategy, ... may change; serviceName may not."""
    old = sts()
    old.metadata.resource_version = "1"
    new = codec.copy(old)
    new.spec.replicas, new.spec.min_ready_seconds = 5, 3
    new.spec.template.spec.containers[0].image = "nginx:2"
    new.spec.update_strategy.rolling_update.partition = 2
    assert errs(new, old) == []
    new.spec.service_name = "other"
    assert errs(new, old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
        "are forbidden"]


def test_status_rules():
    old = sts()
    new = codec.copy(old)
    new.status.replicas, new.status.ready_replicas, new.status.available_replicas = 2, 3, 1
    assert [str(e) for e in validation.validate_status_update(new, old)] == [
        "status.readyReplicas: Invalid value: 3: cannot be greater than status.replicas"]
    new.status.ready_replicas, new.status.available_replicas = 1, 2
    assert [str(e) for e in validation.validate_status_update(new, old)] == [
        "status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas"]


def test_service_name_is_a_service_name():
    """serviceName is validated as a Service's name (ValidateServiceName: a DNS-1035 label)."""
    assert errs(sts(serviceName="1nginx"))[0].startswith('spec.serviceName: Invalid value: "1nginx": a DNS-1035 label')
    assert errs(sts(serviceName="")) == []
