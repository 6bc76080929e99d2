"""`kctl create job NAME --image=IMAGE [-- COMMAND...]` and
`kctl create job NAME --from=cronjob/CJ` (kubectl's CreateJobOptions).

--from copies the CronJob's jobTemplate into a Job named NAME: the
template's labels, its annotations plus `cronjob.kubernetes.io/instantiate:
manual`, and an ownerReference to the CronJob with controller=true but
without blockOwnerDeletion (kubectl's choice), so the CronJob's history and
garbage collection see it while its concurrency policy does not count it.
"""
from __future__ import annotations

import click

from kubectlish.common import Ctx, Failed, run, typed_name
from kubectlish.generators import _common, _create_or_print
from machinery import codec

INSTANTIATE = "cronjob.kubernetes.io/instantiate"


def job_from_cronjob(name: str, cj) -> dict:
    t = cj.spec.job_template
    annotations = {INSTANTIATE: "manual", **dict(t.metadata.annotations)}
    spec = codec.to_dict(cj)["spec"].get("jobTemplate", {}).get("spec", {})
    meta = {"name": name, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cj.metadata.name,
                                 "uid": cj.metadata.uid, "controller": True}]}
    if t.metadata.labels:
        meta["labels"] = dict(t.metadata.labels)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def job_from_image(name: str, image: str, command: tuple[str, ...]) -> dict:
    container = {"name": name, "image": image}
    if command:
        container["command"] = list(command)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"metadata": {}, "spec": {"containers": [container], "restartPolicy": "Never"}}}}


async def _run(ctx: Ctx, name, image, source, command, dry_run, output):
    if bool(image) == bool(source):
        raise Failed("error: either --image or --from must be specified")
    if source:
        if command:
            raise Failed("error: cannot specify --from and command")
        info, cj_name = typed_name(source, None)
        if info.kind != "CronJob":
            raise Failed(f"error: unknown object type {info.singular}")
        cj = await ctx.client().get(info, cj_name, ctx.namespace)
        manifest = job_from_cronjob(name, cj)
    else:
        manifest = job_from_image(name, image, command)
    return await _create_or_print(ctx, manifest, dry_run, output)


@click.command("job")
@click.argument("name")
@click.argument("command", nargs=-1)
@click.option("--image", default="", help="Image name to run.")
@click.option("--from", "source", default="", help="The resource to create the Job from (only cronjob/NAME).")
@_common
@click.pass_obj
def create_job_cmd(ctx: Ctx, name, command, image, source, dry_run, output):
    """Create a job with the specified name (from an image, or from a CronJob's template)."""
    run(ctx, _run, name, image, source, command, dry_run, output)
