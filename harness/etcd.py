"""etcd as real processes for checks and for the lab: one member (`Etcd`) or
an N-member cluster (`EtcdCluster`), on free ports, stopped by PID.

    with Etcd(tmpdir) as etcd: ... etcd.url ... etcd.revision()
    with EtcdCluster(tmpdir, 3) as cluster:
        ApiServer(cluster, tmpdir)              # --etcd-servers URL,URL,URL
        i = cluster.leader(); cluster.kill(i); cluster.wait_leader(); cluster.start(i)

The command line is built in one place: `etcd_cluster_argv` (a member of an
N-member cluster: its client and peer URLs, `--initial-cluster` of all
members) and `etcd_argv` (a one-member cluster of itself on 127.0.0.1, what
the single-control-plane lab runs). The lab runs the same argv in each
control-plane machine's network namespace.

Checks talk to etcd's JSON gateway (plain HTTP on the client port, etcd's
v3 API as JSON) for the few things they need directly — the store revision,
compaction, raw keys, a member's status and who leads — so they depend on no
etcd client library. A cluster sends those to the first member that is
running and not paused.

A cluster is started by spawning every member first and waiting for their
health afterwards: a member reports healthy only once a quorum has elected
a leader, so members started one by one would each wait for the next.
Each cluster has its own random `--initial-cluster-token`, so members of
two clusters that happen to reuse ports never join each other.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import time
import urllib.request
from typing import Mapping

from harness.process import Process, free_port

ETCD_BIN = os.environ.get("KCTL_ETCD", shutil.which("etcd") or "/usr/bin/etcd")


def initial_cluster(peers: Mapping[str, str]) -> str:
    """`--initial-cluster` from {member name: peer URL}: `a=http://h:2380,b=...`."""
    return ",".join(f"{name}={url}" for name, url in peers.items())


def etcd_cluster_argv(name: str, data_dir: str | os.PathLike, client_url: str, peer_url: str,
                      peers: Mapping[str, str], *, state: str = "new", token: str = "kctl-etcd",
                      etcd_bin: str = ETCD_BIN) -> list[str]:
    """One member `name` of the cluster `peers` ({member name: peer URL}, this
    member included), serving clients on `client_url` and peers on `peer_url`.
    `state` is etcd's --initial-cluster-state ("new", or "existing" for a
    member added later); it and `peers` only matter while the data dir is empty."""
    if peers.get(name) != peer_url:
        raise ValueError(f"etcd member {name!r}: its peer URL {peer_url} is not in the initial cluster "
                         f"{initial_cluster(peers)}")
    return [etcd_bin, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", initial_cluster(peers), "--initial-cluster-state", state,
            "--initial-cluster-token", token]


def etcd_argv(name: str, data_dir: str | os.PathLike, client_port: int, peer_port: int,
              etcd_bin: str = ETCD_BIN) -> list[str]:
    """A one-member etcd on 127.0.0.1: client and peer URLs, a new cluster of itself."""
    url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return etcd_cluster_argv(name, data_dir, url, peer, {name: peer}, etcd_bin=etcd_bin)


def http_get(url: str, timeout: float = 5, context=None) -> str:
    with urllib.request.urlopen(url, timeout=timeout, context=context) as r:  # noqa: S310 - a local address
        return r.read().decode()


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


class Gateway:
    """etcd's JSON gateway (the v3 API over HTTP) at the first URL of
    `gateway_urls()` that answers (`ssl_context`: for https:// members)."""

    ssl_context = None

    def gateway_urls(self) -> list[str]:
        raise NotImplementedError

    def _post(self, path: str, body: dict, timeout: float = 10) -> dict:
        failure: OSError | None = None
        for url in self.gateway_urls():
            req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout,  # noqa: S310 - a local address
                                            context=self.ssl_context) as r:
                    return json.load(r)
            except OSError as exc:       # refused, reset, timed out, HTTP 5xx: the next member
                failure = exc
        raise failure or OSError("etcd: no member is running")

    def revision(self) -> int:
        """etcd's current store revision, read directly from etcd."""
        resp = self._post("/v3/kv/range", {"key": _b64(b"/"), "count_only": True})
        return int(resp["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        rev = revision or self.revision()
        self._post("/v3/kv/compaction", {"revision": rev, "physical": True})
        return rev

    def get_raw(self, key: str | bytes) -> bytes | None:
        kvs = self._post("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def put_raw(self, key: str | bytes, value: bytes) -> int:
        """Write a key behind the apiserver's back; returns the new revision."""
        resp = self._post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(resp["header"]["revision"])

    def keys(self, prefix: str) -> list[str]:
        p = prefix.encode()
        end = p[:-1] + bytes([p[-1] + 1])
        resp = self._post("/v3/kv/range", {"key": _b64(p), "range_end": _b64(end), "keys_only": True})
        return [base64.b64decode(kv["key"]).decode() for kv in resp.get("kvs") or []]


class Etcd(Process, Gateway):
    """One etcd member, data in workdir/<process name>-data. Alone (the
    default) it is a one-member cluster on 127.0.0.1; with `peers` it is the
    member `member` of that cluster. The ports stay the same across restart().
    `tls`: (the flags of etcd's serving certificate, an ssl.SSLContext the
    checks use) to serve clients on https://; peers stay plain http."""

    def __init__(self, workdir, *, client_port: int | None = None, peer_port: int | None = None,
                 extra_args: list[str] | None = None, host: str = "127.0.0.1", member: str = "kctl-test",
                 process_name: str = "etcd", peers: Mapping[str, str] | None = None, token: str = "kctl-etcd",
                 tls: tuple[list[str], object] | None = None):
        super().__init__(process_name, workdir)
        self.host, self.member, self.token = host, member, token
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.peers = dict(peers) if peers else {member: self.peer_url}
        self.data_dir = self.workdir / f"{process_name}-data"
        self.extra_args = list(extra_args or []) + (list(tls[0]) if tls else [])
        self.scheme, self.ssl_context = ("https", tls[1]) if tls else ("http", None)
        self.paused = False

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def gateway_urls(self) -> list[str]:
        return [self.url]

    def command(self) -> list[str]:
        return [*etcd_cluster_argv(self.member, self.data_dir, self.url, self.peer_url, self.peers,
                                   token=self.token),
                "--log-level", "warn", "--logger", "zap", *self.extra_args]

    def ready(self) -> bool:
        return json.loads(http_get(self.url + "/health", 1, self.ssl_context)).get("health") == "true"

    def status(self, timeout: float = 2) -> dict:
        """This member's /v3/maintenance/status: `header.member_id`, `leader`
        (the leading member's id), `raftTerm`, `version` (ids are strings)."""
        return self._post("/v3/maintenance/status", {}, timeout=timeout)

    def send_signal(self, sig: int) -> None:
        if self.running:
            os.kill(self.pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the member is alive (its sockets accept) but answers nothing."""
        self.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if self.paused:
            self.resume()
        super().stop(timeout, sig)

    def kill(self) -> None:
        super().kill()
        self.paused = False


class EtcdCluster(Gateway):
    """`size` etcd members `etcd-0`.. in `workdir`, each on its own client and
    peer port of its host (`hosts`, default 127.0.0.1 for all; any local
    address works, e.g. 127.0.0.2). Members are indexed from 0 in every
    method. `url`/`urls` is the comma list for --etcd-servers. `tls` as Etcd's."""

    def __init__(self, workdir, size: int = 3, *, hosts: list[str] | None = None,
                 extra_args: list[str] | None = None, tls: tuple[list[str], object] | None = None):
        hosts = list(hosts or ["127.0.0.1"] * size)
        if len(hosts) != size:
            raise ValueError(f"EtcdCluster: {len(hosts)} hosts for {size} members")
        ports = [(free_port(), free_port()) for _ in hosts]
        names = [f"etcd-{i}" for i in range(size)]
        peers = {n: f"http://{h}:{p}" for n, h, (_, p) in zip(names, hosts, ports)}
        token = "kctl-" + secrets.token_hex(6)
        self.members = [Etcd(workdir, client_port=c, peer_port=p, host=h, member=n, process_name=n,
                             peers=peers, token=token, extra_args=extra_args, tls=tls)
                        for n, h, (c, p) in zip(names, hosts, ports)]
        self.ssl_context = tls[1] if tls else None

    @property
    def urls(self) -> str:
        return ",".join(m.url for m in self.members)

    url = urls

    def gateway_urls(self) -> list[str]:
        return [m.url for m in self.members if m.running and not m.paused]

    def __getitem__(self, i: int) -> Etcd:
        return self.members[i]

    def __len__(self) -> int:
        return len(self.members)

    # ------------------------------------------------------ processes by PID
    def start(self, i: int | None = None, timeout: float = 30.0) -> "EtcdCluster":
        """Member i (it rejoins with its data), or every member not running."""
        if i is not None:
            self.members[i].start(timeout)
            return self
        try:
            waiting = [m for m in self.members if not m.running]
            for m in waiting:
                m.spawn()
            for m in waiting:
                m.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, i: int | None = None) -> None:
        """SIGTERM (then SIGKILL) to member i, or to every member whatever fails."""
        for m in ([self.members[i]] if i is not None else self.members):
            try:
                m.stop()
            except Exception:  # noqa: BLE001 - stop the others anyway
                m.kill()

    def kill(self, i: int) -> None:
        """SIGKILL to member i: no clean shutdown, no leadership transfer."""
        self.members[i].kill()

    def pause(self, i: int) -> None:
        self.members[i].pause()

    def resume(self, i: int) -> None:
        self.members[i].resume()

    def running(self) -> list[int]:
        return [i for i, m in enumerate(self.members) if m.running and not m.paused]

    # ------------------------------------------------------------ raft state
    def leader(self) -> int | None:
        """The index of the member that leads, as the running members see it
        (None when none of them knows a leader, or the one they name is not
        one of ours)."""
        ids: dict[str, int] = {}
        leaders = set()
        for i in self.running():
            try:
                st = self.members[i].status()
            except OSError:
                continue
            ids[st["header"]["member_id"]] = i
            if st.get("leader") and st["leader"] != "0":
                leaders.add(st["leader"])
        found = [ids[lead] for lead in leaders if lead in ids]
        return found[0] if len(found) == 1 else None

    def wait_leader(self, timeout: float = 30.0, not_: int | None = None) -> int:
        """Wait until the running members agree on a leader (other than member `not_`)."""
        deadline = time.monotonic() + timeout
        while True:
            lead = self.leader()
            if lead is not None and lead != not_:
                return lead
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd cluster: no leader after {timeout}s (running {self.running()})")
            time.sleep(0.1)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
