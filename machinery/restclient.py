"""A small client of the apiserver's Kubernetes HTTP API (HTTPS), for the
callers that hold only a bearer token.

Why: the gRPC port asks every client for a certificate of the cluster CA in
the TLS handshake (gRPC's Python server cannot ask for one without requiring
it), so a bootstrap token or a ServiceAccount token can only be used over
HTTPS, where a request without a certificate reaches the authenticators. The
node agent's bootstrap (machinery/certmanager.py: submit the CSR, poll it)
uses this client; everything holding a client certificate uses
machinery.client.Client over gRPC.

How: aiohttp with the TLS context and headers of a
machinery.kubeconfig.Credentials (the kubeconfig's CA, the token as
`Authorization: Bearer`). Objects go in and come out as the kinds' protobuf
messages (machinery.codec's JSON mapping, as the HTTP API serves them);
a Status answer becomes the matching machinery.errors.ApiError, a
connection failure errors.Unavailable. It offers the subset of
machinery.client.Client's methods its callers need: create, get, close.
"""
from __future__ import annotations

import json

from google.protobuf import json_format
from google.protobuf.message import Message

from machinery import codec, errors, kinds, kubeconfig
from machinery.pb import api_pb2


def object_path(info: kinds.KindInfo, namespace: str = "", name: str = "") -> str:
    """/api/v1/namespaces/NS/pods/NAME, /apis/GROUP/VERSION/PLURAL (cluster-scoped)..."""
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    if info.namespaced:
        base += f"/namespaces/{namespace or 'default'}"
    return f"{base}/{info.plural}" + (f"/{name}" if name else "")


def api_error(status: int, body: bytes, url: str) -> errors.ApiError:
    """The ApiError of a non-2xx answer: its metav1.Status, else one built from the code."""
    try:
        st = json_format.ParseDict(json.loads(body), api_pb2.Status(), ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError):
        st = api_pb2.Status(code=status, message=f"{url}: HTTP {status}: {body[:200].decode(errors='replace')}")
    if not st.reason:
        st.reason = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "AlreadyExists"}.get(status, "")
    return errors.ApiError.from_status(st)


class RestClient:
    """HTTPS requests to `url` (https://HOST:PORT) with these credentials."""

    def __init__(self, url: str, credentials: kubeconfig.Credentials, *, timeout: float = 30.0,
                 user_agent: str = "kctl"):
        if not url.startswith("https://"):
            raise errors.ConfigError(f"the HTTP API must be reached over HTTPS, not {url!r}")
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.user_agent = user_agent
        self._session = None

    def _open(self):
        if self._session is None:
            import aiohttp
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.credentials.ssl_context()),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": self.user_agent, "Accept": "application/json",
                         **self.credentials.headers()})
        return self._session

    async def _request(self, method: str, path: str, body: dict | None = None) -> Message:
        import aiohttp
        url = self.url + path
        try:
            async with self._open().request(method, url, json=body) as r:
                data = await r.read()
                status = r.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise errors.Unavailable(f"cannot reach the apiserver at {self.url}: {exc}") from exc
        if status >= 300:
            raise api_error(status, data, url)
        try:
            return codec.from_dict(json.loads(data), source=url)
        except ValueError as exc:
            raise errors.DecodeError(f"{url}: the answer is not an object: {exc}") from exc

    async def create(self, obj: Message) -> Message:
        info = kinds.of(obj)
        return await self._request("POST", object_path(info, obj.metadata.namespace), codec.to_dict(obj))

    async def get(self, kind, name: str, namespace: str = "") -> Message:
        info = kinds.lookup(kind)
        return await self._request("GET", object_path(info, namespace, name))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
