"""`kctl rollout status|history|undo|pause|resume|restart` for deployments
(status, history, undo and restart for daemonsets and statefulsets too:
rollout_daemonset.py, rollout_statefulset.py).

status ports kubectl's DeploymentStatusViewer: it reads the deployment,
prints the progress line, and waits on a watch of that one object until the
rollout is complete (exit 0) or its Progressing condition says
ProgressDeadlineExceeded (exit 1). Consecutive identical lines are printed
once. history and undo read the deployment's ReplicaSets (controller owner
reference, else selector match) and their `deployment.kubernetes.io/revision`
annotations; undo copies a revision's pod template back into the deployment
without its pod-template-hash label, as kubectl's rollback does.
"""
from __future__ import annotations

import asyncio
import datetime as dt

import click

from kubectlish import rollout_daemonset, rollout_statefulset
from kubectlish.common import Ctx, Failed, run, typed_name
from kubectlish.edit import NOCHANGE, mutate_object
from machinery import codec, errors

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Annotations that belong to the deployment, not to a revision (kubectl's annotationsToSkip).
SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration", REVISION,
                    "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
                    "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"}


def _deployment_arg(resource, name, kinds=("Deployment",)):
    info, n = typed_name(resource, name)
    if info.kind not in kinds:
        raise Failed(f'error: no rollout support has been implemented for "{info.kind}"')
    return info, n


WITH_DAEMONSETS = ("Deployment", "DaemonSet", "StatefulSet")
WITH_REVISIONS = ("DaemonSet", "StatefulSet")    # history in ControllerRevisions
VIEWERS = {"DaemonSet": rollout_daemonset.daemonset_status, "StatefulSet": rollout_statefulset.statefulset_status}


def deployment_status(d) -> tuple[str, bool]:
    """(message, done); raises Failed on ProgressDeadlineExceeded."""
    name = d.metadata.name
    st = d.status
    if d.metadata.generation <= st.observed_generation:
        for c in st.conditions:
            if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
                raise Failed(f'error: deployment "{name}" exceeded its progress deadline')
        want = d.spec.replicas if d.spec.HasField("replicas") else 1
        if st.updated_replicas < want:
            return (f'Waiting for deployment "{name}" rollout to finish: {st.updated_replicas} out of '
                    f"{want} new replicas have been updated..."), False
        if st.replicas > st.updated_replicas:
            return (f'Waiting for deployment "{name}" rollout to finish: '
                    f"{st.replicas - st.updated_replicas} old replicas are pending termination..."), False
        if st.available_replicas < st.updated_replicas:
            return (f'Waiting for deployment "{name}" rollout to finish: {st.available_replicas} of '
                    f"{st.updated_replicas} updated replicas are available..."), False
        return f'deployment "{name}" successfully rolled out', True
    return "Waiting for deployment spec update to be observed...", False


async def watch_status(ctx: Ctx, resource, name, watch, timeout):
    """`rollout status`: print each new progress message until the rollout is
    done (or once, without watch); Failed on a deadline or a deletion."""
    info, name = _deployment_arg(resource, name, WITH_DAEMONSETS)
    client = ctx.client()
    last = None
    viewer = VIEWERS.get(info.kind, deployment_status)

    def show(d) -> bool:
        nonlocal last
        msg, done = viewer(d)
        if msg != last:
            click.echo(msg)
            last = msg
        return done

    async def loop():
        while True:
            d = await client.get(info, name, ctx.namespace)
            if show(d) or not watch:
                return
            try:
                async for ev in client.watch(info, ctx.namespace, resource_version=d.metadata.resource_version,
                                             field_selector=f"metadata.name={name}"):
                    if ev.type == "DELETED":
                        raise Failed(f'error: {info.singular} "{name}" was deleted')
                    if ev.object is not None and ev.type in ("ADDED", "MODIFIED") and show(ev.object):
                        return
            except errors.Expired:
                pass  # relist
            await asyncio.sleep(0.1)

    if timeout:
        try:
            await asyncio.wait_for(loop(), timeout)
        except asyncio.TimeoutError as exc:
            raise Failed("error: timed out waiting for the condition") from exc
    else:
        await loop()


async def owned_replicasets(client, d):
    rss, _ = await client.list("replicasets", d.metadata.namespace)
    owned = [r for r in rss if any(o.uid == d.metadata.uid and o.controller for o in r.metadata.owner_references)]
    if not owned:
        sel = d.spec.selector.match_labels
        owned = [r for r in rss if not r.metadata.owner_references and sel
                 and all(r.spec.template.metadata.labels.get(k) == v for k, v in sel.items())]
    return owned


def revisions(rss) -> dict[int, object]:
    out = {}
    for r in rss:
        try:
            out[int(r.metadata.annotations.get(REVISION, ""))] = r
        except ValueError:
            continue
    return out


async def _run_history(ctx: Ctx, resource, name, revision):
    from kubectlish import describe_blocks as describe
    from kubectlish.printers import tabwrite
    info, name = _deployment_arg(resource, name, WITH_DAEMONSETS)
    client = ctx.client()
    d = await client.get(info, name, ctx.namespace)
    if info.kind in WITH_REVISIONS:
        await rollout_daemonset.history(client, info, d, revision)
        return
    revs = revisions(await owned_replicasets(client, d))
    if revision:
        rs = revs.get(revision)
        if rs is None:
            raise Failed(f"error: unable to find the specified revision")
        click.echo(f"{info.qualified_singular}/{name} with revision #{revision}")
        click.echo(describe.render(describe.pod_template_lines(rs.spec.template, 0)), nl=False)
        return
    click.echo(f"{info.qualified_singular}/{name}")
    lines = ["REVISION\tCHANGE-CAUSE"]
    for n in sorted(revs):
        lines.append(f"{n}\t{revs[n].metadata.annotations.get(CHANGE_CAUSE) or '<none>'}")
    click.echo(tabwrite(lines, minwidth=0, padding=2), nl=False)


def _equal_ignore_hash(a, b) -> bool:
    a, b = codec.copy(a), codec.copy(b)
    a.metadata.labels.pop(HASH_LABEL, None)
    b.metadata.labels.pop(HASH_LABEL, None)
    return a == b


async def _run_undo(ctx: Ctx, resource, name, to_revision):
    info, name = _deployment_arg(resource, name, WITH_DAEMONSETS)
    client = ctx.client()
    d = await client.get(info, name, ctx.namespace)
    if info.kind in WITH_REVISIONS:
        await rollout_daemonset.undo(client, info, d, to_revision)
        return
    if d.spec.paused:
        raise Failed(f"error: you cannot rollback a paused deployment; resume it first with "
                     f"'kctl rollout resume deployment/{name}' and try again")
    revs = revisions(await owned_replicasets(client, d))
    if to_revision:
        rs = revs.get(to_revision)
        if rs is None:
            raise Failed("error: unable to find the specified revision")
    else:
        if len(revs) < 2:
            raise Failed(f'error: no rollout history found for deployment "{name}"')
        to_revision = sorted(revs)[-2]
        rs = revs[to_revision]
    if _equal_ignore_hash(rs.spec.template, d.spec.template):
        click.echo(f"{info.qualified_singular}/{name} skipped rollback (current template already "
                   f"matches revision {to_revision})")
        return

    def mutate(obj):
        tmpl = codec.copy(rs.spec.template)
        tmpl.metadata.labels.pop(HASH_LABEL, None)
        obj.spec.template.CopyFrom(tmpl)
        keep = {k: v for k, v in obj.metadata.annotations.items() if k in SKIP_ANNOTATIONS}
        for k, v in rs.metadata.annotations.items():
            if k not in SKIP_ANNOTATIONS:
                keep[k] = v
        obj.metadata.annotations.clear()
        obj.metadata.annotations.update(keep)
    await mutate_object(client, info, name, ctx.namespace, mutate)
    click.echo(f"{info.qualified_singular}/{name} rolled back")


async def _run_set_paused(ctx: Ctx, resource, name, paused: bool):
    info, name = _deployment_arg(resource, name)

    def mutate(obj):
        if obj.spec.paused == paused:
            return NOCHANGE
        obj.spec.paused = paused
    _, r = await mutate_object(ctx.client(), info, name, ctx.namespace, mutate)
    if r is NOCHANGE:
        raise Failed(f'error: {info.resource} "{name}" is {"already" if paused else "not"} paused')
    click.echo(f"{info.qualified_singular}/{name} {'paused' if paused else 'resumed'}")


async def _run_restart(ctx: Ctx, resource, name):
    info, name = _deployment_arg(resource, name, WITH_DAEMONSETS)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    def mutate(obj):
        if info.kind == "Deployment" and obj.spec.paused:
            raise Failed(f'error: {info.resource} "{name}" can\'t restart paused deployment '
                         f"(run rollout resume first)")
        obj.spec.template.metadata.annotations[RESTARTED_AT] = now
    await mutate_object(ctx.client(), info, name, ctx.namespace, mutate)
    click.echo(f"{info.qualified_singular}/{name} restarted")


def _duration(value) -> float:
    from kubectlish.main import parse_duration   # main imports this module
    try:
        return parse_duration(value) or 0
    except (ValueError, click.BadParameter):
        raise click.BadParameter(f"invalid duration {value!r}", param_hint="--timeout") from None


@click.group("rollout")
def rollout_group():
    """Manage the rollout of a deployment."""


def _target(f):
    f = click.argument("name", required=False)(f)
    return click.argument("resource")(f)


@rollout_group.command("status")
@_target
@click.option("-w", "--watch/--no-watch", default=True, help="Wait until the rollout finishes.")
@click.option("--timeout", default="0", callback=lambda ctx, param, v: _duration(v),
              help="How long to wait: 30s, 2m, or seconds (0: forever).")
@click.pass_obj
def status_cmd(ctx, resource, name, watch, timeout):
    """Show the status of the rollout (waits for it to finish)."""
    run(ctx, watch_status, resource, name, watch, timeout)


@rollout_group.command("history")
@_target
@click.option("--revision", type=int, default=0, help="Show the pod template of this revision.")
@click.pass_obj
def history_cmd(ctx, resource, name, revision):
    """View rollout history."""
    run(ctx, _run_history, resource, name, revision)


@rollout_group.command("undo")
@_target
@click.option("--to-revision", type=int, default=0, help="The revision to roll back to (0: the previous).")
@click.pass_obj
def undo_cmd(ctx, resource, name, to_revision):
    """Roll back to a previous rollout."""
    run(ctx, _run_undo, resource, name, to_revision)


@rollout_group.command("pause")
@_target
@click.pass_obj
def pause_cmd(ctx, resource, name):
    """Mark the deployment as paused."""
    run(ctx, _run_set_paused, resource, name, True)


@rollout_group.command("resume")
@_target
@click.pass_obj
def resume_cmd(ctx, resource, name):
    """Resume a paused deployment."""
    run(ctx, _run_set_paused, resource, name, False)


@rollout_group.command("restart")
@_target
@click.pass_obj
def restart_cmd(ctx, resource, name):
    """Restart the deployment's pods (a new rollout)."""
    run(ctx, _run_restart, resource, name)
