"""Plumbing shared by every kctl command.

* `Ctx` is the click context object: resolved settings and a lazily made
  async Client (commands run one coroutine under `asyncio.run`).
* Errors: every failure ends as kubectl prints it — `Error from server
  (NotFound): pods "x" not found`, `The Deployment "web" is invalid: ...`,
  or `error: ...` — on stderr with exit code 1. `Failed` carries a message
  that is already formatted; `run()` turns ApiErrors and connection
  failures into one line, never a traceback.
* Resource arguments: `pods`, `pods a b`, `pods/a svc/b`, `pods,svc`, as
  kubectl's builder reads them (`parse_targets`); `resolve_refs` turns them,
  with -l/--all, into the (kind, name) pairs a verb acts on.
* Manifests: files, directories (-R), `-`; documents in stream order,
  read through machinery.safeyaml's limits (3 MiB a file, go-yaml's alias
  ratio, depth 100, UTF-8); every refusal is one `error: ...` line naming
  the file and document, never a traceback.
"""
from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from machinery import errors, kinds


class Failed(errors.KctlError):
    """A command failure whose message is already what the user should read.

    The CLI's own branch of the exception tree (machinery.errors): it is how
    a command ends with a message and an exit code, whatever the cause (bad
    arguments, a timed-out wait, a failed precondition); `run()` prints it."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message = message
        self.code = code


# Tests may set this to a callable(server) -> client (e.g. a FakeClient).
CLIENT_FACTORY = None


@dataclass
class Ctx:
    server: str
    namespace: str
    namespace_explicit: bool = False
    request_timeout: float | None = None
    credentials: object = None          # machinery.kubeconfig.Credentials of the context (None: the default's)
    impersonate: tuple = ()             # (key, value) gRPC metadata: --as, --as-group (machinery/callmeta.py)
    _client: object = field(default=None, repr=False)

    def client(self):
        if self._client is None:
            if CLIENT_FACTORY is not None:
                self._client = CLIENT_FACTORY(self.server)
            else:
                from machinery.client import Client
                self._client = Client(self.server, timeout=self.request_timeout or 30.0,
                                      credentials=self.credentials, metadata=self.impersonate)
        return self._client

    async def aclose(self):
        if self._client is not None:
            await self._client.close()
            self._client = None


def err(msg: str) -> None:
    click.echo(msg, err=True)


def warn(msg: str) -> None:
    click.echo(f"Warning: {msg}", err=True)


def format_api_error(exc: errors.ApiError, action: str = "", source: str = "") -> str:
    """kubectl's rendering of a server error (cmdutil.CheckErr).

    Invalid errors drop the source and list the causes; the rest are
    `Error from server (Reason): [error when <action> "<source>": ]message`."""
    if isinstance(exc, errors.Invalid) and (exc.kind or exc.name):
        head = f'The {exc.kind} "{exc.name}" is invalid'
        causes = [f"{c.field}: {c.message}" if c.field else c.message for c in exc.causes]
        if not causes:
            return head
        if len(causes) == 1:
            return f"{head}: {causes[0]}"
        return head + ": \n" + "\n".join(f"* {c}" for c in causes)
    if isinstance(exc, (errors.Unavailable, errors.Timeout)) and "apiserver" in exc.message:
        return f"error: {exc.message}"
    where = f'error when {action} "{source}": ' if action and source else ""
    return f"Error from server ({exc.reason}): {where}{exc.message}"


def run(ctx: Ctx, coro_fn, *args, **kwargs) -> int:
    """Run one command coroutine; map failures to kubectl-style output.

    The coroutine returns an exit code (None means 0)."""

    async def main():
        try:
            return await coro_fn(ctx, *args, **kwargs)
        finally:
            await ctx.aclose()

    try:
        code = asyncio.run(main())
    except Failed as exc:
        if exc.message:
            err(exc.message)
        code = exc.code
    except errors.ApiError as exc:
        err(format_api_error(exc))
        code = 1
    except (kinds.UnknownKind, errors.ConfigError) as exc:
        err(f"error: {exc}")
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `kctl get ... | head`: the reader left; stop quietly (Python's recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        if os.environ.get("KCTL_DEBUG"):
            raise
        err(f"error: {type(exc).__name__}: {exc} (set KCTL_DEBUG=1 for a traceback)")
        code = 1
    sys.exit(code or 0)


# ------------------------------------------------------------ resource args

@dataclass
class Target:
    info: kinds.KindInfo
    names: list[str]     # empty: all of that kind


def resolve_kind(word: str) -> kinds.KindInfo:
    try:
        return kinds.resolve(word)
    except kinds.UnknownKind as exc:
        raise Failed(f'error: the server doesn\'t have a resource type "{word}"') from exc


ALL_KINDS = ("pods", "services", "daemonsets", "deployments", "replicasets", "statefulsets", "cronjobs",
             "jobs")


def parse_targets(args: tuple[str, ...] | list[str], *, allow_all: bool = True) -> list[Target]:
    """Turn command-line words into (kind, names) groups, kubectl style."""
    args = list(args)
    if not args:
        raise Failed("error: you must specify the type of resource to get. Use \"kctl api-resources\" "
                     "for a complete list of supported resources.")
    if any("/" in a for a in args):
        if not all("/" in a for a in args):
            raise Failed("error: there is no need to specify a resource type as a separate argument "
                         "when passing arguments in resource/name form (e.g. 'kctl get resource/"
                         "<resource_name>' instead of 'kctl get resource resource/<resource_name>'")
        out: list[Target] = []
        for a in args:
            kind, _, name = a.partition("/")
            if not name:
                raise Failed(f"error: arguments in resource/name form must have a single resource and name")
            info = resolve_kind(kind)
            for t in out:
                if t.info is info:
                    t.names.append(name)
                    break
            else:
                out.append(Target(info, [name]))
        return out
    kind_words = [w for w in args[0].split(",") if w]
    names = args[1:]
    infos: list[kinds.KindInfo] = []
    for w in kind_words:
        expanded = ALL_KINDS if (w == "all" and allow_all) else (w,)
        for e in expanded:
            info = resolve_kind(e)
            if info not in infos:
                infos.append(info)
    return [Target(i, list(names)) for i in infos]


async def resolve_refs(ctx: Ctx, words, selector: str = "", all_: bool = False) -> list[tuple[kinds.KindInfo, str]]:
    """(kind, name) of every object the words name, for verbs that act on
    named objects (label, annotate, wait): `pods a b` and `pods/a` name them;
    a bare kind needs -l/--all and lists the matching objects in ctx's
    namespace."""
    refs: list[tuple[kinds.KindInfo, str]] = []
    for t in parse_targets(words, allow_all=False):
        if t.names:
            refs.extend((t.info, n) for n in t.names)
        elif selector or all_:
            items, _ = await ctx.client().list(t.info, ctx.namespace, label_selector=selector)
            refs.extend((t.info, o.metadata.name) for o in items)
        else:
            raise Failed("error: resource(s) were provided, but no name was specified")
    return refs


def typed_name(arg: str, name: str | None, default_kind: str | None = None) -> tuple[kinds.KindInfo, str]:
    """`deploy/x` or (`deploy`, `x`) -> (info, name), for single-object verbs."""
    if "/" in arg:
        kind, _, n = arg.partition("/")
        if name:
            raise Failed("error: there is no need to specify a resource type as a separate argument "
                         "when passing arguments in resource/name form")
        return resolve_kind(kind), n
    if name:
        return resolve_kind(arg), name
    if default_kind:
        return resolve_kind(default_kind), arg
    raise Failed("error: required resource not specified")


# ---------------------------------------------------------------- manifests

YAML_SUFFIXES = (".yaml", ".yml", ".json")


def manifest_files(paths: tuple[str, ...], recursive: bool) -> list[str]:
    """Expand -f arguments: `-` (stdin), files, directories (one level, or
    all with -R), as kubectl's file visitor does: only .yaml/.yml/.json
    files inside directories, in lexical order; symlinked directories are
    not descended (a symlink loop cannot trap the walk); a symlinked file
    is read, and one that cannot be opened is reported by decode_documents."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append("-")
            continue
        path = Path(p)
        if path.is_dir():
            out.extend(_walk(path, recursive))
        elif path.exists() or path.is_symlink():
            out.append(p)
        else:
            raise Failed(f'error: the path "{p}" does not exist')
    if not out:
        raise Failed("error: no objects passed to apply")
    return out


def _walk(root: Path, recursive: bool) -> list[str]:
    found: list[str] = []
    for top, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        if not recursive:
            dirs.clear()
        found.extend(os.path.join(top, f) for f in sorted(files) if Path(f).suffix in YAML_SUFFIXES)
    return found


def read_source(path: str) -> bytes:
    """A file's bytes (stdin for `-`), refusing more than safeyaml.MAX_BYTES
    without reading further (so `-f /dev/zero` ends at once)."""
    from machinery import safeyaml

    if path == "-":
        data = sys.stdin.buffer.read(safeyaml.MAX_BYTES + 1)
    else:
        with open(path, "rb") as f:
            data = f.read(safeyaml.MAX_BYTES + 1)
    safeyaml.check_size(data)
    return data


@dataclass
class Doc:
    source: str           # file name as given ("-" shown as STDIN)
    index: int
    data: dict | None     # the raw document
    obj: object = None    # the decoded message
    error: str = ""       # a decode failure, already formatted


def decode_documents(path: str) -> list[Doc]:
    """Read and decode every document of one source; failures are recorded
    per document (not raised) so the caller can report them all."""
    from machinery import codec

    shown = "STDIN" if path == "-" else path
    try:
        raw = codec.load_documents(read_source(path))
    except errors.DecodeError as exc:
        return [Doc(shown, 0, None, error=f"error: error parsing {shown}: {exc}")]
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        return [Doc(shown, 0, None, error=f"error: open {shown}: {reason}")]
    # `kind: List` (what `get -o yaml` prints for several objects) stands for its items.
    expanded = []
    for data in raw:
        if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
            expanded.extend(data["items"])
        else:
            expanded.append(data)
    docs = []
    for i, data in enumerate(expanded):
        d = Doc(shown, i, data)
        try:
            d.obj = codec.from_dict(data, source=shown)
        except codec.UnknownKindError as exc:
            meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
            d.error = (f'error: resource mapping not found for name: "{meta.get("name", "")}" '
                       f'namespace: "{meta.get("namespace", "")}" from "{shown}": {exc}\n'
                       f"ensure CRDs are installed first")
        except codec.DecodeError as exc:
            d.error = f'error: error validating "{shown}": {exc}'
        docs.append(d)
    return docs


def set_namespace(ctx: Ctx, obj) -> None:
    """Fill a namespaced object's namespace from -n/context; refuse a clash
    with an explicit -n the way kubectl does."""
    info = kinds.of(obj)
    if not info.namespaced:
        obj.metadata.namespace = ""
        return
    ns = obj.metadata.namespace
    if ns and ctx.namespace_explicit and ns != ctx.namespace:
        raise Failed(f'error: the namespace from the provided object "{ns}" does not match the '
                     f'namespace "{ctx.namespace}". You must pass \'--namespace={ns}\' to perform '
                     f'this operation.')
    if not ns:
        obj.metadata.namespace = ctx.namespace


def ref(obj) -> str:
    """`deployment.apps/web`."""
    return f"{kinds.of(obj).qualified_singular}/{obj.metadata.name}"
