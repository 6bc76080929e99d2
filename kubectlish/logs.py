"""`kctl logs`: a container's log, through the apiserver's node proxy.

    kctl logs POD [CONTAINER] [-c C] [-f] [-p] [--tail N] [--timestamps]
    kctl logs deploy/web          (also rs/, svc/: the first pod, as kubectl)

The apiserver finds the pod's node and forwards to its agent
(apiserver/nodeproxy.py); kctl only talks to the apiserver
(machinery/nodeclient.py). Chunks are whole lines, written to stdout as they
arrive. `-f` streams until the container exits or Ctrl-C (exit 130).

Choices (kubectl ≥ 1.24 behaviour): a multi-container pod without -c uses
the `kubectl.kubernetes.io/default-container` annotation, else the first
container, and says so on stderr (`Defaulted container "a" out of: a, b`);
older kubectl refused instead. For deploy/rs/svc the pod is picked the way
kubectl's ByLogging does (bound, running, ready, then oldest) and, when
there are several, named on stderr (`Found 3 pods, using pod/web-x`).

pod_and_container() is shared with `kctl exec`.
"""
from __future__ import annotations

import sys

import click

from kubectlish.common import Ctx, Failed, err, run
from machinery import selectors

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
_POD_WORDS = ("pod", "pods", "po")


def _by_logging(pod) -> tuple:
    """Sort key: the pod kubectl would pick first sorts first."""
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    phase = {"Running": 0, "Pending": 1}.get(pod.status.phase, 2)
    created = pod.metadata.creation_timestamp.seconds + pod.metadata.creation_timestamp.nanos / 1e9
    return (not pod.spec.node_name, phase, not ready, created, pod.metadata.name)


async def _pod_of(ctx: Ctx, kind: str, name: str):
    """The pod a `deploy/x`, `rs/x` or `svc/x` argument stands for."""
    from kubectlish.common import resolve_kind
    info = resolve_kind(kind)
    client = ctx.client()
    owner = await client.get(info.kind, name, ctx.namespace)
    if info.kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"):
        sel = selectors.from_field(owner.spec, "selector")
    elif info.kind == "Service":
        if not owner.spec.selector:
            raise Failed(f"error: cannot attach to {info.singular}/{name}: the service has no selector")
        sel = selectors.from_map(owner.spec.selector)
    else:
        raise Failed(f"error: cannot get the logs of a {info.kind}; use a pod, deployment, replicaset or service")
    if sel.nothing or sel.empty:
        pods = []   # a nil or empty selector: kubectl picks no pod either
    else:
        pods, _ = await client.list("pods", ctx.namespace, label_selector=str(sel))
    pods = [p for p in pods if not p.metadata.HasField("deletion_timestamp")] or pods
    if not pods:
        raise Failed(f"error: timed out waiting for the condition: no pods found for {info.singular}/{name}")
    pods.sort(key=_by_logging)
    if len(pods) > 1:
        err(f"Found {len(pods)} pods, using pod/{pods[0].metadata.name}")
    return pods[0]


async def pod_and_container(ctx: Ctx, arg: str, container: str | None):
    """Resolve POD / pod/POD / deploy/NAME and the container (defaulting it,
    with kubectl's note, for multi-container pods). Returns (pod, container)."""
    kind, slash, name = arg.partition("/")
    if slash and not name:
        raise Failed("error: arguments in resource/name form must have a single resource and name")
    if not slash or kind in _POD_WORDS:
        pod = await ctx.client().get("pods", name if slash else arg, ctx.namespace)
    else:
        pod = await _pod_of(ctx, kind, name)
    if container:
        return pod, container
    names = [c.name for c in pod.spec.containers]
    if len(names) <= 1:
        return pod, names[0] if names else ""
    chosen = pod.metadata.annotations.get(DEFAULT_CONTAINER_ANNOTATION, "")
    if chosen not in names:
        chosen = names[0]
    err(f'Defaulted container "{chosen}" out of: {", ".join(names)}')
    return pod, chosen


async def _logs(ctx: Ctx, arg, container, follow, previous, tail, timestamps) -> int:
    from machinery import nodeclient
    pod, container = await pod_and_container(ctx, arg, container)
    out = sys.stdout.buffer
    stream = nodeclient.logs(ctx.server, pod.metadata.namespace or ctx.namespace, pod.metadata.name,
                             container, follow=follow, previous=previous, tail=tail, timestamps=timestamps,
                             credentials=ctx.credentials, metadata=ctx.impersonate)
    try:
        async for chunk in stream:
            out.write(chunk.data)
            out.flush()
    finally:
        await stream.aclose()
    return 0


@click.command("logs")
@click.argument("pod")
@click.argument("container_arg", metavar="[CONTAINER]", required=False)
@click.option("-c", "--container", default=None, help="The container (default: the pod's default or first one).")
@click.option("-f", "--follow", is_flag=True, help="Stream new lines until the container exits.")
@click.option("-p", "--previous", is_flag=True, help="The previous, terminated instance of the container.")
@click.option("--tail", type=int, default=-1, show_default=True,
              help="Lines of recent log to show; -1 shows all.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its RFC3339Nano time.")
@click.pass_obj
def logs_cmd(ctx: Ctx, pod, container_arg, container, follow, previous, tail, timestamps):
    """Print the logs of a container in a pod (or of the first pod of deploy/NAME)."""
    if container_arg and container and container_arg != container:
        raise click.UsageError("only one of -c or an inline [CONTAINER] arg is allowed")
    run(ctx, _logs, pod, container or container_arg, follow, previous,
        None if tail is None or tail < 0 else tail, timestamps)
