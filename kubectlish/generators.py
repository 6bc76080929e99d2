"""Imperative object generators: `run`, `create deployment`, `expose`.

They build the manifest kubectl would build (labels `run=NAME` for run,
`app=NAME` for create deployment, a Service selecting the workload's labels
for expose), then create it — or, with `--dry-run=client -o yaml|json`,
print it, which is the usual way to start a manifest file.
"""
from __future__ import annotations

import click

from kubectlish.common import Ctx, Failed, ref, run, set_namespace, typed_name
from machinery import codec


def _container_name(image: str) -> str:
    base = image.rsplit("/", 1)[-1]
    return base.split("@")[0].split(":")[0] or "app"


def _kv(pairs, what) -> dict:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise Failed(f"error: invalid {what}: {p!r} (want key=value)")
        out[k] = v
    return out


async def _create_or_print(ctx: Ctx, manifest: dict, dry_run: str, output: str | None, verb="created"):
    obj = codec.from_dict(manifest)
    set_namespace(ctx, obj)
    if dry_run == "client":
        if output in ("yaml", "json"):
            from kubectlish import printers
            click.echo(printers.render([obj], output, single=True), nl=False)
        else:
            click.echo(f"{ref(obj)} {verb} (dry run)")
        return 0
    created = await ctx.client().create(obj, dry_run=dry_run == "server")
    for w in ctx.client().warnings:
        click.echo(f"Warning: {w}", err=True)
    suffix = " (server dry run)" if dry_run == "server" else ""
    if output in ("yaml", "json"):
        from kubectlish import printers
        click.echo(printers.render([created], output, single=True), nl=False)
    else:
        click.echo(f"{ref(created)} {verb}{suffix}")
    return 0


async def _create_quietly(ctx: Ctx, manifest: dict) -> None:
    obj = codec.from_dict(manifest)
    set_namespace(ctx, obj)
    await ctx.client().create(obj)


def _common(f):
    f = click.option("-o", "--output", type=click.Choice(["yaml", "json", "name"]), default=None)(f)
    return click.option("--dry-run", type=click.Choice(["none", "client", "server"]), default="none",
                        help="client: only print the object; server: validate without storing.")(f)


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--image", required=True, help="The container image.")
@click.option("--restart", type=click.Choice(["Always", "OnFailure", "Never"]), default="Always")
@click.option("--port", type=int, default=None, help="The port the container exposes.")
@click.option("--env", multiple=True, help="KEY=VALUE environment variables.")
@click.option("-l", "--labels", default="", help="Labels (k=v,k2=v2); default run=NAME.")
@click.option("--command", "as_command", is_flag=True, help="ARGS are the command, not arguments.")
@click.option("-i", "--stdin", is_flag=True, help="Keep stdin open on the container and attach to it.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a TTY for the container (with -i).")
@click.option("--rm", "remove", is_flag=True, help="Delete the pod after the attached session ends.")
@_common
@click.pass_obj
def run_cmd(ctx: Ctx, name, args, image, restart, port, env, labels, as_command, stdin, tty, remove, dry_run,
            output):
    """Create a pod running one container: run NAME --image=IMG [-i] [-t] [--rm] [-- ARGS...]."""
    container = {"name": name, "image": image}
    if stdin or tty:
        container.update({"stdin": True, **({"tty": True} if tty else {})})
    if args:
        container["command" if as_command else "args"] = list(args)
    if port:
        container["ports"] = [{"containerPort": port}]
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in _kv(env, "env").items()]
    lbl = _kv(labels.split(","), "label") if labels else {"run": name}
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": lbl},
                "spec": {"containers": [container], "restartPolicy": restart}}
    if remove and not (stdin or tty):
        raise click.UsageError("--rm should only be used for attached containers")
    if (stdin or tty) and dry_run == "none":         # kubectlish/attach.py: wait, attach, maybe delete
        from kubectlish.attach import run_interactive
        from kubectlish.exec import want_tty
        run(ctx, lambda c: run_interactive(c, lambda: _create_quietly(c, manifest), name, stdin,
                                           want_tty(stdin, tty), remove, restart))
        return
    run(ctx, _create_or_print, manifest, dry_run, output)


@click.command("deployment")
@click.argument("name")
@click.argument("command", nargs=-1)
@click.option("--image", "images", multiple=True, required=True, help="Container image (repeatable).")
@click.option("-r", "--replicas", type=int, default=1)
@click.option("--port", type=int, default=None, help="The port the first container exposes.")
@_common
@click.pass_obj
def create_deployment_cmd(ctx: Ctx, name, command, images, replicas, port, dry_run, output):
    """Create a deployment: create deployment NAME --image=IMG [--replicas N] [--port P] [-- COMMAND [ARG...]].

    As kubectl: COMMAND is every container's command (so one --image only),
    and --port goes to the first container."""
    run(ctx, _create_deployment, name, command, images, replicas, port, dry_run, output)


async def _create_deployment(ctx: Ctx, name, command, images, replicas, port, dry_run, output):
    if command and len(images) > 1:
        raise Failed("error: cannot specify multiple --image options and command")
    containers = []
    for img in images:
        c = {"name": _container_name(img), "image": img}
        if command:
            c["command"] = list(command)
        containers.append(c)
    if port is not None:
        containers[0]["ports"] = [{"containerPort": port}]
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}}
    return await _create_or_print(ctx, manifest, dry_run, output)


async def _run_expose(ctx: Ctx, resource, name, port, target_port, protocol, svc_type, svc_name, dry_run, output):
    info, name = typed_name(resource, name)
    obj = await ctx.client().get(info, name, ctx.namespace)
    if info.kind in ("Deployment", "ReplicaSet"):
        if obj.spec.selector.match_expressions:
            raise Failed("error: couldn't retrieve selectors via --selector flag or introspection: "
                         "the selector has matchExpressions")
        selector = dict(obj.spec.selector.match_labels)
        pod_spec = obj.spec.template.spec
    elif info.kind == "Pod":
        selector, pod_spec = dict(obj.metadata.labels), obj.spec
    elif info.kind == "Service":
        selector, pod_spec = dict(obj.spec.selector), None
    else:
        raise Failed(f"error: cannot expose a {info.kind}")
    if not selector:
        raise Failed(f"error: couldn't retrieve selectors via --selector flag or introspection: "
                     f"the {info.kind.lower()} has no labels")
    if port is None:
        ports = [p.container_port for c in (pod_spec.containers if pod_spec else []) for p in c.ports]
        if not ports:
            raise Failed("error: couldn't find port via --port flag or introspection")
        port = ports[0]
    sp = {"port": port, "protocol": protocol}
    if target_port:
        sp["targetPort"] = int(target_port) if target_port.isdigit() else target_port
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc_name or name},
                "spec": {"selector": selector, "ports": [sp]}}
    if svc_type:
        manifest["spec"]["type"] = svc_type
    return await _create_or_print(ctx, manifest, dry_run, output, verb="exposed")


@click.command("expose")
@click.argument("resource")
@click.argument("name", required=False)
@click.option("--port", type=int, default=None, help="The service port (default: the first container port).")
@click.option("--target-port", default=None, help="Container port number or name.")
@click.option("--protocol", type=click.Choice(["TCP", "UDP"]), default="TCP")
@click.option("--type", "svc_type", type=click.Choice(["ClusterIP", "NodePort", "LoadBalancer"]), default=None)
@click.option("--name", "svc_name", default=None, help="The service's name (default: the resource's).")
@_common
@click.pass_obj
def expose_cmd(ctx: Ctx, resource, name, port, target_port, protocol, svc_type, svc_name, dry_run, output):
    """Expose a deployment, replica set, pod or service as a new Service."""
    run(ctx, _run_expose, resource, name, port, target_port, protocol, svc_type, svc_name, dry_run, output)
