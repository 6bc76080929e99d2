"""`cordon`, `uncordon` and `drain`.

drain = cordon, then remove every pod bound to the node (field selector
spec.nodeName), the way kubectl drain decides: pods that already finished
go without question; DaemonSet-owned pods need --ignore-daemonsets (then
they are skipped, and said so); pods with no controller need --force; pods
with emptyDir volumes need --delete-emptydir-data. If any pod is refused
nothing is deleted and the refusals are listed, kubectl's wording, exit 1.
Evicting honours PodDisruptionBudgets: through the client's Eviction API
when it has one, else by the same decision the Eviction API makes
(machinery.disruption.admit_eviction, which spends the budget in the PDB's
status) followed by a Delete with --grace-period (or the pod's own). As in
kubectl, all pods are evicted concurrently and a refused eviction (429) is
retried every 5 s, saying so, until --timeout. Then drain waits until each
pod is gone (its node agent stopped it) or --timeout passes. No pod is
skipped silently: each one is either evicted, listed as ignored, or listed
as the reason the drain stopped.
"""
from __future__ import annotations

import asyncio
import time

import click

from kubectlish.common import Ctx, Failed, err, run
from kubectlish.edit import NOCHANGE, mutate_object
from machinery import disruption, errors, kinds

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
EVICTION_RETRY = 5.0          # kubectl drain retries a refused eviction every 5 s


async def set_unschedulable(client, name: str, value: bool) -> bool:
    """True if the node changed."""
    def mutate(node):
        if node.spec.unschedulable == value:
            return NOCHANGE
        node.spec.unschedulable = value
        return True
    _, changed = await mutate_object(client, kinds.resolve("nodes"), name, "", mutate)
    return changed is not NOCHANGE


async def _run_cordon(ctx: Ctx, names, value: bool):
    client = ctx.client()
    word = "cordoned" if value else "uncordoned"
    for name in names:
        name = name.split("/", 1)[1] if name.startswith(("node/", "nodes/", "no/")) else name
        changed = await set_unschedulable(client, name, value)
        click.echo(f"node/{name} {word}" if changed else f"node/{name} already {word}")


@click.command("cordon")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def cordon_cmd(ctx: Ctx, names):
    """Mark nodes as unschedulable."""
    run(ctx, _run_cordon, names, True)


@click.command("uncordon")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def uncordon_cmd(ctx: Ctx, names):
    """Mark nodes as schedulable."""
    run(ctx, _run_cordon, names, False)


def classify(pods, *, ignore_daemonsets: bool, delete_emptydir: bool, force: bool):
    """Split pods into (to delete, ignored daemonset pods, refusals by reason)."""
    delete, ignored = [], []
    refused: dict[str, list[str]] = {}
    for p in pods:
        key = f"{p.metadata.namespace}/{p.metadata.name}"
        if MIRROR_ANNOTATION in p.metadata.annotations:
            ignored.append(key)
            continue
        if p.status.phase in ("Succeeded", "Failed"):
            delete.append(p)
            continue
        controller = next((o for o in p.metadata.owner_references if o.controller), None)
        if controller is not None and controller.kind == "DaemonSet":
            if ignore_daemonsets:
                ignored.append(key)
            else:
                refused.setdefault("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)",
                                   []).append(key)
            continue
        problems = False
        if controller is None and not force:
            refused.setdefault("cannot delete Pods that declare no controller (use --force to override)",
                               []).append(key)
            problems = True
        if any(v.HasField("empty_dir") for v in p.spec.volumes) and not delete_emptydir:
            refused.setdefault("cannot delete Pods with local storage (use --delete-emptydir-data to "
                               "override)", []).append(key)
            problems = True
        if not problems:
            delete.append(p)
    return delete, ignored, refused


async def _run_drain(ctx: Ctx, name, ignore_daemonsets, delete_emptydir, force, grace_period, timeout,
                     selector):
    client = ctx.client()
    name = name.split("/", 1)[1] if "/" in name else name
    await client.get("nodes", name)
    changed = await set_unschedulable(client, name, True)
    click.echo(f"node/{name} cordoned" if changed else f"node/{name} already cordoned")
    pods, _ = await client.list("pods", "", field_selector=f"spec.nodeName={name}", label_selector=selector)
    pods = [p for p in pods if p.spec.node_name == name]
    delete, ignored, refused = classify(pods, ignore_daemonsets=ignore_daemonsets,
                                        delete_emptydir=delete_emptydir, force=force)
    if refused:
        reasons = "; ".join(f"{why}: {', '.join(keys)}" for why, keys in refused.items())
        err(f'error: unable to drain node "{name}" due to error: {reasons}, continuing command...')
        err(f"There are pending nodes to be drained:\n {name}")
        raise Failed(f"error: {reasons}")
    notes = []
    if ignored:
        notes.append(f"ignoring DaemonSet-managed Pods: {', '.join(ignored)}")
    uncontrolled = [f"{p.metadata.namespace}/{p.metadata.name}" for p in delete
                    if not any(o.controller for o in p.metadata.owner_references)]
    if uncontrolled:
        notes.append(f"deleting Pods that declare no controller: {', '.join(uncontrolled)}")
    if notes:
        err("Warning: " + "; ".join(notes))
    deadline = time.monotonic() + timeout if timeout > 0 else None
    grace = None if grace_period < 0 else grace_period
    results = await asyncio.gather(*(_evict_and_wait(client, p, grace, deadline) for p in delete))
    left = [k for k in results if k]
    if left:
        err(f'There are pending pods in node "{name}" when an error occurred: '
            f"drain did not complete within {timeout:g}s: {', '.join(left)}")
        raise Failed(f'error: unable to drain node "{name}"')
    click.echo(f"node/{name} drained")


async def evict(client, pod, grace: int | None) -> None:
    """One eviction: the apiserver's Eviction API when the client has it, else the
    same PodDisruptionBudget decision (machinery.disruption) followed by a Delete."""
    md = pod.metadata
    api = getattr(client, "evict", None)
    if api is not None:
        await api(md.name, md.namespace, grace_period=grace)
        return
    await disruption.admit_eviction(client, pod)
    await client.delete("pods", md.name, md.namespace, grace_period=grace, uid=md.uid)


async def _evict_and_wait(client, p, grace, deadline) -> str:
    """kubectl's evictPods for one pod: retry a 429 every EVICTION_RETRY s, then wait until
    the pod is gone. Returns "" when done, or the pod's key when the deadline passed."""
    key = f"{p.metadata.namespace}/{p.metadata.name}"
    click.echo(f"evicting pod {key}")
    while True:
        try:
            await evict(client, p, grace)
            break
        except (errors.NotFound, errors.Conflict):
            break
        except errors.TooManyRequests as exc:
            if deadline is not None and time.monotonic() > deadline:
                return key
            err(f'error when evicting pods/"{p.metadata.name}" -n "{p.metadata.namespace}" '
                f"(will retry after {EVICTION_RETRY:g}s): {exc}")
            await asyncio.sleep(EVICTION_RETRY)
            try:
                p = await client.get("pods", p.metadata.name, p.metadata.namespace)
            except errors.NotFound:
                break
    while True:
        try:
            cur = await client.get("pods", p.metadata.name, p.metadata.namespace)
            gone = cur.metadata.uid != p.metadata.uid
        except errors.NotFound:
            gone = True
        if gone:
            click.echo(f"pod/{p.metadata.name} evicted")
            return ""
        if deadline is not None and time.monotonic() > deadline:
            return key
        await asyncio.sleep(0.2)


@click.command("drain")
@click.argument("name")
@click.option("--ignore-daemonsets", is_flag=True, help="Ignore DaemonSet-managed pods.")
@click.option("--delete-emptydir-data", is_flag=True, help="Delete pods with emptyDir volumes too.")
@click.option("--force", is_flag=True, help="Delete pods that no controller manages too.")
@click.option("--grace-period", type=int, default=-1, help="Seconds each pod gets (-1: its own).")
@click.option("--timeout", type=float, default=0, help="Seconds to wait before giving up (0: forever).")
@click.option("-l", "--pod-selector", "selector", default="", help="Only pods matching this label selector.")
@click.pass_obj
def drain_cmd(ctx: Ctx, name, ignore_daemonsets, delete_emptydir_data, force, grace_period, timeout, selector):
    """Drain a node in preparation for maintenance (cordon, then evict its pods)."""
    run(ctx, _run_drain, name, ignore_daemonsets, delete_emptydir_data, force, grace_period, timeout, selector)
