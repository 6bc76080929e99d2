"""`kctl autoscale deployment X --cpu-percent=50 --min=1 --max=10`: create an
autoscaling/v2 HorizontalPodAutoscaler for a Deployment, ReplicaSet or
StatefulSet, as `kubectl autoscale` does (its flag checks and messages; the
HPA is named after the target unless --name is given; without
--cpu-percent the server's default metric, 80 % CPU, applies; newer
kubectl's --cpu/--memory take `70%` for Utilization or a quantity such as
`500m`/`256Mi` for AverageValue). The target must exist. Prints `horizontalpodautoscaler.autoscaling/X autoscaled`."""
from __future__ import annotations

import click

from kubectlish.common import Ctx, Failed, run, typed_name
from kubectlish.generators import _common, _create_or_print
from machinery import quantity

SCALABLE = ("Deployment", "ReplicaSet", "StatefulSet")


def metric(resource: str, target: str) -> dict:
    """One Resource metric from `70%` (Utilization) or a quantity (AverageValue)."""
    if target.endswith("%"):
        try:
            t = {"type": "Utilization", "averageUtilization": int(target[:-1])}
        except ValueError:
            raise Failed(f"error: invalid --{resource} value {target!r}: expected a percentage or a quantity") from None
    elif quantity.is_valid(target):
        t = {"type": "AverageValue", "averageValue": target}
    else:
        raise Failed(f"error: invalid --{resource} value {target!r}: expected a percentage or a quantity")
    return {"type": "Resource", "resource": {"name": resource, "target": t}}


def manifest(kind: str, api_version: str, target: str, name: str, lo: int, hi: int, cpu_percent: int,
             cpu: str = "", memory: str = "") -> dict:
    spec: dict = {"scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target},
                  "maxReplicas": hi}
    if lo >= 0:
        spec["minReplicas"] = lo
    metrics = [metric(r, v) for r, v in (("cpu", cpu), ("memory", memory)) if v]
    if cpu_percent >= 0 and not cpu:
        metrics.insert(0, metric("cpu", f"{cpu_percent}%"))
    if metrics:
        spec["metrics"] = metrics
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": spec}


def check(lo: int, hi: int) -> None:
    if hi < 1:
        raise Failed(f"error: --max=MAXPODS is required and must be at least 1, max: {hi}")
    if hi < lo:
        raise Failed(f"error: --max=MAXPODS must be larger or equal to --min=MINPODS, max: {hi}, min: {lo}")


async def _autoscale(ctx: Ctx, words, name, lo, hi, cpu_percent, cpu, memory, dry_run, output):
    check(lo, hi)
    info, target = typed_name(words[0], words[1] if len(words) > 1 else None)
    if info.kind not in SCALABLE:
        raise Failed(f"error: cannot autoscale a {info.kind}: {info.resource} cannot be scaled")
    body = manifest(info.kind, info.api_version, target, name or target, lo, hi, cpu_percent, cpu, memory)
    await ctx.client().get(info.kind, target, ctx.namespace)           # NotFound as kubectl reports it
    return await _create_or_print(ctx, body, dry_run, output, verb="autoscaled")


@click.command("autoscale")
@click.argument("words", nargs=-1, required=True)
@click.option("--min", "lo", type=int, default=-1, help="The lower limit for the number of pods.")
@click.option("--max", "hi", type=int, default=-1, help="The upper limit for the number of pods (required).")
@click.option("--cpu-percent", type=int, default=-1, help="The target average CPU utilization (percent).")
@click.option("--cpu", default="", help="CPU target: '70%' (utilization) or a quantity such as '500m'.")
@click.option("--memory", default="", help="Memory target: '80%' (utilization) or a quantity such as '256Mi'.")
@click.option("--name", default="", help="The name of the autoscaler (default: the target's).")
@_common
@click.pass_obj
def autoscale_cmd(ctx: Ctx, words, lo, hi, cpu_percent, cpu, memory, name, dry_run, output):
    """Auto-scale a deployment, replica set or stateful set."""
    if len(words) > 2:
        raise click.UsageError("expected TYPE NAME or TYPE/NAME")
    run(ctx, _autoscale, words, name, lo, hi, cpu_percent, cpu, memory, dry_run, output)
