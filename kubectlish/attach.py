"""`kctl attach` and `kctl run -i/-t [--rm]`: the container's own process, interactively.

    kctl attach POD [-c C] [-i] [-t]
    kctl run NAME -it --rm --image=busybox -- sh

attach streams the main process' output from now on (what it printed
before is in `kctl logs`) and, with -i, sends stdin to it — which only
reaches a container created with `stdin: true` (the node agent's conmon
keeps its stdin open for attach clients, and closes it when the first
attached client leaves, i.e. Kubernetes' stdinOnce). With -t the remote
terminal (`tty: true` containers) follows kctl's window size.

run -i/-t creates the pod with `stdin: true` (and `tty: true` with -t),
waits until it runs, attaches like kubectl (saying `If you don't see a
command prompt, try pressing enter.`, as the prompt may have been printed
before the attach), and with --rm deletes the pod afterwards. A pod that
has already finished when kctl looks shows its log instead. For
restartPolicy Never/OnFailure kctl then waits for the pod to finish and
exits with the container's exit code (kubectl's `pod NS/NAME terminated
(Error)` for a failure).
"""
from __future__ import annotations

import asyncio
import time

import click

from kubectlish.common import Ctx, Failed, err, run
from kubectlish.exec import session, want_tty
from kubectlish.logs import pod_and_container

WAIT_RUNNING = 300.0
POLL = 0.2
PROMPT_NOTE = "If you don't see a command prompt, try pressing enter."


async def attach_to(ctx: Ctx, pod, container: str, stdin: bool, tty: bool) -> None:
    from machinery import nodeclient

    def open_stream(**kw):
        return nodeclient.attach(ctx.server, pod.metadata.namespace or ctx.namespace, pod.metadata.name,
                                 container, credentials=ctx.credentials, metadata=ctx.impersonate, **kw)
    if tty or stdin:
        err(PROMPT_NOTE)
    await session(open_stream, stdin, tty)


async def _attach(ctx: Ctx, arg: str, container: str | None, stdin: bool, tty: bool) -> int:
    pod, container = await pod_and_container(ctx, arg, container)
    await attach_to(ctx, pod, container, stdin, tty)
    return 0


async def wait_pod(ctx: Ctx, name: str, done, timeout: float):
    """Poll the pod until done(pod); the pod. Failed when timeout passes first."""
    deadline = time.monotonic() + timeout
    while True:
        pod = await ctx.client().get("pods", name, ctx.namespace)
        if done(pod):
            return pod
        if time.monotonic() > deadline:
            raise Failed(f"error: timed out waiting for pod {ctx.namespace}/{name} ({pod.status.phase or 'Pending'})")
        await asyncio.sleep(POLL)


def finished(pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def running_or_finished(pod) -> bool:
    return finished(pod) or (pod.status.phase == "Running" and bool(pod.status.container_statuses)
                             and pod.status.container_statuses[0].state.HasField("running"))


def exit_code(pod) -> int:
    """kubectl run's answer for a finished pod: 0, or the container's code with `terminated (REASON)`."""
    if pod.status.phase != "Failed":
        return 0
    statuses = [s for s in pod.status.container_statuses if s.state.HasField("terminated")]
    if not statuses:
        raise Failed(f"pod {pod.metadata.namespace}/{pod.metadata.name} failed with unknown exit code")
    t = statuses[0].state.terminated
    raise Failed(f"pod {pod.metadata.namespace}/{pod.metadata.name} terminated ({t.reason or 'Error'})"
                 + (f"\n{t.message}" if t.message else ""), code=t.exit_code or 1)


async def run_interactive(ctx: Ctx, create, name: str, stdin: bool, tty: bool, remove: bool, restart: str) -> int:
    """`kctl run -i/-t`: create (a coroutine making the pod), wait, attach, maybe delete."""
    from machinery import nodeclient
    await create()
    try:
        pod = await wait_pod(ctx, name, running_or_finished, WAIT_RUNNING)
        if finished(pod):                                      # too late to attach: what it said
            async for chunk in nodeclient.logs(ctx.server, ctx.namespace, name, name,
                                               credentials=ctx.credentials, metadata=ctx.impersonate):
                click.echo(chunk.data, nl=False)
        else:
            await attach_to(ctx, pod, name, stdin, tty)
        if restart != "Always":
            pod = await wait_pod(ctx, name, finished, 60)
            return exit_code(pod)
        return 0
    finally:
        if remove:
            await ctx.client().delete("pods", name, ctx.namespace)
            click.echo(f'pod "{name}" deleted')


@click.command("attach")
@click.argument("pod")
@click.option("-c", "--container", default=None, help="The container (default: the pod's default or first one).")
@click.option("-i", "--stdin", is_flag=True, help="Pass stdin to the container (a `stdin: true` container).")
@click.option("-t", "--tty", is_flag=True, help="Stdin is a TTY (a `tty: true` container).")
@click.pass_obj
def attach_cmd(ctx: Ctx, pod, container, stdin, tty):
    """Attach to a running container's main process: attach POD [-c C] [-i] [-t]."""
    run(ctx, _attach, pod, container, stdin, want_tty(stdin, tty))
