"""The apiserver on a real 3-member etcd cluster (harness.etcd.EtcdCluster):
`--etcd-servers URL,URL,URL` fails over by itself (apiserver.etcdendpoints).

- Kill the member the apiserver uses, which also leads, under a write load
  of Pod and ConfigMap creates from several tasks; later kill the new
  leader too: writes continue, every acknowledged create is there at the end
  (each read back), and a watch through the apiserver sees every
  acknowledged create exactly once across both failovers (the watch cache
  re-opened its etcd watches on another member from its last revision).
- The apiserver's member loses its quorum (the other two stop): calls fail
  cleanly as Unavailable ("no leader": every call requires a leader) within
  a bounded time, and all is well again once the members are back.
- Three apiservers, each listing its own member first, on one cluster: the
  `kubernetes` Endpoints list all three, each at its own address.
- etcd over TLS with client certificates: one set of --etcd-* flags serves
  every member, each checked under its own address, across failovers.
- The harness itself: a member killed and started again rejoins.
"""
from __future__ import annotations

import asyncio
import collections

import pytest

from harness.etcd import EtcdCluster
from harness.process import free_port
from machinery import errors, kubeconfig, pki
from machinery.client import Client
from tests.cluster import ApiServer, new_object
from tests.integration.test_dns_services import endpoints, eventually

HANG_GUARD = 120
KINDS = ("ConfigMap", "Pod")


@pytest.fixture
def cluster(tmp_path):
    with EtcdCluster(tmp_path / "etcd", 3) as c:
        yield c


def servers(cluster: EtcdCluster, first: int) -> str:
    """--etcd-servers with member `first` first (the one the apiserver starts on)."""
    order = [first] + [i for i in range(len(cluster)) if i != first]
    return ",".join(cluster[i].url for i in order)


class Load:
    """`tasks` tasks creating Pods and ConfigMaps as fast as they are acknowledged."""

    def __init__(self, client: Client, tasks: int = 4):
        self.client, self.tasks = client, tasks
        self.acked: dict[str, set[str]] = {k: set() for k in KINDS}
        self.failures: list[str] = []
        self.stopping = False
        self._runners: list[asyncio.Task] = []

    def start(self) -> None:
        self._runners = [asyncio.create_task(self._run(t)) for t in range(self.tasks)]

    async def _run(self, t: int) -> None:
        i = 0
        while not self.stopping:
            kind = KINDS[i % 2]
            name = f"w{t}-{i}"
            i += 1
            try:
                await self.client.create(new_object(kind, name))
                self.acked[kind].add(name)
            except errors.AlreadyExists:
                self.failures.append(f"{kind} {name}: exists (a retried write?)")
            except errors.Unavailable as exc:    # not acknowledged: it may or may not exist
                self.failures.append(f"{kind} {name}: {exc.message}")
                await asyncio.sleep(0.05)

    def count(self) -> int:
        return sum(len(v) for v in self.acked.values())

    async def more(self, n: int) -> None:
        """Wait until `n` more creates have been acknowledged."""
        target = self.count() + n
        while self.count() < target:
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*self._runners)


async def collect(client: Client, kind: str, rv: str, seen: collections.Counter) -> None:
    async for ev in client.watch(kind, "default", resource_version=rv):
        assert ev.type == "ADDED", (kind, ev.type, ev.object.metadata.name)
        seen[ev.object.metadata.name] += 1


async def test_writes_and_watches_survive_killing_the_members_in_use(cluster, tmp_path):
    first = cluster.wait_leader()                  # the apiserver starts on the leader: kill both at once
    with ApiServer(servers(cluster, first), tmp_path / "api") as api:
        async with asyncio.timeout(HANG_GUARD), Client(api.target, timeout=30) as client:
            _, rv = await client.list("ConfigMap", "default")
            seen = {k: collections.Counter() for k in KINDS}
            watches = [asyncio.create_task(collect(client, k, rv, seen[k])) for k in KINDS]
            load = Load(client)
            load.start()
            await load.more(40)
            cluster.kill(first)                    # the member in use, and the leader
            await load.more(60)                    # writes continue on another member
            second = cluster.wait_leader()
            cluster.start(first)                   # it rejoins with its data
            await load.more(20)
            cluster.kill(second)                   # the new leader, maybe not the member in use
            await load.more(60)
            await load.stop()

            for kind in KINDS:                     # every acknowledged create is there
                for name in sorted(load.acked[kind]):
                    assert (await client.get(kind, name, "default")).metadata.name == name
            while any(not load.acked[k] <= set(seen[k]) for k in KINDS):
                for w in watches:
                    if w.done():
                        w.result()                 # a watch that ended: its error
                await asyncio.sleep(0.05)
            for w in watches:
                w.cancel()
            for kind in KINDS:                     # exactly once (a write that failed may still show, once)
                assert [n for n, c in seen[kind].items() if c != 1] == [], kind
            assert not [f for f in load.failures if "exists" in f]
        log = api.log_path.read_text()
        assert "Traceback" not in log
        assert f"etcd member {cluster[first].url.removeprefix('http://')} failed" in log   # and where it went


async def test_a_member_cut_from_the_quorum_fails_cleanly_and_recovers(cluster, tmp_path):
    cluster.wait_leader()
    with ApiServer(servers(cluster, 0), tmp_path / "api", extra_args=["--etcd-timeout", "1"]) as api:
        async with asyncio.timeout(HANG_GUARD), Client(api.target, timeout=30) as client:
            before = await client.create(new_object("ConfigMap", "before"))
            seen: collections.Counter = collections.Counter()
            watch = asyncio.create_task(collect(client, "ConfigMap", before.metadata.resource_version, seen))
            cluster.kill(1)
            cluster.kill(2)                        # member 0 is alive, without a quorum
            for i in range(3):
                with pytest.raises(errors.Unavailable) as exc:
                    await client.create(new_object("ConfigMap", f"during-{i}"))
                assert exc.value.message.startswith("etcd unavailable: ")
            cluster.start(1)
            cluster.start(2)
            cluster.wait_leader()

            async def create_after():
                while True:
                    try:
                        return await client.create(new_object("ConfigMap", "after"))
                    except errors.Unavailable:
                        await asyncio.sleep(0.1)
            await create_after()
            while not seen["after"]:
                assert not watch.done(), watch.result()
                await asyncio.sleep(0.05)
            watch.cancel()
            assert seen["after"] == 1
        log = api.log_path.read_text()
        assert "no leader" in log                  # member 0 refused (hasleader) rather than hang
        assert "Traceback" not in log


async def test_three_apiservers_on_one_cluster_advertise_their_own_addresses(cluster, tmp_path):
    port, https = free_port(), free_port()         # the same ports on three loopback addresses
    apis = [ApiServer(servers(cluster, i), tmp_path / f"api{i}", host=f"127.0.0.{2 + i}", port=port,
                      extra_args=["--http-listen", f"127.0.0.{2 + i}:{https}"]) for i in range(3)]
    try:
        for api in apis:
            api.start()
        async with asyncio.timeout(HANG_GUARD), Client(apis[0].target, timeout=30) as client:
            async def eps():
                return endpoints(await client.get("Endpoints", "kubernetes", "default"))
            ports = (("grpc", port, "TCP"), ("https", https, "TCP"))
            await eventually(eps, [(f"127.0.0.{2 + i}", ports) for i in range(3)], timeout=30)
            apis[2].stop()                         # a clean stop takes it out at once
            await eventually(eps, [(f"127.0.0.{2 + i}", ports) for i in range(2)], timeout=10)
    finally:
        for api in apis:
            api.stop()


async def test_tls_to_every_member(tmp_path):
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    store = pki.PKI(tmp_path / "pki")
    store.etcd(ips=hosts)
    d = store.dir
    serving = ["--cert-file", str(d / "etcd" / "server.crt"), "--key-file", str(d / "etcd" / "server.key"),
               "--client-cert-auth", "--trusted-ca-file", str(d / "etcd" / "ca.crt")]
    checks = kubeconfig.Credentials((d / "etcd" / "ca.crt").read_bytes(),
                                    (d / "apiserver-etcd-client.crt").read_bytes(),
                                    (d / "apiserver-etcd-client.key").read_bytes()).ssl_context()
    with EtcdCluster(tmp_path / "etcd", 3, hosts=hosts, tls=(serving, checks)) as cluster:
        assert cluster.urls.count("https://") == 3
        flags = ["--etcd-cafile", str(d / "etcd" / "ca.crt"), "--etcd-certfile", str(d / "apiserver-etcd-client.crt"),
                 "--etcd-keyfile", str(d / "apiserver-etcd-client.key")]
        with ApiServer(cluster, tmp_path / "api", extra_args=flags) as api:
            async with asyncio.timeout(HANG_GUARD), Client(api.target, timeout=30) as client:
                async def create(name):
                    while True:            # a create in flight when its member dies fails: try again
                        try:
                            return await client.create(new_object("ConfigMap", name))
                        except errors.Unavailable:
                            await asyncio.sleep(0.1)
                await create("on-0")
                cluster.kill(0)
                await create("on-1")
                cluster.start(0)
                cluster.kill(1)
                await create("on-2")
                names = sorted(c.metadata.name for c in (await client.list("ConfigMap", "default"))[0])
                assert names == ["on-0", "on-1", "on-2"]
            log = api.log_path.read_text()
            assert f"etcd member {hosts[1]}:{cluster[1].client_port} failed" in log     # it went 0 -> 1 -> 2
            assert "Traceback" not in log


def test_the_harness_cluster_kills_and_restarts_members(cluster):
    lead = cluster.wait_leader()
    rev = cluster.put_raw("/ha/a", b"1")
    cluster.kill(lead)
    assert cluster.wait_leader(not_=lead) != lead
    assert cluster.put_raw("/ha/b", b"2") == rev + 1      # the two left keep the quorum
    cluster.start(lead)
    assert cluster[lead].get_raw("/ha/b") == b"2"          # it rejoined and caught up
    assert cluster.revision() == rev + 1
    assert cluster.urls == ",".join(m.url for m in cluster.members)
