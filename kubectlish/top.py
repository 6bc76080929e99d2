"""`kctl top nodes|pods`: resource usage from the metrics API, printed as
`kubectl top` prints it (k8s.io/kubectl/pkg/cmd/top and metricsutil).

* nodes: NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%); CPU in millicores,
  memory in Mi, percentages of the Node's allocatable; nodes without
  metrics yet are listed with `<unknown>` cells, after the others;
* pods: [NAMESPACE] NAME CPU(cores) MEMORY(bytes), a pod's usage being the
  sum of its containers'; --containers prints one row per container
  (POD NAME ...);
* -l/--selector filters by labels, -A lists every namespace, --sort-by
  cpu|memory sorts descending, --no-headers drops the header line.

With the API answering but no metrics yet: "error: metrics not available
yet" when there are pods (nodes) to measure, else kubectl's "No resources
found" line. Metrics come over gRPC (machinery/metricsclient.py).
"""
from __future__ import annotations

import click

from kubectlish.common import Ctx, Failed, err, run
from kubectlish.printers import tabwrite
from machinery import metricsclient, quantity

UNKNOWN = "<unknown>"


def cpu_cell(nanocores: int) -> str:
    return f"{nanocores // 1_000_000}m"


def memory_cell(n: int) -> str:
    return f"{n // (1024 * 1024)}Mi"


def _sort(items, sort_by: str, usage):
    if sort_by == "cpu":
        return sorted(items, key=lambda i: usage(i).cpu_nano_cores, reverse=True)
    if sort_by == "memory":
        return sorted(items, key=lambda i: usage(i).memory_bytes, reverse=True)
    return items


def _pct(used_milli: int, allocatable: str) -> str:
    total = quantity.milli_value(allocatable) if allocatable and quantity.is_valid(allocatable) else 0
    return f"{used_milli * 100 // total}%" if total else UNKNOWN


def node_rows(metrics, nodes, sort_by: str = "") -> list[list[str]]:
    by_name = {n.metadata.name: n for n in nodes}
    rows = []
    for m in _sort(metrics, sort_by, lambda m: m.usage):
        alloc = by_name[m.name].status.allocatable if m.name in by_name else {}
        rows.append([m.name, cpu_cell(m.usage.cpu_nano_cores),
                     _pct(m.usage.cpu_nano_cores // 1_000_000, alloc.get("cpu", "")),
                     memory_cell(m.usage.memory_bytes), _pct(m.usage.memory_bytes * 1000, alloc.get("memory", ""))])
    have = {m.name for m in metrics}
    rows += [[n, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN] for n in sorted(by_name) if n not in have]
    return rows


class _Sum:
    def __init__(self, pm) -> None:
        self.cpu_nano_cores = sum(c.usage.cpu_nano_cores for c in pm.containers)
        self.memory_bytes = sum(c.usage.memory_bytes for c in pm.containers)


def pod_rows(metrics, *, containers: bool = False, all_namespaces: bool = False,
             sort_by: str = "") -> list[list[str]]:
    rows = []
    for pm in _sort(metrics, sort_by, _Sum):
        prefix = [pm.namespace] if all_namespaces else []
        if containers:
            for c in pm.containers:
                rows.append(prefix + [pm.name, c.name, cpu_cell(c.usage.cpu_nano_cores),
                                      memory_cell(c.usage.memory_bytes)])
        else:
            s = _Sum(pm)
            rows.append(prefix + [pm.name, cpu_cell(s.cpu_nano_cores), memory_cell(s.memory_bytes)])
    return rows


def _print(headers: list[str], rows: list[list[str]], no_headers: bool) -> None:
    lines = ([] if no_headers else ["\t".join(headers)]) + ["\t".join(r) for r in rows]
    click.echo(tabwrite(lines).rstrip("\n"))


async def _top_nodes(ctx: Ctx, name: str, selector: str, sort_by: str, no_headers: bool) -> None:
    client = ctx.client()
    metrics = await metricsclient.node_metrics(client, name, selector)
    if name:
        nodes = [await client.get("Node", name)]
    else:
        nodes, _ = await client.list("Node", label_selector=selector)
    if not metrics:
        raise Failed("error: metrics not available yet")
    _print(["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"], node_rows(metrics, nodes, sort_by),
           no_headers)


async def _top_pods(ctx: Ctx, name: str, selector: str, containers: bool, all_ns: bool, sort_by: str,
                    no_headers: bool) -> None:
    client = ctx.client()
    ns = "" if all_ns else ctx.namespace
    metrics = await metricsclient.pod_metrics(client, ns, name, selector)
    if not metrics:
        pods, _ = await client.list("Pod", ns, label_selector=selector)
        if pods:
            raise Failed("error: metrics not available yet")
        err("No resources found" if all_ns else f"No resources found in {ctx.namespace} namespace.")
        return
    headers = (["NAMESPACE"] if all_ns else []) + (["POD", "NAME"] if containers else ["NAME"])
    _print(headers + ["CPU(cores)", "MEMORY(bytes)"],
           pod_rows(metrics, containers=containers, all_namespaces=all_ns, sort_by=sort_by), no_headers)


_SORT = click.Choice(["cpu", "memory"])


@click.group("top")
def top_group():
    """Display resource (CPU/memory) usage of nodes or pods."""


@top_group.command("node")
@click.argument("name", required=False, default="")
@click.option("-l", "--selector", default="", help="Label selector to filter on.")
@click.option("--sort-by", type=_SORT, default=None, help="Sort by cpu or memory (descending).")
@click.option("--no-headers", is_flag=True)
@click.pass_obj
def top_node(ctx: Ctx, name, selector, sort_by, no_headers):
    """Display resource (CPU/memory) usage of nodes."""
    run(ctx, _top_nodes, name, selector, sort_by or "", no_headers)


@top_group.command("pod")
@click.argument("name", required=False, default="")
@click.option("-l", "--selector", default="", help="Label selector to filter on.")
@click.option("--containers", is_flag=True, help="Print usage of each container of the pods.")
@click.option("-A", "--all-namespaces", "all_ns", is_flag=True, help="List pods of every namespace.")
@click.option("--sort-by", type=_SORT, default=None, help="Sort by cpu or memory (descending).")
@click.option("--no-headers", is_flag=True)
@click.pass_obj
def top_pod(ctx: Ctx, name, selector, containers, all_ns, sort_by, no_headers):
    """Display resource (CPU/memory) usage of pods."""
    run(ctx, _top_pods, name, selector, containers, all_ns, sort_by or "", no_headers)


top_group.add_command(top_node, "nodes")
top_group.add_command(top_node, "no")
top_group.add_command(top_pod, "pods")
top_group.add_command(top_pod, "po")
