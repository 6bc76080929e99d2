"""kctl-dns flags, and the whole component (informers + feed + server) on a
FakeClient, asked over UDP."""
from __future__ import annotations

import asyncio
import contextlib

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from clusterdns import main
from clusterdns.metrics import Metrics
from machinery.fakeclient import FakeClient
from machinery.pb import core_pb2, meta_pb2


def test_defaults():
    args = main.parse_args([])
    assert (args.listen, args.cluster_domain, args.ttl, args.pods, args.upstream, args.dns_service) == \
        (("0.0.0.0", 53), "cluster.local", 5, "verified", [], ("kube-system", "kube-dns"))
    assert args.advertise_address == []


def test_flags():
    args = main.parse_args(["--listen", "10.0.0.2:5353", "--cluster-domain", "Kctl.Test.", "--ttl", "30",
                            "--upstream", "192.0.2.1", "--upstream", "[2001:db8::1]:5353", "--pods", "insecure"])
    assert args.listen == ("10.0.0.2", 5353) and args.cluster_domain == "kctl.test" and args.ttl == 30
    assert args.upstream == [("192.0.2.1", 53), ("2001:db8::1", 5353)]
    assert [str(a) for a in args.advertise_address] == ["10.0.0.2"]     # listening on one address: that one


@pytest.mark.parametrize("argv,message", [
    (["--listen", "localhost:53"], "argument --listen: invalid value 'localhost:53': must be IP:PORT"),
    (["--listen", "127.0.0.1"], "argument --listen: invalid value '127.0.0.1': must be IP:PORT"),
    (["--upstream", "127.0.0.1:99999"], "argument --upstream: invalid value '127.0.0.1:99999': must be IP[:PORT]"),
    (["--ttl", "3601"], "argument --ttl: invalid value '3601': must be between 0 and 3600 seconds"),
    (["--cluster-domain", "a_b"], "argument --cluster-domain: invalid value 'a_b': a lowercase RFC 1123"),
    (["--dns-service", "kube-dns"], "argument --dns-service: invalid value 'kube-dns': must be NAMESPACE/NAME"),
    (["--pods", "maybe"], "argument --pods: invalid choice: 'maybe'"),
    (["--cluster-ip", "10.96.0"], "argument --cluster-ip: invalid value '10.96.0': must be an IP address or ''"),
    (["--register-interval", "0"], "argument --register-interval: invalid value '0': must be a positive number"),
    (["--lease-ttl", "10"], "argument --lease-ttl: invalid value '10': must be more than --register-interval (10 s)"),
    (["--lease-ttl", "3", "--register-interval", "0.5"], None),
])
def test_bad_flags_name_the_flag_and_the_rule(argv, message, capsys):
    if message is None:                          # the good neighbour of a bad value
        main.parse_args(argv)
        return
    with pytest.raises(SystemExit):
        main.parse_args(argv)
    assert message in capsys.readouterr().err


def test_registration_needs_an_address():
    """A specific --listen (or --advertise-address) registers behind the Service; loopback/any does not."""
    assert main.parse_args([]).cluster_ip == "10.96.0.10"
    tasks, _ = main.build(FakeClient(), main.parse_args(["--listen", "127.0.0.1:0"]), Metrics())
    assert "register" not in tasks
    for coro in tasks.values():
        coro.close()
    args = main.parse_args(["--listen", "10.0.0.2:53", "--cluster-ip", "", "--metrics-listen", "10.0.0.2:9153"])
    tasks, _ = main.build(FakeClient(), args, Metrics())
    reg = tasks["register"].cr_frame.f_locals["self"]
    assert (reg.address, reg.cluster_ip, reg.ports) == \
        ("10.0.0.2", "", [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")])
    assert (reg.interval, reg.endpoints.ttl, reg.endpoints.lease_name) == (10.0, 15, "kctl-dns-10-0-0-2")
    for coro in tasks.values():
        coro.close()


async def test_the_component_answers_from_its_informers():
    client = FakeClient()
    await client.create(core_pb2.Namespace(metadata=meta_pb2.ObjectMeta(name="default")))
    await client.create(core_pb2.Service(metadata=meta_pb2.ObjectMeta(name="web", namespace="default"),
                                         spec=core_pb2.ServiceSpec(cluster_ip="10.96.0.20", cluster_ips=["10.96.0.20"],
                                                                   ports=[core_pb2.ServicePort(port=80)])))
    args = main.parse_args(["--listen", "127.0.0.1:0"])
    metrics = Metrics()
    tasks, server = main.build(client, args, metrics)
    running = asyncio.create_task(main.run_tasks(tasks, handle_signals=False))
    try:
        async with asyncio.timeout(10):
            while not server.port or not server.resolver.index.synced:
                await asyncio.sleep(0.01)
        q = dns.message.make_query("web.default.svc.cluster.local.", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", timeout=5, port=server.port)
        assert [rd.to_text() for rr in r.answer for rd in rr] == ["10.96.0.20"]
        q = dns.message.make_query("example.com.", "A")
        assert (await dns.asyncquery.udp(q, "127.0.0.1", timeout=5, port=server.port)).rcode() == dns.rcode.REFUSED
        assert metrics.value("kctl_dns_index_objects", kind="services") == 1
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
