"""Defaulting and validation of Job, CronJob, DaemonSet, PodDisruptionBudget
and ControllerRevision: each bad input yields exactly Kubernetes' field path
and error type (cases after pkg/apis/{batch,apps,policy}/validation/*_test.go)."""
import copy
import pathlib

import pytest

from machinery import codec, defaults, validation, workloads

DELETE = object()
POD_TEMPLATE = {"metadata": {"labels": {"app": "pi"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}}
JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
       "spec": {"completions": 3, "template": POD_TEMPLATE}}
CRONJOB = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "default"},
           "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": POD_TEMPLATE}}}}
DS = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
      "spec": {"selector": {"matchLabels": {"app": "agent"}},
               "template": {"metadata": {"labels": {"app": "agent"}},
                            "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}}}
PDB = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}
CR = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "agent-1", "namespace": "default"},
      "data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 1}
BASES = {"job": JOB, "cronjob": CRONJOB, "ds": DS, "pdb": PDB, "cr": CR}


def build(base, *edits, uid="u-1"):
    d = copy.deepcopy(BASES[base])
    for path, value in edits:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        cur = d
        for p in parents:
            cur = cur.setdefault(p, {}) if isinstance(cur, dict) else cur[p]
        if value is DELETE:
            del cur[last]
        else:
            cur[last] = value
    obj = codec.from_dict(d)
    defaults.apply_defaults(obj)
    if base == "job":                          # what the apiserver's Job strategy does on create
        obj.metadata.uid = uid
        workloads.generate_job_selector(obj)
    return obj


@pytest.mark.parametrize("base", sorted(BASES))
def test_bases_are_valid(base):
    assert [str(e) for e in validation.validate(build(base))] == []


def test_defaults_follow_kubernetes():
    """SetDefaults_Job, SetDefaults_CronJob, SetDefaults_DaemonSet."""
    j = build("job", ("spec.completions", DELETE))
    assert (j.spec.completions, j.spec.parallelism, j.spec.backoff_limit, j.spec.completion_mode,
            j.spec.suspend, j.spec.pod_replacement_policy) == (1, 1, 6, "NonIndexed", False, "TerminatingOrFailed")
    assert dict(j.metadata.labels)["app"] == "pi"
    j = build("job", ("spec.podFailurePolicy", {"rules": [{"action": "Ignore",
                                                           "onPodConditions": [{"type": "DisruptionTarget"}]}]}))
    assert j.spec.pod_replacement_policy == "Failed"
    assert j.spec.pod_failure_policy.rules[0].on_pod_conditions[0].status == "True"
    assert j.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    cj = build("cronjob")
    assert (cj.spec.concurrency_policy, cj.spec.suspend, cj.spec.successful_jobs_history_limit,
            cj.spec.failed_jobs_history_limit) == ("Allow", False, 3, 1)
    ds = build("ds")
    ru = ds.spec.update_strategy.rolling_update
    assert (ds.spec.update_strategy.type, ru.max_unavailable.int_val, ru.max_surge.int_val,
            ds.spec.revision_history_limit) == ("RollingUpdate", 1, 0, 10)


def test_generated_selector_and_labels():
    """generateSelector: job-name and controller-uid labels (new and legacy), selector on the UID."""
    j = build("job")
    labels = dict(j.spec.template.metadata.labels)
    assert labels == {"app": "pi", "batch.kubernetes.io/job-name": "pi", "job-name": "pi",
                      "batch.kubernetes.io/controller-uid": "u-1", "controller-uid": "u-1"}
    assert dict(j.spec.selector.match_labels) == {"batch.kubernetes.io/controller-uid": "u-1"}
    manual = build("job", ("spec.manualSelector", True), ("spec.selector", {"matchLabels": {"app": "pi"}}))
    assert dict(manual.spec.selector.match_labels) == {"app": "pi"}


CASES = [
    ("job", [("spec.parallelism", -1)], "Invalid", "spec.parallelism", "must be greater than or equal to 0"),
    ("job", [("spec.backoffLimit", -1)], "Invalid", "spec.backoffLimit", None),
    ("job", [("spec.completionMode", "Sometimes")], "NotSupported", "spec.completionMode", None),
    ("job", [("spec.completionMode", "Indexed"), ("spec.completions", DELETE), ("spec.parallelism", 2)],
     "Required", "spec.completions", "when completion mode is Indexed"),
    ("job", [("spec.template.spec.restartPolicy", "Always")], "NotSupported", "spec.template.spec.restartPolicy",
     'supported values: "OnFailure", "Never"'),
    ("job", [("spec.podFailurePolicy", {"rules": [{"action": "Explode", "onExitCodes": {"operator": "In",
                                                                                       "values": [1]}}]})],
     "NotSupported", "spec.podFailurePolicy.rules[0].action", None),
    ("job", [("spec.podFailurePolicy", {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In",
                                                                                         "values": [3]}}]})],
     "Invalid", "spec.podFailurePolicy.rules[0].action", "requires the backoffLimitPerIndex to be set"),
    ("job", [("spec.podFailurePolicy", {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In",
                                                                                       "values": [0]}}]})],
     "Invalid", "spec.podFailurePolicy.rules[0].onExitCodes.values[0]", None),
    ("job", [("spec.template.spec.restartPolicy", "OnFailure"),
             ("spec.podFailurePolicy", {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "X"}]}]})],
     "Invalid", "spec.template.spec.restartPolicy", 'only "Never" is supported when podFailurePolicy is specified'),
    ("job", [("spec.manualSelector", True), ("spec.selector", {"matchLabels": {"app": "other"}})],
     "Invalid", "spec.template.metadata.labels", "`selector` does not match template `labels`"),
    ("cronjob", [("spec.schedule", "61 * * * *")], "Invalid", "spec.schedule", None),
    ("cronjob", [("spec.schedule", "TZ=UTC 0 3 * * *")], "Invalid", "spec.schedule",
     "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
    ("cronjob", [("spec.timeZone", "Mars/Olympus")], "Invalid", "spec.timeZone", "unknown time zone Mars/Olympus"),
    ("cronjob", [("spec.timeZone", "Local")], "Invalid", "spec.timeZone", "timeZone must be an explicit time zone"),
    ("cronjob", [("spec.concurrencyPolicy", "Sometimes")], "NotSupported", "spec.concurrencyPolicy", None),
    ("cronjob", [("spec.startingDeadlineSeconds", -5)], "Invalid", "spec.startingDeadlineSeconds", None),
    ("cronjob", [("metadata.name", "n" * 53)], "Invalid", "metadata.name", "must be no more than 52 characters"),
    ("cronjob", [("spec.jobTemplate.spec.selector", {"matchLabels": {"a": "b"}})], "Invalid",
     "spec.jobTemplate.spec.selector", "`selector` will be auto-generated"),
    ("ds", [("spec.updateStrategy", {"type": "Sometimes"})], "NotSupported", "spec.updateStrategy.type", None),
    ("ds", [("spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0,
                                                                               "maxSurge": 0}})],
     "Required", "spec.updateStrategy.rollingUpdate.maxUnavailable", "cannot be 0 when maxSurge is 0"),
    ("ds", [("spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1,
                                                                               "maxSurge": "10%"}})],
     "Invalid", "spec.updateStrategy.rollingUpdate.maxSurge", "may not be set when maxUnavailable is non-zero"),
    ("ds", [("spec.template.spec.restartPolicy", "Never")], "NotSupported", "spec.template.spec.restartPolicy", None),
    ("ds", [("spec.selector", {})], "Invalid", "spec.selector", "empty selector is invalid for daemonset"),
    ("pdb", [("spec.maxUnavailable", 1)], "Invalid", "spec", "minAvailable and maxUnavailable cannot be both set"),
    ("pdb", [("spec.minAvailable", "120%")], "Invalid", "spec.minAvailable", "must not be greater than 100%"),
    ("pdb", [("spec.minAvailable", -1)], "Invalid", "spec.minAvailable", None),
    ("pdb", [("spec.unhealthyPodEvictionPolicy", "Never")], "NotSupported", "spec.unhealthyPodEvictionPolicy", None),
    ("cr", [("revision", -1)], "Invalid", "revision", None),
    ("cr", [("data", DELETE)], "Required", "data", "data is mandatory"),
]


@pytest.mark.parametrize("base, edits, etype, field, detail", CASES,
                         ids=[f"{c[0]}:{c[3]}:{i}" for i, c in enumerate(CASES)])
def test_invalid(base, edits, etype, field, detail):
    errs = validation.validate(build(base, *edits))
    assert [(e.type, e.field) for e in errs] == [(etype, field)], [str(e) for e in errs]
    if detail:
        assert detail in str(errs[0])


def test_updates():
    """ValidateJobUpdate (immutable completions/selector/template unless suspended and never started),
    apps selector immutability, ControllerRevision data immutability, CronJob TZ kept on update."""
    old = build("job")
    errs = validation.validate(build("job", ("spec.completions", 5)), old)
    assert [(e.type, e.field) for e in errs] == [("Invalid", "spec.completions")]
    new = build("job", ("spec.template.spec.containers.0.image", "perl:5.36"))
    assert [e.field for e in validation.validate(new, old)] == ["spec.template"]
    suspended = build("job", ("spec.template.spec.containers.0.image", "perl:5.36"), ("spec.suspend", True))
    assert validation.validate(suspended, old) == []
    assert validation.validate(build("job", ("spec.parallelism", 4)), old) == []
    errs = validation.validate(build("ds", ("spec.selector", {"matchLabels": {"app": "x"}}),
                                     ("spec.template.metadata.labels", {"app": "x"})), build("ds"))
    assert [e.field for e in errs] == ["spec.selector"]
    errs = validation.validate(build("cr", ("data", {"spec": {}})), build("cr"))
    assert [e.field for e in errs] == ["data"]
    legacy = build("cronjob", ("spec.schedule", "TZ=UTC 0 3 * * *"))
    assert validation.validate(build("cronjob", ("spec.schedule", "TZ=UTC 0 4 * * *")), legacy) == []
    errs = validation.validate(build("cronjob", ("spec.schedule", "TZ=UTC 0 4 * * *"), ("spec.timeZone", "UTC")),
                               legacy)
    assert "cannot use both timeZone field and TZ or CRON_TZ in schedule" in str(errs[0])


def test_status_updates():
    job = build("job")
    job.status.failed = -1
    assert [e.field for e in validation.validate_status_update(job, build("job"))] == ["status.failed"]
    pdb = build("pdb")
    pdb.status.disruptions_allowed = -1
    assert [e.field for e in validation.validate_status_update(pdb, build("pdb"))] == ["status.disruptionsAllowed"]


@pytest.mark.parametrize("name", ["job-indexed", "cronjob", "daemonset", "pdb"])
def test_examples_decode_default_and_validate(name):
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / f"{name}.yaml"
    for doc in codec.load_documents(path.read_text()):
        obj = codec.from_dict(doc)
        defaults.apply_defaults(obj)
        if obj.kind == "Job":
            obj.metadata.uid = "u"
            workloads.generate_job_selector(obj)
        assert [str(e) for e in validation.validate(obj)] == []
