"""Real processes for integration tests: etcd and the apiserver on free
loopback ports, in a temporary directory, stopped by PID.

Usable without pytest (bench/api.py does):

    with Etcd(tmpdir) as etcd, ApiServer(etcd, tmpdir) as api:
        ... Client(api.target) ...

`Etcd` talks to etcd's JSON gateway (plain HTTP on the client port) for the
few things tests need directly — the store revision, compaction, raw keys —
so tests depend on no etcd client library.
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
ETCD_BIN = os.environ.get("KCTL_ETCD", shutil.which("etcd") or "/usr/bin/etcd")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float, what: str, proc: "Process") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout}s:\n{proc.log_tail()}")


class Process:
    """A child process in its own session, logging to a file, stopped by PID."""

    def __init__(self, name: str, workdir: pathlib.Path):
        self.name = name
        self.workdir = pathlib.Path(workdir)
        self.log_path = self.workdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> "Process":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                      start_new_session=True, env=self.env())
        log.close()
        _wait(self.ready, timeout, self.name, self)
        return self

    def env(self) -> dict:
        return dict(os.environ)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`, by PID."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self.popen.wait()
        self.popen = None

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait()

    def restart(self, timeout: float = 30.0) -> "Process":
        self.stop()
        return self.start(timeout)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self):
        if self.popen is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


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
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [ETCD_BIN, "--name", "kctl-test", "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"kctl-test={peer}", "--initial-cluster-state", "new",
                "--log-level", "warn", "--logger", "zap", *self.extra_args]

    def ready(self) -> bool:
        with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
            return json.load(r).get("health") == "true"

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
    """`python -m apiserver.main` against an Etcd (or any etcd URL); the
    gRPC and metrics ports stay the same across restart()."""

    def __init__(self, etcd: Etcd | str, workdir, *, port: int | None = None, metrics_port: int | None = None,
                 extra_args: list[str] | None = None):
        super().__init__("apiserver", workdir)
        self.etcd_url = etcd.url if isinstance(etcd, Etcd) else etcd
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.extra_args = list(extra_args or [])

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "apiserver.main", "--etcd-servers", self.etcd_url,
                "--listen", self.target, "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *self.extra_args]

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def ready(self) -> bool:
        import grpc
        from machinery.pb import api_pb2, api_pb2_grpc
        with grpc.insecure_channel(self.target) as ch:
            api_pb2_grpc.ApiStub(ch).Version(api_pb2.VersionRequest(), timeout=1)
        return True

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return r.read().decode()


class Cluster:
    """etcd + apiserver in a fresh temporary directory (removed on close)."""

    def __init__(self, workdir: str | os.PathLike | None = None, apiserver_args: list[str] | None = None):
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="kctl-cluster-")
        self.workdir = pathlib.Path(workdir or self._tmp)
        self.etcd = Etcd(self.workdir)
        self.apiserver = ApiServer(self.etcd, self.workdir, extra_args=apiserver_args)

    def start(self) -> "Cluster":
        self.etcd.start()
        self.apiserver.start()
        return self

    def stop(self) -> None:
        try:
            self.apiserver.stop()
        finally:
            self.etcd.stop()
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------- minimal valid objects

def new_object(kind: str, name: str, namespace: str = "", *, labels: dict | None = None, **_):
    """A minimal valid object of `kind` (every kind kctl serves), for tests."""
    from machinery import kinds
    obj = kinds.new(kind)
    obj.metadata.name = name
    info = kinds.BY_KIND[kind]
    if info.namespaced:
        obj.metadata.namespace = namespace or "default"
    for k, v in (labels or {}).items():
        obj.metadata.labels[k] = v
    if kind == "Pod":
        obj.spec.containers.add(name="main", image="busybox:1.36", command=["sleep", "3600"])
    elif kind in ("ReplicaSet", "Deployment"):
        obj.spec.replicas = 1
        obj.spec.selector.match_labels["app"] = name
        obj.spec.template.metadata.labels["app"] = name
        obj.spec.template.spec.containers.add(name="main", image="busybox:1.36")
    elif kind == "Service":
        obj.spec.selector["app"] = name
        obj.spec.ports.add(name="http", port=80)
    elif kind == "Endpoints":
        subset = obj.subsets.add()
        subset.addresses.add(ip="10.244.0.5")
        subset.ports.add(name="http", port=8080, protocol="TCP")
    elif kind == "Event":
        obj.involved_object.kind = "Pod"
        obj.involved_object.name = "x"
        obj.involved_object.namespace = obj.metadata.namespace
        obj.reason, obj.message, obj.type = "Tested", "a test event", "Normal"
        obj.source.component = "tests"
    elif kind == "Lease":
        obj.spec.holder_identity = "tests"
        obj.spec.lease_duration_seconds = 15
    elif kind == "Node":
        obj.spec.pod_cidr = "10.244.1.0/24"
    return obj
