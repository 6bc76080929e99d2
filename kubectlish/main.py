"""`kctl`, the kubectl-like CLI: the click group and its global flags.

Subcommands are registered by name -> "module:attribute" in COMMANDS and
imported only when used, so `kctl version` does not pay for describe's or
rollout's imports. Other packages extend the group the same way: EXTENSIONS
lists commands that live elsewhere (`kctl lab` in deploy/lab/cli.py); each
appears as soon as its module exists, and nothing breaks while it does not.

Global flags (--server, --kubeconfig, --context, -n/--namespace,
--request-timeout, --as, --as-group, --as-uid) may be written anywhere on the line, as with kubectl
(`kctl get pods -n kube-system`): `KctlGroup.parse_args` hoists them in
front of the subcommand before click parses.

Exit codes: 0 success; 1 for every error kubectl reports (server errors,
unreachable server, unknown kinds); 2 for command-line usage errors (click's
convention — kubectl uses 1 there; we keep 2 so scripts can tell a typo from
a failure).
"""
from __future__ import annotations

import importlib
import importlib.util

import click

COMMANDS = {
    "apply": "kubectlish.apply:apply_cmd",
    "create": "kubectlish.apply:create_cmd",
    "get": "kubectlish.get:get_cmd",
    "describe": "kubectlish.describe:describe_cmd",
    "delete": "kubectlish.delete:delete_cmd",
    "api-resources": "kubectlish.info:api_resources_cmd",
    "version": "kubectlish.info:version_cmd",
    "label": "kubectlish.edit:label_cmd",
    "annotate": "kubectlish.edit:annotate_cmd",
    "taint": "kubectlish.edit:taint_cmd",
    "scale": "kubectlish.edit:scale_cmd",
    "set": "kubectlish.edit:set_group",
    "cordon": "kubectlish.nodes:cordon_cmd",
    "uncordon": "kubectlish.nodes:uncordon_cmd",
    "drain": "kubectlish.nodes:drain_cmd",
    "rollout": "kubectlish.rollout:rollout_group",
    "wait": "kubectlish.wait:wait_cmd",
    "logs": "kubectlish.logs:logs_cmd",
    "exec": "kubectlish.exec:exec_cmd",
    "attach": "kubectlish.attach:attach_cmd",
    "config": "kubectlish.config_cmd:config_group",
    "patch": "kubectlish.patch:patch_cmd",
    "run": "kubectlish.generators:run_cmd",
    "expose": "kubectlish.generators:expose_cmd",
    "dashboard": "kubectlish.dashboard:dashboard_cmd",
    "top": "kubectlish.top:top_group",
    "autoscale": "kubectlish.autoscale:autoscale_cmd",
    "certificate": "kubectlish.certificates:certificate_group",
    "token": "kubectlish.tokens:token_group",
    "join": "kubectlish.join:join_cmd",
    "pki": "kubectlish.pki_cmd:pki_group",
    "auth": "kubectlish.auth:auth_group",
}

# Commands that work without a usable cluster configuration.
_CONFIG_TOLERANT = {"config", "pki", "join"}
# Commands whose own options share names with the global ones.
_NO_HOIST = {"config", "pki"}

# Commands owned by other packages; shown only when their module is present.
# An extension gets its command line untouched (no global-option hoisting).
EXTENSIONS = {
    "lab": "deploy.lab.cli:lab",
}

# Global options that take a value, and may appear after the subcommand.
_GLOBAL_VALUE_OPTS = ("-n", "--namespace", "-s", "--server", "--kubeconfig", "--context",
                      "--request-timeout", "--as", "--as-group", "--as-uid")


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options found after the subcommand to the front.

    Extension commands (`kctl lab ...`) and `kctl config` (its
    `set-context --namespace`) own their whole command line."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in _GLOBAL_VALUE_OPTS else 1
    if i < len(args) and (args[i] in EXTENSIONS or args[i] in _NO_HOIST):
        return args
    front, rest = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a in _GLOBAL_VALUE_OPTS and i + 1 < len(args):
            front += [a, args[i + 1]]
            i += 2
            continue
        if any(a.startswith(o + "=") for o in _GLOBAL_VALUE_OPTS if o.startswith("--")) or \
                (a.startswith("-n") and not a.startswith("--") and len(a) > 2) or a.startswith("-n="):
            front.append(a if not a.startswith("-n=") else "-n" + a[3:])
            i += 1
            continue
        rest.append(a)
        i += 1
    return front + rest


def _module_exists(spec: str) -> bool:
    mod = spec.split(":")[0]
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


class KctlGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, hoist_global_options(list(args)))

    def list_commands(self, ctx):
        names = set(COMMANDS) | set(self.commands)
        names |= {n for n, spec in EXTENSIONS.items() if _module_exists(spec)}
        return sorted(names)

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        spec = COMMANDS.get(name) or EXTENSIONS.get(name)
        if spec is None:
            return None
        mod_name, _, attr = spec.partition(":")
        if name in EXTENSIONS and not _module_exists(spec):
            return None
        module = importlib.import_module(mod_name)
        return getattr(module, attr)


@click.group(cls=KctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-s", "--server", envvar=None, help="host:port of the apiserver, or several comma-separated "
              "(else $KCTL_SERVER, else kubeconfig).")
@click.option("--kubeconfig", help="Path to the kubeconfig file (else $KUBECONFIG, else ~/.kctl/config).")
@click.option("--context", "context_name", help="The kubeconfig context to use.")
@click.option("-n", "--namespace", help="The namespace scope for this request.")
@click.option("--request-timeout", default=None,
              help="Seconds (or 5s, 2m) to wait for a request; also ends `get --watch`.")
@click.option("--as", "as_user", default="", help="Username to impersonate for the operation (a user or "
              "system:serviceaccount:NS:NAME); needs the impersonate verb.")
@click.option("--as-group", "as_groups", multiple=True, help="Group to impersonate; repeat for several.")
@click.option("--as-uid", "as_uid", default="", help="UID to impersonate for the operation.")
@click.pass_context
def cli(click_ctx, server, kubeconfig, context_name, namespace, request_timeout, as_user, as_groups, as_uid):
    """kctl controls the kctl cluster manager (a kubectl look-alike)."""
    from kubectlish import config
    from kubectlish.common import Ctx

    try:
        settings = config.resolve(server=server, kubeconfig=kubeconfig, namespace=namespace,
                                  context=context_name)
    except config.ConfigError as exc:
        if click_ctx.invoked_subcommand in EXTENSIONS or click_ctx.invoked_subcommand in _CONFIG_TOLERANT:
            # Extensions (the lab) may not need a cluster at all.
            settings = config.Settings(config.DEFAULT_SERVER, namespace or "default", bool(namespace),
                                       None, None)
        else:
            click.echo(f"error: {exc}", err=True)
            click_ctx.exit(1)
    from machinery.callmeta import impersonation
    click_ctx.obj = Ctx(server=settings.server, namespace=settings.namespace,
                        namespace_explicit=settings.namespace_explicit,
                        request_timeout=parse_duration(request_timeout), credentials=settings.credentials,
                        impersonate=tuple(impersonation(as_user, as_groups, as_uid)))


def parse_duration(value: str | None) -> float | None:
    """`5`, `5s`, `2m`, `1h`, `1m30s`, `0` (no timeout) -> seconds (machinery.durations)."""
    if value in (None, ""):
        return None
    from machinery import durations
    try:
        n = durations.parse(value)
    except ValueError:
        raise click.BadParameter(f"invalid duration {value!r}", param_hint="--request-timeout") from None
    return n or None


def main() -> None:
    import os
    # gRPC's C core logs TLS handshake failures on stderr by itself; kctl says
    # what went wrong in one line of its own (GRPC_VERBOSITY=INFO brings them back).
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    cli(prog_name="kctl")


if __name__ == "__main__":
    main()
