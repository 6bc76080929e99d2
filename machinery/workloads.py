"""Names the workload kinds share between the apiserver, the controllers
and kctl (Kubernetes' batch/v1 and apps/v1 well-known labels), and the one
server-side step of Jobs that needs the object's UID: the generated selector.

Why here: the apiserver's Job strategy generates the selector, the Job
controller and `kctl create job --from` put the same labels on pods and
jobs, and the DaemonSet controller and `kctl rollout` agree on the revision
label, and a DaemonSet's ControllerRevision data is written by the
controller and read back by `kctl rollout history|undo`. One module keeps
the spellings and the format in one place.
"""
from __future__ import annotations

from google.protobuf import json_format, struct_pb2

from machinery import codec

# batch/v1 (pkg/apis/batch/types.go)
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
CRONJOB_SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"

# apps/v1
CONTROLLER_REVISION_HASH = "controller-revision-hash"


def generate_job_selector(job) -> None:
    """generateSelector (pkg/registry/batch/job/strategy.go): unless
    spec.manualSelector is true, label the template with the job's name and
    UID (new and legacy keys, keeping any the user set; a conflict is left
    for validation) and select on batch.kubernetes.io/controller-uid. A Job
    without labels of its own takes the template's (what SetDefaults_Job
    does; here after the generation, so they include the generated ones)."""
    if job.spec.HasField("manual_selector") and job.spec.manual_selector:
        return
    labels = job.spec.template.metadata.labels
    for key in (LEGACY_JOB_NAME, JOB_NAME):
        labels.setdefault(key, job.metadata.name)
    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
        labels.setdefault(key, job.metadata.uid)
    job.spec.selector.match_labels.setdefault(CONTROLLER_UID, job.metadata.uid)
    if not job.metadata.labels:      # SetDefaults_Job's copy, now with the generated labels (as a
        job.metadata.labels.update(labels)   # Job created by Kubernetes shows them)


def daemonset_patch(ds) -> struct_pb2.Struct:
    """A DaemonSet's ControllerRevision data (getPatch): `{"spec": {"template": ...,
    "$patch": "replace"}}`, the strategic-merge patch that restores the template."""
    template = codec.to_dict(ds.spec.template)
    template["$patch"] = "replace"
    data = struct_pb2.Struct()
    data.update({"spec": {"template": template}})
    return data


def template_from_revision(cr):
    """The pod template a DaemonSet's ControllerRevision restores."""
    t = dict(json_format.MessageToDict(cr.data).get("spec", {}).get("template", {}))
    t.pop("$patch", None)
    holder = codec.from_dict({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {},
                              "spec": {"template": t}})
    return holder.spec.template
