"""The control plane as real processes: etcd, the apiserver, and optionally
the scheduler and the controller manager, on free ports, stopped by PID.

    with ControlPlane(scheduler=True) as cp:        # a fresh temporary directory
        ... Client(cp.apiserver.target) ...

    with Etcd(tmpdir) as etcd, ApiServer(etcd, tmpdir) as api: ...
    with EtcdCluster(tmpdir, 3) as etcd, ApiServer(etcd, tmpdir) as api: ...

Every apiserver serves TLS and authenticates its clients (harness.pki):
by default with a serving certificate of the harness's one CA, so the
admin credentials of `harness.pki.session()` (`ApiServer.credentials`,
`ApiServer.kubeconfig`) work against it; `own_pki=True` starts it with
zero configuration instead (it makes its own CA in workdir/pki and the
clients use its admin.conf). The scheduler and controller manager connect
with their own certificates (--kubeconfig).

Everything binds 127.0.0.1, except that the apiserver can listen on another
local address (`host=`): node agents in network namespaces cannot reach the
host's loopback (harness.nodes). etcd itself — `Etcd`, `EtcdCluster` and
the one etcd command line `etcd_argv`/`etcd_cluster_argv`, shared with the
lab — lives in harness.etcd and is re-exported here. An ApiServer takes an
Etcd, an EtcdCluster (it gets every member in --etcd-servers) or a URL list.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile
import urllib.request

from harness import pki as harness_pki
from harness.etcd import (ETCD_BIN, Etcd, EtcdCluster, etcd_argv, etcd_cluster_argv,  # noqa: F401 - re-exported
                          http_get)
from harness.process import Process, free_port

class ApiServer(Process):
    """`python -m apiserver.main` against an Etcd (or any etcd URL), listening
    on `host` (127.0.0.1); the gRPC and metrics ports stay the same across
    restart(). Metrics are always on 127.0.0.1. Without `service_accounts` the
    ServiceAccount admission plugin is off: it refuses pods until a controller
    manager has made the namespace's `default` account."""

    def __init__(self, etcd: Etcd | EtcdCluster | str, workdir, *, port: int | None = None, metrics_port: int | None = None,
                 extra_args: list[str] | None = None, host: str = "127.0.0.1", own_pki: bool = False,
                 service_accounts: bool = False):
        super().__init__("apiserver", workdir)
        self.etcd_url = etcd if isinstance(etcd, str) else etcd.url
        self.host = host
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.extra_args = list(extra_args or [])
        if not service_accounts:
            self.extra_args.insert(0, "--disable-admission-plugins=ServiceAccount")
        self.own_pki = own_pki
        self.cert_dir = self.workdir / "pki"
        self._tls_args: list[str] | None = None       # made at the first start (the workdir may not exist yet)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str | None:
        """https://HOST:PORT of the HTTP API when --http-listen is among the extra args."""
        args = self.extra_args
        for i, a in enumerate(args[:-1]):
            if a == "--http-listen" and args[i + 1] != "off":
                return f"https://{args[i + 1]}"
        return None

    def component_kubeconfig(self, file: str) -> pathlib.Path:
        """The kubeconfig of a component identity (admin.conf, scheduler.conf,
        controller-manager.conf, dns.conf) for this apiserver's CA; its server
        is a placeholder: components get --apiserver too."""
        return self.cert_dir / file if self.own_pki else harness_pki.session().kubeconfig_for(file)

    @property
    def credentials(self):
        """Admin credentials (machinery.kubeconfig.Credentials) for this apiserver."""
        from machinery import kubeconfig
        return kubeconfig.select(self.component_kubeconfig("admin.conf")).credentials

    @property
    def kubeconfig(self) -> pathlib.Path:
        """An admin kubeconfig for this apiserver (kctl's gRPC address and kubectl's URL), written once."""
        if self.own_pki:
            return self.cert_dir / "admin.conf"        # written by the apiserver itself
        path = self.workdir / "admin.kubeconfig"
        if not path.exists():
            harness_pki.session().write_kubeconfig(path, grpc=self.target,
                                                   https_url=self.http_url or f"https://{self.host}:8080")
        return path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "apiserver.main", "--etcd-servers", self.etcd_url,
                "--listen", self.target, "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                *self.tls_args(), *self.extra_args]

    def tls_args(self) -> list[str]:
        """--cert-dir alone (own_pki: zero configuration), else a serving certificate of the
        harness's CA for this host, issued once."""
        if self.own_pki:
            return ["--cert-dir", str(self.cert_dir)]
        if self._tls_args is None:
            self._tls_args = harness_pki.session().serving_args(self.workdir, self.host)
        return self._tls_args

    def channel(self, options=None):
        """A blocking gRPC channel to this apiserver with the admin credentials."""
        import grpc
        return grpc.secure_channel(self.target, self.credentials.grpc(), options=options)

    def aio_channel(self, options=None):
        """The same as an asyncio channel."""
        import grpc
        return grpc.aio.secure_channel(self.target, self.credentials.grpc(), options=options)

    def ssl_context(self):
        """An HTTPS client context with the admin's certificate (cached)."""
        if getattr(self, "_ssl", None) is None:
            self._ssl = self.credentials.ssl_context()
        return self._ssl

    def urlopen(self, req, timeout: float = 10):
        """urllib.request.urlopen of the HTTP API (an https:// URL or Request) as the admin."""
        return urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context())  # noqa: S310 - local

    def ready(self) -> bool:
        from machinery.pb import api_pb2, api_pb2_grpc
        if self.own_pki and not (self.cert_dir / "admin.conf").exists():
            return False
        with self.channel() as ch:
            api_pb2_grpc.ApiStub(ch).Version(api_pb2.VersionRequest(), timeout=1)
        return True

    def metrics_text(self) -> str:
        return http_get(self.metrics_url)


class Component(Process):
    """`python -m <module>.main --kubeconfig FILE --apiserver TARGET` with a
    metrics listener on 127.0.0.1; ready once its metrics answer. The
    kubeconfig carries the component's own certificate (`identity`, a
    kubeadm file name); without one, the default kubeconfig's."""

    module = ""
    identity = ""

    def __init__(self, workdir, target: str, *, name: str | None = None, metrics_port: int | None = None,
                 extra_args: list[str] | None = None, kubeconfig: str | os.PathLike | None = None):
        super().__init__(name or self.module, workdir)
        self.target = target
        self.kubeconfig = kubeconfig or (harness_pki.session().kubeconfig_for(self.identity)
                                         if self.identity else None)
        self.metrics_port = metrics_port or free_port()
        self.extra_args = list(extra_args or [])

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        auth = ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []
        return [sys.executable, "-m", f"{self.module}.main", *auth, "--apiserver", self.target,
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *self.extra_args]

    def ready(self) -> bool:
        return bool(self.metrics_text())

    def metrics_text(self) -> str:
        return http_get(self.metrics_url, 1)


class Scheduler(Component):
    module = "scheduler"
    identity = "scheduler.conf"


class ControllerManager(Component):
    module = "controllers"
    identity = "controller-manager.conf"


class ControlPlane:
    """etcd + apiserver (+ scheduler, + controller manager if asked) in
    `workdir`, or in a fresh temporary directory removed on stop()."""

    def __init__(self, workdir: str | os.PathLike | None = None, apiserver_args: list[str] | None = None, *,
                 host: str = "127.0.0.1", scheduler: bool = False, controller_manager: bool = False,
                 scheduler_args: list[str] | None = None, controller_args: list[str] | None = None,
                 own_pki: bool = False, service_accounts: bool = False):
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="kctl-cluster-")
        self.workdir = pathlib.Path(workdir or self._tmp)
        self.etcd = Etcd(self.workdir)
        self.apiserver = api = ApiServer(self.etcd, self.workdir, extra_args=apiserver_args, host=host,
                                         own_pki=own_pki, service_accounts=service_accounts)
        target = api.target
        self.scheduler = Scheduler(self.workdir, target, extra_args=scheduler_args,
                                   kubeconfig=api.component_kubeconfig("scheduler.conf")) if scheduler else None
        self.controller_manager = (ControllerManager(self.workdir, target, extra_args=controller_args,
                                                     kubeconfig=api.component_kubeconfig("controller-manager.conf"))
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

