"""`kctl dashboard`: a live picture of the cluster in the browser.

Like `kubectl proxy`, a small local web server (aiohttp, loopback by
default) that

* serves one page and its assets from `dashboard_static/` (plain ES
  modules, CSS and SVG/DOM: no CDN, no build step, nothing from the network);
* forwards `/api/...` and `/apis/...` to the cluster's Kubernetes HTTP API,
  the `server:` URL of the kubeconfig's current cluster (the file kctl and
  kubectl share, kubectlish/config.py), streaming the answer through as it
  comes: watches stay open, chunk by chunk, until the browser goes away.
  It talks to the apiserver over HTTPS as the kubeconfig's user (its CA,
  client certificate or token), over one connection pool for the page's
  life; the browser never sees those credentials.

The page lists, then watches with the list's resourceVersion, and lists again
when a watch ends with 410 Expired (dashboard_static/watch.js); it never polls.
Its watches come through `/dashboard/streams`, one WebSocket that carries many
GET streams (a browser opens at most 6 HTTP/1.1 connections per host, and the
page holds a watch per kind): {"op": "open", "id": N, "path": "/api/..."} in,
{"id": N, "status": 200}, {"id": N, "data": text}..., {"id": N, "end": true}
out; {"op": "close", "id": N} ends one. Only /api and /apis paths, only GET;
a WebSocket from a foreign Origin is refused (browsers let any page open one).

Read-only by default: only GET (and HEAD) reach the cluster; any other method
is refused here with 405 and a metav1.Status, unless `--allow-writes`. As
`kubectl proxy` does against DNS rebinding, a request whose Host header is
not the dashboard's own (loopback names by default, `--accept-hosts`) is
refused with 403.

`--lab-controls` (never without it) adds the lab's fault buttons (kill/start
node, partition/heal, stop/start agent): POST /lab/ACTION/NODE runs
`kctl lab ACTION --name LAB NODE` as a child process, with this server's
privileges (root, when it was started as root; the lab needs that). The page
must send the header `X-Kctl-Dashboard: 1`, which a foreign page cannot send
without a CORS preflight this server never grants. The lab's name is
`--lab NAME`, else the one in the kubeconfig context `kctl-lab-NAME`.
"""
from __future__ import annotations

import asyncio
import codecs
import json
import re
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import click

from kubectlish import config
from machinery.errors import ConfigError

STATIC = Path(__file__).with_name("dashboard_static")
READ_METHODS = frozenset({"GET", "HEAD"})
LAB_ACTIONS = ("kill-node", "start-node", "stop-agent", "start-agent", "partition", "heal")
LAB_CONTEXT = "kctl-lab-"
# Request headers passed upstream; everything else (cookies, the browser's
# Origin) stays here.
FORWARD_HEADERS = ("Accept", "Content-Type")
DEFAULT_ACCEPT_HOSTS = r"^localhost$,^127\.0\.0\.1$,^\[::1\]$"
LAB_TIMEOUT = 60.0


@dataclass
class Options:
    upstream: str                      # http(s)://host:port of the cluster's HTTP API
    allow_writes: bool = False
    lab: str | None = None             # lab name when --lab-controls, else None
    accept_hosts: list[re.Pattern] = field(default_factory=lambda: compile_hosts(DEFAULT_ACCEPT_HOSTS))
    lab_argv: list[str] = field(default_factory=lambda: [sys.executable, "-m", "kubectlish.main", "lab"])
    credentials: object = None         # machinery.kubeconfig.Credentials of the context (CA, certificate, token)


def compile_hosts(spec: str) -> list[re.Pattern]:
    try:
        return [re.compile(p) for p in spec.split(",") if p]
    except re.error as exc:
        raise click.BadParameter(f"not a regular expression: {exc}", param_hint="--accept-hosts") from exc


def cluster_entry(path: str, context: str | None) -> tuple[dict, str | None]:
    """The kubeconfig's chosen cluster entry and context name."""
    from machinery import kubeconfig as kc
    data = kc.read(path)
    clusters = config._named(data.get("clusters"), "clusters", path)
    contexts = config._named(data.get("contexts"), "contexts", path)
    name = context or data.get("current-context") or None
    if not name:
        if len(clusters) == 1:
            return next(iter(clusters.values())), None
        raise ConfigError(f"{path}: no current-context and not exactly one cluster")
    if name not in contexts:
        raise ConfigError(f'context "{name}" does not exist')
    cluster_name = contexts[name].get("cluster", "")
    if cluster_name not in clusters:
        raise ConfigError(f'cluster "{cluster_name}" of context "{name}" does not exist')
    return clusters[cluster_name], name


def http_server(kubeconfig: str | None, context: str | None, env: dict | None = None) -> tuple[str, str | None]:
    """(HTTP API URL, context name) from the kubeconfig kctl would read."""
    path = config.kubeconfig_path(kubeconfig, env)
    if not path:
        raise ConfigError("no kubeconfig found (--kubeconfig, $KUBECONFIG or ~/.kctl/config): "
                          "the dashboard needs the cluster's HTTP API URL")
    cluster, name = cluster_entry(path, context)
    server = cluster.get("server") or ""
    if not server.startswith(("http://", "https://")):
        raise ConfigError(f'{path}: the cluster\'s server "{server}" is not an http(s):// URL; '
                          "the dashboard needs the apiserver's HTTP API (kctl-apiserver --http-listen)")
    return server.rstrip("/"), name


def lab_from_context(context: str | None) -> str | None:
    return context[len(LAB_CONTEXT):] if context and context.startswith(LAB_CONTEXT) else None


def status_body(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def make_app(opts: Options):
    from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

    session_key = web.AppKey("session", ClientSession)

    def failure(code: int, reason: str, message: str) -> web.Response:
        return web.json_response(status_body(code, reason, message), status=code)

    @web.middleware
    async def guard(request: web.Request, handler):
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        if not any(p.search(host) for p in opts.accept_hosts):
            return failure(403, "Forbidden", f"host {request.host!r} is not accepted (--accept-hosts)")
        return await handler(request)

    async def start_session(app: web.Application):
        # No total timeout: watches last as long as the page is open.
        creds = opts.credentials
        connector = TCPConnector(ssl=creds.ssl_context()) if creds is not None else None
        app[session_key] = ClientSession(timeout=ClientTimeout(total=None, sock_connect=10), auto_decompress=False,
                                         connector=connector, headers=creds.headers() if creds is not None else None)
        yield
        await app[session_key].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        if request.method not in READ_METHODS and not opts.allow_writes:
            return failure(405, "MethodNotAllowed",
                           f"kctl dashboard is read-only: {request.method} is not forwarded (start it with "
                           "--allow-writes to allow it)")
        headers = {h: request.headers[h] for h in FORWARD_HEADERS if h in request.headers}
        body = await request.read() if request.can_read_body else None
        url = opts.upstream + request.rel_url.path_qs
        try:
            up = await request.app[session_key].request(request.method, url, headers=headers, data=body,
                                                        allow_redirects=False)
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            return failure(503, "ServiceUnavailable", f"the cluster's HTTP API at {opts.upstream} "
                                                      f"did not answer: {exc}")
        async with up:
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for h in ("Content-Type", "Content-Encoding"):
                if h in up.headers:
                    resp.headers[h] = up.headers[h]
            resp.headers["Cache-Control"] = "no-store"
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            except (ClientError, OSError):
                pass  # either side went away mid-stream (a watch ends so): the response just ends
            return resp

    async def streams(request: web.Request) -> web.WebSocketResponse:
        """Many GET streams over one WebSocket (see `relay`): a browser opens
        at most 6 HTTP/1.1 connections per host, fewer than the page's watches."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
            return failure(403, "Forbidden", f"origin {origin!r} may not open streams")
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        tasks: dict[int, asyncio.Task] = {}
        try:
            async for msg in ws:
                try:
                    cmd = json.loads(msg.data)
                    sid, op = int(cmd["id"]), cmd["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.send_json({"error": "want {\"op\": \"open\"|\"close\", \"id\": N, \"path\": ...}"})
                    continue
                if op == "close" and sid in tasks:
                    tasks.pop(sid).cancel()
                elif op == "open" and sid not in tasks:
                    tasks[sid] = asyncio.ensure_future(relay(request.app[session_key], ws, sid, str(cmd.get("path", ""))))
                    tasks[sid].add_done_callback(lambda t, sid=sid: tasks.pop(sid, None))
        finally:
            for t in list(tasks.values()):
                t.cancel()
        return ws

    async def relay(session, ws, sid: int, path: str) -> None:
        """GET `path` upstream; to the page: {id, status}, {id, data}..., {id, end}."""
        if not path.startswith(("/api/", "/apis/")):
            await ws.send_json({"id": sid, "status": 400, "error": "path must start with /api/ or /apis/", "end": True})
            return
        try:
            async with session.get(opts.upstream + path, headers={"Accept": "application/json"}) as up:
                await ws.send_json({"id": sid, "status": up.status})
                text = codecs.getincrementaldecoder("utf-8")(errors="replace")  # chunks split characters
                async for chunk in up.content.iter_any():
                    await ws.send_json({"id": sid, "data": text.decode(chunk)})
            await ws.send_json({"id": sid, "end": True})
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            if not ws.closed:
                await ws.send_json({"id": sid, "error": f"{opts.upstream}: {exc}", "end": True})

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"upstream": opts.upstream, "readOnly": not opts.allow_writes,
                                  "lab": opts.lab, "labActions": list(LAB_ACTIONS) if opts.lab else []})

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def lab_action(request: web.Request) -> web.Response:
        action, node = request.match_info["action"], request.match_info["node"]
        if request.headers.get("X-Kctl-Dashboard") != "1":
            return failure(403, "Forbidden", "lab controls need the header X-Kctl-Dashboard: 1")
        if action not in LAB_ACTIONS:
            return failure(404, "NotFound", f"unknown lab action {action!r}; known: {', '.join(LAB_ACTIONS)}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,62}", node):
            return failure(400, "BadRequest", f"node: invalid name {node!r}")
        code, out = await run_lab(opts.lab_argv + [action, "--name", opts.lab, node])
        return web.json_response({"action": action, "node": node, "exitCode": code, "output": out},
                                 status=200 if code == 0 else 500)

    app = web.Application(middlewares=[guard], client_max_size=3 * 1024 * 1024)
    app.cleanup_ctx.append(start_session)
    app.add_routes([web.get("/", index), web.get("/dashboard/info", info),
                    web.get("/dashboard/streams", streams),
                    web.static("/static", STATIC, append_version=False),
                    web.route("*", "/api", proxy), web.route("*", "/api/{tail:.*}", proxy),
                    web.route("*", "/apis", proxy), web.route("*", "/apis/{tail:.*}", proxy)])
    if opts.lab:
        app.add_routes([web.post("/lab/{action}/{node}", lab_action)])
    return app


async def run_lab(argv: list[str]) -> tuple[int, str]:
    """Run one `kctl lab` fault command; (exit code, its output)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), LAB_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"timed out after {LAB_TIMEOUT:.0f}s"
    return proc.returncode, out.decode(errors="replace").strip()


async def serve(opts: Options, address: str, port: int, announce=click.echo, query: str = "") -> None:
    from aiohttp import web

    runner = web.AppRunner(make_app(opts), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, address, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        host = f"[{address}]" if ":" in address else address
        announce(f"Starting to serve the dashboard on http://{host}:{bound}/{query} (cluster API {opts.upstream}, "
                 + ("read-write" if opts.allow_writes else "read-only: only GET is forwarded")
                 + (f", lab controls for lab {opts.lab!r}" if opts.lab else "") + ")")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


@click.command("dashboard")
@click.option("--address", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("-p", "--port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="The port to listen on (0: a free one).")
@click.option("--accept-hosts", default=DEFAULT_ACCEPT_HOSTS, show_default=True,
              help="Comma-separated regular expressions of Host names to accept (as kubectl proxy).")
@click.option("--allow-writes", is_flag=True, help="Forward every method, not only GET (default: read-only).")
@click.option("--lab-controls", is_flag=True, help="Show the lab's fault controls (kill/start node, ...).")
@click.option("--lab", "lab_name", default=None, help="The lab for --lab-controls (default: from the context).")
@click.pass_context
def dashboard_cmd(ctx, address, port, accept_hosts, allow_writes, lab_controls, lab_name):
    """Serve a live view of the cluster in the browser, on loopback by default.

    The page reads the cluster through this server, which forwards /api and
    /apis to the kubeconfig's HTTP API URL; only GET unless --allow-writes."""
    root = ctx.find_root().params
    try:
        upstream, context = http_server(root.get("kubeconfig"), root.get("context_name"))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    lab = None
    if lab_controls:
        lab = lab_name or lab_from_context(context)
        if not lab:
            raise click.BadParameter("no lab: give --lab NAME (the context is not a kctl-lab-NAME one)",
                                     param_hint="--lab-controls")
    elif lab_name:
        raise click.BadParameter("--lab needs --lab-controls", param_hint="--lab")
    from machinery import kubeconfig as kc
    creds = kc.select(config.kubeconfig_path(root.get("kubeconfig")), root.get("context_name")).credentials
    opts = Options(upstream, allow_writes=allow_writes, lab=lab, accept_hosts=compile_hosts(accept_hosts),
                   credentials=creds)
    if address not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {address}: anyone who can reach it reads the cluster", err=True)
    try:
        # -n/--namespace: the page opens on that namespace.
        explicit = getattr(ctx.obj, "namespace_explicit", False)
        query = f"?namespace={urllib.parse.quote(ctx.obj.namespace)}" if explicit else ""
        asyncio.run(serve(opts, address, port, query=query))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {address}:{port}: {exc}") from exc
