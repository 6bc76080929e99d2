"""The control plane as real processes: etcd, the apiserver, and optionally
the scheduler and the controller manager, on free ports, stopped by PID.

    with ControlPlane(scheduler=True) as cp:        # a fresh temporary directory
        ... Client(cp.apiserver.target) ...

    with Etcd(tmpdir) as etcd, ApiServer(etcd, tmpdir) as api: ...

Everything binds 127.0.0.1, except that the apiserver can listen on another
local address (`host=`): node agents in network namespaces cannot reach the
host's loopback (harness.nodes). `Etcd` talks to etcd's JSON gateway (plain
HTTP on the client port) for the few things checks need directly — the store
revision, compaction, raw keys — so they depend on no etcd client library.
`etcd_argv` is the one etcd command line, shared with the lab.
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import sys
import tempfile
import urllib.request

from harness.process import Process, free_port

ETCD_BIN = os.environ.get("KCTL_ETCD", shutil.which("etcd") or "/usr/bin/etcd")


def etcd_argv(name: str, data_dir: str | os.PathLike, client_port: int, peer_port: int,
              etcd_bin: str = ETCD_BIN) -> list[str]:
    """A one-member etcd on 127.0.0.1: client and peer URLs, a new cluster of itself."""
    url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [etcd_bin, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{name}={peer}", "--initial-cluster-state", "new"]


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - a local address
        return r.read().decode()


class Etcd(Process):
    """One etcd member on 127.0.0.1, data in workdir/etcd-data. The ports
    stay the same across restart()."""

    def __init__(self, workdir, *, client_port: int | None = None, peer_port: int | None = None,
                 extra_args: list[str] | None = None):
        super().__init__("etcd", workdir)
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.data_dir = self.workdir / "etcd-data"
        self.extra_args = list(extra_args or [])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def command(self) -> list[str]:
        return [*etcd_argv("kctl-test", self.data_dir, self.client_port, self.peer_port),
                "--log-level", "warn", "--logger", "zap", *self.extra_args]

    def ready(self) -> bool:
        return json.loads(http_get(self.url + "/health", 1)).get("health") == "true"

    # --------------------------------------------- JSON gateway (v3 API)
    def _post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def revision(self) -> int:
        """etcd's current store revision, read directly from etcd."""
        resp = self._post("/v3/kv/range", {"key": base64.b64encode(b"/").decode(), "count_only": True})
        return int(resp["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        rev = revision or self.revision()
        self._post("/v3/kv/compaction", {"revision": rev, "physical": True})
        return rev

    def get_raw(self, key: str | bytes) -> bytes | None:
        k = key.encode() if isinstance(key, str) else key
        resp = self._post("/v3/kv/range", {"key": base64.b64encode(k).decode()})
        kvs = resp.get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def put_raw(self, key: str | bytes, value: bytes) -> int:
        """Write a key behind the apiserver's back; returns the new revision."""
        k = key.encode() if isinstance(key, str) else key
        resp = self._post("/v3/kv/put", {"key": base64.b64encode(k).decode(),
                                         "value": base64.b64encode(value).decode()})
        return int(resp["header"]["revision"])

    def keys(self, prefix: str) -> list[str]:
        p = prefix.encode()
        end = p[:-1] + bytes([p[-1] + 1])
        resp = self._post("/v3/kv/range", {"key": base64.b64encode(p).decode(),
                                           "range_end": base64.b64encode(end).decode(), "keys_only": True})
        return [base64.b64decode(kv["key"]).decode() for kv in resp.get("kvs") or []]


class ApiServer(Process):
    """`python -m apiserver.main` against an Etcd (or any etcd URL), listening
    on `host` (127.0.0.1); the gRPC and metrics ports stay the same across
    restart(). Metrics are always on 127.0.0.1. Without `service_accounts` the
    ServiceAccount admission plugin is off: it refuses pods until a controller
    manager has made the namespace's `default` account."""

    def __init__(self, etcd: Etcd | str, workdir, *, port: int | None = None, metrics_port: int | None = None,
                 extra_args: list[str] | None = None, host: str = "127.0.0.1", service_accounts: bool = False):
        super().__init__("apiserver", workdir)
        self.etcd_url = etcd.url if isinstance(etcd, Etcd) else etcd
        self.host = host
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.extra_args = list(extra_args or [])
        if not service_accounts:
            self.extra_args.insert(0, "--disable-admission-plugins=ServiceAccount")

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "apiserver.main", "--etcd-servers", self.etcd_url,
                "--listen", self.target, "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *self.extra_args]

    def ready(self) -> bool:
        import grpc
        from machinery.pb import api_pb2, api_pb2_grpc
        with grpc.insecure_channel(self.target) as ch:
            api_pb2_grpc.ApiStub(ch).Version(api_pb2.VersionRequest(), timeout=1)
        return True

    def metrics_text(self) -> str:
        return http_get(self.metrics_url)


class Component(Process):
    """`python -m <module>.main --apiserver TARGET` with a metrics listener on
    127.0.0.1; ready once its metrics answer."""

    module = ""

    def __init__(self, workdir, target: str, *, name: str | None = None, metrics_port: int | None = None,
                 extra_args: list[str] | None = None):
        super().__init__(name or self.module, workdir)
        self.target = target
        self.metrics_port = metrics_port or free_port()
        self.extra_args = list(extra_args or [])

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [sys.executable, "-m", f"{self.module}.main", "--apiserver", self.target,
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *self.extra_args]

    def ready(self) -> bool:
        return bool(self.metrics_text())

    def metrics_text(self) -> str:
        return http_get(self.metrics_url, 1)


class Scheduler(Component):
    module = "scheduler"


class ControllerManager(Component):
    module = "controllers"


class ControlPlane:
    """etcd + apiserver (+ scheduler, + controller manager if asked) in
    `workdir`, or in a fresh temporary directory removed on stop()."""

    def __init__(self, workdir: str | os.PathLike | None = None, apiserver_args: list[str] | None = None, *,
                 host: str = "127.0.0.1", scheduler: bool = False, controller_manager: bool = False,
                 scheduler_args: list[str] | None = None, controller_args: list[str] | None = None,
                 service_accounts: bool = False):
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="kctl-cluster-")
        self.workdir = pathlib.Path(workdir or self._tmp)
        self.etcd = Etcd(self.workdir)
        self.apiserver = ApiServer(self.etcd, self.workdir, extra_args=apiserver_args, host=host,
                                   service_accounts=service_accounts)
        target = self.apiserver.target
        self.scheduler = Scheduler(self.workdir, target, extra_args=scheduler_args) if scheduler else None
        self.controller_manager = (ControllerManager(self.workdir, target, extra_args=controller_args)
                                   if controller_manager else None)

    @property
    def processes(self) -> list[Process]:
        """In start order."""
        return [p for p in (self.etcd, self.apiserver, self.scheduler, self.controller_manager) if p]

    @property
    def target(self) -> str:
        return self.apiserver.target

    def start(self) -> "ControlPlane":
        try:
            for proc in self.processes:
                proc.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Every process in reverse start order, by PID, whatever fails."""
        try:
            for proc in reversed(self.processes):
                try:
                    proc.stop()
                except Exception:  # noqa: BLE001 - stop the others anyway
                    proc.kill()
        finally:
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

