"""`kctl logs` and `kctl exec`: streams from a pod's node agent.

The apiserver serves no log/exec proxy (yet), so kctl looks the pod up,
reads its Node's `kctl.io/agent-endpoint` annotation (InternalIP:10250 when
absent) and calls the agent's `kctl.v1.NodeAgent` service (proto/node.proto)
directly: Logs is a server stream of chunks written to stdout as they come;
Exec is a bidirectional stream — the first request names pod, container and
command, later ones carry stdin (with -i, read on a thread so the event
loop keeps draining output), and the last response carries the exit code.
Like kubectl, exec exits with the command's exit code and says so
(`command terminated with exit code 3`).

Agent errors come back as gRPC status codes and print the way kubectl
prints the apiserver's (`Error from server (BadRequest): ...`).
"""
from __future__ import annotations

import asyncio
import sys

import click

from kubectlish.common import Ctx, Failed, run

ENDPOINT_ANNOTATION = "kctl.io/agent-endpoint"
AGENT_PORT = 10250


async def agent_endpoint(client, pod) -> str:
    if not pod.spec.node_name:
        raise Failed(f"Error from server (BadRequest): pod {pod.metadata.name} does not have a host assigned")
    node = await client.get("nodes", pod.spec.node_name)
    ep = node.metadata.annotations.get(ENDPOINT_ANNOTATION)
    if ep:
        return ep
    ip = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
    if not ip:
        raise Failed(f'error: node "{node.metadata.name}" has no agent endpoint')
    return f"{ip}:{AGENT_PORT}"


def _agent_error(exc, endpoint: str) -> Failed:
    import grpc
    code = exc.code()
    reason = {grpc.StatusCode.NOT_FOUND: "NotFound", grpc.StatusCode.INVALID_ARGUMENT: "BadRequest",
              grpc.StatusCode.FAILED_PRECONDITION: "BadRequest"}.get(code)
    if code == grpc.StatusCode.UNAVAILABLE:
        details = exc.details() or ""
        short = "connection refused" if "onnection refused" in details else (details.splitlines() or [""])[0][:200]
        return Failed(f"error: cannot reach the node agent at {endpoint}: {short}")
    if reason:
        return Failed(f"Error from server ({reason}): {exc.details()}")
    return Failed(f"error: {exc.details() or code.name}")


def _stub(endpoint: str):
    import grpc
    from machinery.pb import node_pb2_grpc
    channel = grpc.aio.insecure_channel(endpoint, options=[("grpc.enable_http_proxy", 0)])
    return channel, node_pb2_grpc.NodeAgentStub(channel)


def _pod_and_container(pod_arg: str, container: str | None):
    name = pod_arg.split("/", 1)[1] if pod_arg.startswith(("pod/", "pods/", "po/")) else pod_arg
    return name, container or ""


async def _run_logs(ctx: Ctx, pod_arg, container, follow, previous, tail, timestamps):
    import grpc
    from machinery.pb import node_pb2
    name, container = _pod_and_container(pod_arg, container)
    client = ctx.client()
    pod = await client.get("pods", name, ctx.namespace)
    endpoint = await agent_endpoint(client, pod)
    channel, stub = _stub(endpoint)
    req = node_pb2.LogsRequest(namespace=ctx.namespace, pod=name, container=container, follow=follow,
                               previous=previous, timestamps=timestamps)
    if tail is not None and tail >= 0:
        req.tail_lines = tail
    out = sys.stdout.buffer
    try:
        async for chunk in stub.Logs(req):
            out.write(chunk.data)
            out.flush()
    except grpc.aio.AioRpcError as exc:
        raise _agent_error(exc, endpoint) from None
    finally:
        await channel.close()


@click.command("logs")
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Container name (needed when the pod has several).")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines.")
@click.option("-p", "--previous", is_flag=True, help="The previous, terminated instance of the container.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.pass_obj
def logs_cmd(ctx: Ctx, pod, container, follow, previous, tail, timestamps):
    """Print the logs of a container in a pod."""
    run(ctx, _run_logs, pod, container, follow, previous, tail, timestamps)


async def _run_exec(ctx: Ctx, pod_arg, container, stdin, command):
    import grpc
    from machinery.pb import node_pb2
    if not command:
        raise Failed("error: you must specify at least one command for the container")
    name, container = _pod_and_container(pod_arg, container)
    client = ctx.client()
    pod = await client.get("pods", name, ctx.namespace)
    endpoint = await agent_endpoint(client, pod)
    channel, stub = _stub(endpoint)
    first = node_pb2.ExecRequest(namespace=ctx.namespace, pod=name, container=container,
                                 command=list(command), stdin=stdin, stdin_eof=not stdin)

    async def requests():
        yield first
        if not stdin:
            return
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.run_in_executor(None, sys.stdin.buffer.read1, 65536)
            if not data:
                yield node_pb2.ExecRequest(stdin_eof=True)
                return
            yield node_pb2.ExecRequest(stdin_data=data)

    code = 0
    try:
        async for resp in stub.Exec(requests()):
            if resp.stdout:
                sys.stdout.buffer.write(resp.stdout)
                sys.stdout.buffer.flush()
            if resp.stderr:
                sys.stderr.buffer.write(resp.stderr)
                sys.stderr.buffer.flush()
            if resp.HasField("exit_code"):
                code = resp.exit_code
    except grpc.aio.AioRpcError as exc:
        raise _agent_error(exc, endpoint) from None
    finally:
        await channel.close()
    if code:
        raise Failed(f"command terminated with exit code {code}", code=code)
    return 0


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-c", "--container", default=None, help="Container name (needed when the pod has several).")
@click.option("-i", "--stdin", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Accepted for kubectl compatibility; no TTY is allocated.")
@click.pass_obj
def exec_cmd(ctx: Ctx, pod, command, container, stdin, tty):
    """Run a command in a container: exec POD [-c C] [-i] -- COMMAND [ARGS...]."""
    run(ctx, _run_exec, pod, container, stdin, command)
