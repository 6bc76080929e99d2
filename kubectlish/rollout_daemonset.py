"""`kctl rollout status|history|undo daemonset/NAME` (kubectl's
DaemonSetStatusViewer, DaemonSetHistoryViewer and DaemonSetRollbacker).

A DaemonSet's history is its ControllerRevisions (controller owner
reference to it): `revision` numbers them, their data holds the pod
template (machinery.workloads.template_from_revision), their annotations
the DaemonSet's at the time (kubernetes.io/change-cause). Undo writes the
chosen revision's template back into the DaemonSet; the controller then
gives that revision the next number, as Kubernetes does. StatefulSets keep
their history the same way, so their history and undo come through here too.
"""
from __future__ import annotations

import click

from kubectlish.common import Failed
from kubectlish.edit import mutate_object
from machinery import workloads

CHANGE_CAUSE = "kubernetes.io/change-cause"


def daemonset_status(ds) -> tuple[str, bool]:
    """(message, done), DaemonSetStatusViewer.Status."""
    name, st = ds.metadata.name, ds.status
    if ds.spec.update_strategy.type != "RollingUpdate":
        raise Failed("error: rollout status is only available for RollingUpdate strategy type")
    if ds.metadata.generation <= st.observed_generation:
        if st.updated_number_scheduled < st.desired_number_scheduled:
            return (f'Waiting for daemon set "{name}" rollout to finish: {st.updated_number_scheduled} out of '
                    f"{st.desired_number_scheduled} new pods have been updated..."), False
        if st.number_available < st.desired_number_scheduled:
            return (f'Waiting for daemon set "{name}" rollout to finish: {st.number_available} of '
                    f"{st.desired_number_scheduled} updated pods are available..."), False
        return f'daemon set "{name}" successfully rolled out', True
    return "Waiting for daemon set spec update to be observed...", False


async def revisions(client, ds) -> dict[int, object]:
    crs, _ = await client.list("controllerrevisions", ds.metadata.namespace)
    return {c.revision: c for c in crs
            if any(o.uid == ds.metadata.uid and o.controller for o in c.metadata.owner_references)}


async def history(client, info, ds, revision: int) -> None:
    from kubectlish import describe_blocks as describe
    from kubectlish.printers import tabwrite
    revs = await revisions(client, ds)
    name = ds.metadata.name
    if revision:
        cr = revs.get(revision)
        if cr is None:
            raise Failed(f"error: unable to find the specified revision")
        click.echo(f"{info.qualified_singular}/{name} with revision #{revision}")
        click.echo(describe.render(describe.pod_template_lines(workloads.template_from_revision(cr), 0)), nl=False)
        return
    click.echo(f"{info.qualified_singular}/{name}")
    lines = ["REVISION\tCHANGE-CAUSE"]
    lines += [f"{n}\t{revs[n].metadata.annotations.get(CHANGE_CAUSE) or '<none>'}" for n in sorted(revs)]
    click.echo(tabwrite(lines, minwidth=0, padding=2), nl=False)


async def undo(client, info, ds, to_revision: int) -> None:
    name = ds.metadata.name
    revs = await revisions(client, ds)
    if to_revision:
        if to_revision not in revs:
            raise Failed("error: unable to find the specified revision")
    elif len(revs) < 2:
        raise Failed(f'error: no rollout history found for {info.singular} "{name}"')
    else:
        to_revision = sorted(revs)[-2]
    template = workloads.template_from_revision(revs[to_revision])
    if template == ds.spec.template:
        click.echo(f"{info.qualified_singular}/{name} skipped rollback (current template already "
                   f"matches revision {to_revision})")
        return

    def mutate(obj):
        obj.spec.template.CopyFrom(template)
    await mutate_object(client, info, name, ds.metadata.namespace, mutate)
    click.echo(f"{info.qualified_singular}/{name} rolled back")
