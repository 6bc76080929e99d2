"""kubeconfig files as kubectl reads them, for every client of the API
(kctl, the control-plane components, node agents, kctl-dns).

A kubeconfig names clusters (where the apiserver is and the CA that signs
its serving certificate), users (a client certificate and key, or a bearer
token) and contexts (a cluster + a user + a default namespace); the
current context picks one of each. kctl reads the fields kubectl reads:

    clusters[].cluster: server, certificate-authority(-data), extensions
    users[].user:       client-certificate(-data), client-key(-data), token, tokenFile

`*-data` fields are base64 PEM; the others are file paths, relative to the
kubeconfig's own directory as kubectl resolves them.

kctl speaks gRPC: a cluster's gRPC address is in its extension named
`kctl.dev/grpc` (`extensions: [{name: kctl.dev/grpc, extension: {server:
10.0.0.1:6443}}]`, which kubectl carries along unread). Without it, a
`server` with no scheme (or `grpc://`) is the gRPC address itself, and an
`http(s)://` URL means the same host on gRPC's port 6443.

An HA control plane has several apiservers: the extension then also lists
them all, `{server: 10.0.0.2:6443, servers: [10.0.0.2:6443, 10.0.0.3:6443,
10.0.0.4:6443]}` (`server` stays the first, for readers that know only it).
`select()` gives them all, as the comma list `Selected.grpc`
("a:6443,b:6443,c:6443", what machinery.client.Client takes; the list is
`Selected.grpc_servers`) and `document(..., grpc=[...])` writes them. The
client fails over between them (machinery/endpoints.py). kubectl's
`server` (HTTPS) stays one URL.

`Credentials` turns a user + cluster into what a transport needs: gRPC
channel credentials (TLS with the CA, the client certificate; a token as
per-call metadata) or an ssl.SSLContext plus headers for HTTPS. Anything
unusable raises machinery.errors.ConfigError naming the file and field.
"""
from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from machinery.errors import ConfigError

GRPC_EXTENSION = "kctl.dev/grpc"
GRPC_PORT = 6443
DEFAULT_CONFIG = "~/.kctl/config"


@dataclass(frozen=True)
class Credentials:
    """The cluster's CA and the user's client certificate and/or token (PEM bytes)."""
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None

    def grpc(self):
        """grpc.ChannelCredentials: TLS with this CA and client certificate, the token per call."""
        import grpc
        creds = grpc.ssl_channel_credentials(root_certificates=self.ca_pem, private_key=self.key_pem,
                                             certificate_chain=self.cert_pem)
        if self.token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(self.token))
        return creds

    def ssl_context(self) -> ssl.SSLContext:
        """An HTTPS client context (TLS 1.2+, this CA, the client certificate if any)."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_pem and self.key_pem:
            # ssl loads a chain only from files: write both to a private temporary file
            with tempfile.NamedTemporaryFile("wb", suffix=".pem") as f:
                f.write(self.cert_pem + b"\n" + self.key_pem)
                f.flush()
                ctx.load_cert_chain(f.name)
        return ctx

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class Selected:
    """What the chosen context says: gRPC address, HTTP(S) URL, namespace, credentials."""
    grpc: str | None
    https_url: str | None
    namespace: str | None
    context: str | None
    credentials: Credentials

    @property
    def grpc_servers(self) -> list[str]:
        """Every gRPC address (several for an HA control plane)."""
        return self.grpc.split(",") if self.grpc else []


def read(path: str | os.PathLike) -> dict:
    import yaml
    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"stat {path}: no such file or directory") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"error loading config file \"{path}\": {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"error loading config file \"{path}\": not a mapping")
    return data


def named(items, kind: str, path) -> dict[str, dict]:
    out = {}
    for item in items or []:
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{path}: every entry of {kind} needs a name")
        out[item["name"]] = item.get(kind[:-1]) or {}
    return out


def grpc_server(cluster: dict) -> str | None:
    """kctl's gRPC address(es) for a kubeconfig cluster entry, several as a
    comma list (see the module docstring)."""
    for ext in cluster.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == GRPC_EXTENSION:
            found = ext.get("extension") or {}
            servers = found.get("servers")
            if servers is not None:
                if not isinstance(servers, list) or not all(isinstance(a, str) and a.strip() for a in servers):
                    raise ConfigError(f"extension {GRPC_EXTENSION}: servers must be a list of HOST:PORT strings, "
                                      f"got {servers!r}")
                if servers:
                    return ",".join(a.strip() for a in servers)
            if found.get("server"):
                return found["server"]
    server = cluster.get("server")
    if server and server.startswith(("http://", "https://")):
        host = server.split("://", 1)[1].split("/", 1)[0]
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return f"{host}:{GRPC_PORT}"
    return server


def grpc_extension(grpc: str | list[str] | tuple[str, ...]) -> dict:
    """The `kctl.dev/grpc` extension entry for one address or several (a
    comma list or a sequence): `server` the first, `servers` all when more than one."""
    addrs = [a.strip() for a in (grpc.split(",") if isinstance(grpc, str) else grpc) if a.strip()]
    if not addrs:
        raise ConfigError(f"extension {GRPC_EXTENSION}: no gRPC address in {grpc!r}")
    ext: dict = {"server": addrs[0]}
    if len(addrs) > 1:
        ext["servers"] = addrs
    return {"name": GRPC_EXTENSION, "extension": ext}


def _material(entry: dict, field: str, base: Path, path) -> bytes | None:
    data = entry.get(f"{field}-data")
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except ValueError as exc:
            raise ConfigError(f"{path}: {field}-data is not base64: {exc}") from exc
    file = entry.get(field)
    if file:
        try:
            return (base / Path(file).expanduser()).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: unable to read {field} {file}: {exc.strerror}") from exc
    return None


def credentials(cluster: dict, user: dict, path) -> Credentials:
    base = Path(path).expanduser().parent
    cert = _material(user, "client-certificate", base, path)
    key = _material(user, "client-key", base, path)
    if bool(cert) != bool(key):
        raise ConfigError(f"{path}: client-certificate and client-key must be given together")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = (base / Path(user["tokenFile"]).expanduser()).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{path}: unable to read tokenFile {user['tokenFile']}: {exc.strerror}") from exc
    return Credentials(_material(cluster, "certificate-authority", base, path), cert, key, token or None)


def select(path: str | os.PathLike, context: str | None = None) -> Selected:
    """The chosen context of a kubeconfig (`context`, else current-context;
    with neither, its only cluster)."""
    data = read(path)
    clusters = named(data.get("clusters"), "clusters", path)
    contexts = named(data.get("contexts"), "contexts", path)
    users = named(data.get("users"), "users", path)
    name = context or data.get("current-context") or None
    if not name:
        if len(clusters) == 1:
            cluster = next(iter(clusters.values()))
            user = next(iter(users.values())) if len(users) == 1 else {}
            return Selected(grpc_server(cluster), cluster.get("server"), None, None,
                            credentials(cluster, user, path))
        return Selected(None, None, None, None, Credentials())
    if name not in contexts:
        raise ConfigError(f'context "{name}" does not exist')
    ctx = contexts[name]
    cluster = clusters.get(ctx.get("cluster", ""))
    if cluster is None:
        raise ConfigError(f'cluster "{ctx.get("cluster", "")}" of context "{name}" does not exist')
    user = users.get(ctx.get("user", ""), {})
    return Selected(grpc_server(cluster), cluster.get("server"), ctx.get("namespace") or None, name,
                    credentials(cluster, user, path))


def default_path(env: dict | None = None) -> str | None:
    """The kubeconfig kctl reads without --kubeconfig: the first existing
    $KUBECONFIG entry (colon-separated), else ~/.kctl/config."""
    env = os.environ if env is None else env
    if env.get("KUBECONFIG"):
        for part in env["KUBECONFIG"].split(os.pathsep):
            if part and Path(part).expanduser().is_file():
                return str(Path(part).expanduser())
        return None
    default = Path(DEFAULT_CONFIG).expanduser()
    return str(default) if default.is_file() else None


def default_credentials() -> Credentials:
    """The current context's credentials of the default kubeconfig (none: empty).
    What a client given only an address uses, as `kubectl --server=ADDR` does."""
    path = default_path()
    return select(path).credentials if path else Credentials()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def document(cluster: str, user: str, *, https_url: str, grpc: str | list[str] | None = None,
             ca_pem: bytes | None = None,
             cert_pem: bytes | None = None, key_pem: bytes | None = None, token: str | None = None,
             namespace: str = "", context: str | None = None) -> dict:
    """A one-context kubeconfig with embedded (`*-data`) material; `grpc`:
    the gRPC address, or all of them (comma list or list: `servers`)."""
    c: dict = {"server": https_url}
    if ca_pem:
        c["certificate-authority-data"] = _b64(ca_pem)
    if grpc:
        c["extensions"] = [grpc_extension(grpc)]
    u: dict = {}
    if cert_pem:
        u["client-certificate-data"] = _b64(cert_pem)
        u["client-key-data"] = _b64(key_pem)
    if token:
        u["token"] = token
    ctx_name = context or f"{user}@{cluster}"
    ctx = {"cluster": cluster, "user": user, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": "Config", "current-context": ctx_name,
            "clusters": [{"name": cluster, "cluster": c}], "contexts": [{"name": ctx_name, "context": ctx}],
            "users": [{"name": user, "user": u}], "preferences": {}}


def dump(doc: dict) -> bytes:
    import yaml
    return yaml.safe_dump(doc, sort_keys=False).encode()
