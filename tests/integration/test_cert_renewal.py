"""Certificate renewal with real processes (machinery/certreload.py,
machinery/pkirenew.py): a scheduler started with a short-lived client
certificate goes on binding pods after its kubeconfig is renewed, the old
certificate has expired and the apiserver restarted (every connection made
again, so the old certificate would be refused: checked too); the
apiserver serves a renewed serving certificate on new connections without
a restart; so does a node agent's logs/exec server after its node
certificate is renewed (nodeagent.main.serving_tls + nodeagent.server.serve,
real TLS, an agent with no pods)."""
import asyncio
import datetime
import ssl
import time

import grpc
import pytest

from harness import pki as harness_pki
from harness.control_plane import Scheduler
from harness.process import free_port
from machinery import errors, kubeconfig, pki, pkirenew
from machinery.client import Client
from scheduler import hollow

LIFETIME = 30.0     # seconds the scheduler's first certificate lives


async def until(pred, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached: {what}")


def short_lived_kubeconfig(path, ca, cn, seconds):
    cert, key = ca.issue(cn, days=seconds / 86400)
    doc = kubeconfig.document("kctl-test", cn, https_url="https://127.0.0.1:8080", grpc="127.0.0.1:6443",
                              ca_pem=pki.cert_pem(ca.cert), cert_pem=pki.cert_pem(cert), key_pem=pki.key_pem(key))
    path.write_bytes(kubeconfig.dump(doc))
    return cert, kubeconfig.select(path).credentials


async def test_scheduler_keeps_working_after_its_certificate_is_renewed_and_the_old_one_expires(
        client, apiserver, tmp_path):
    ca = harness_pki.session().store.ca
    path = tmp_path / "scheduler.conf"
    old, old_creds = short_lived_kubeconfig(path, ca, pki.SCHEDULER, LIFETIME)
    sched = Scheduler(tmp_path, apiserver.target, kubeconfig=path,
                      extra_args=["--credentials-reload-interval", "0.5"])
    await asyncio.to_thread(sched.start)
    try:
        await client.create(hollow.node("n1"))

        async def bound(name):
            return (await client.get("Pod", name, "default")).spec.node_name == "n1"
        await client.create(hollow.pod("before"))
        await until(lambda: bound("before"), "before bound with the first certificate")

        pkirenew.renew_kubeconfig(path, ca, datetime.timedelta(hours=1))

        async def rotated():
            return "changed: using its client certificate" in sched.log_path.read_text()
        await until(rotated, "the scheduler rotated to the renewed certificate")
        await asyncio.sleep(max(0.0, old.not_valid_after_utc.timestamp() - time.time()) + 1)
        await asyncio.to_thread(apiserver.restart)      # every connection is made again now

        async with Client(apiserver.target, credentials=old_creds, timeout=10) as stale:
            with pytest.raises((errors.Unauthorized, errors.Unavailable)):
                await stale.version()                   # the old certificate is refused now
        await client.create(hollow.pod("after"))
        await until(lambda: bound("after"), "after bound with the renewed certificate")
        assert sched.running
    finally:
        await asyncio.to_thread(sched.stop)


def served_serial(target: str, creds=None) -> int:
    """The serial of the certificate a new TLS connection to target is served (as `creds`, default the admin)."""
    import socket
    import tempfile
    creds = creds or harness_pki.session().credentials()
    ctx = ssl.create_default_context(cadata=creds.ca_pem.decode())
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as f:
        f.write(creds.cert_pem + b"\n" + creds.key_pem)
        f.flush()
        ctx.load_cert_chain(f.name)
    ctx.set_alpn_protocols(["h2"])
    host, _, port = target.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        return pki.load_cert(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode()).serial_number


HTTPS = f"127.0.0.1:{free_port()}"


@pytest.mark.apiserver_args("--http-listen", HTTPS)
async def test_apiserver_serves_its_renewed_certificate_on_new_connections(client, apiserver):
    cert_dir = apiserver.workdir / "pki"
    before = pki.load_cert((cert_dir / "apiserver.crt").read_bytes()).serial_number
    assert await asyncio.to_thread(served_serial, apiserver.target) == before
    assert await asyncio.to_thread(served_serial, HTTPS) == before
    renewed = pkirenew.renew_pair(cert_dir, "apiserver", harness_pki.session().store.ca, datetime.timedelta(days=1))
    assert await asyncio.to_thread(served_serial, apiserver.target) == renewed.serial_number   # gRPC: next handshake
    await client.version()                              # the open channel goes on
    async with Client(apiserver.target, timeout=10) as fresh:
        await fresh.version()                           # a new one verifies the renewed certificate

    async def https_renewed():                          # HTTPS: the reload task polls every 10 s
        return await asyncio.to_thread(served_serial, HTTPS) == renewed.serial_number
    await until(https_renewed, "the HTTPS port serves the renewed certificate", timeout=30)


class NoPods:
    """The agent state the NodeAgent service reads: no pods here."""
    node_name = "renew-n1"
    fake = True
    workers: dict = {}


async def test_node_agent_serves_its_renewed_certificate_on_new_connections():
    import argparse

    from machinery.pb import node_pb2, node_pb2_grpc
    from nodeagent.main import serving_tls
    from nodeagent.server import serve
    session = harness_pki.session()
    conf = session.node_kubeconfig(NoPods.node_name, "127.0.0.1")
    args = argparse.Namespace(kubeconfig=str(conf), tls_cert_file="", tls_private_key_file="", client_ca_file="")
    target = f"127.0.0.1:{free_port()}"
    server = asyncio.create_task(serve(NoPods(), target, serving_tls(args, None)))
    kubelet_client = session.kubelet_client()

    async def logs_answer() -> grpc.StatusCode:
        async with grpc.aio.secure_channel(target, kubelet_client.grpc()) as ch:
            call = node_pb2_grpc.NodeAgentStub(ch).Logs(node_pb2.LogsRequest(namespace="default", pod="p"))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in call:
                    pass
            return err.value.code()
    try:
        await until(lambda: asyncio.to_thread(lambda: _serves(target, kubelet_client)), "the agent serves")
        first = await asyncio.to_thread(served_serial, target, kubelet_client)
        assert first == pki.load_cert(kubeconfig.select(conf).credentials.cert_pem).serial_number
        assert await logs_answer() == grpc.StatusCode.NOT_FOUND          # the apiserver's certificate gets in
        _, renewed = pkirenew.renew(session.store.dir, f"nodes/{NoPods.node_name}.conf", datetime.timedelta(days=1))
        assert await asyncio.to_thread(served_serial, target, kubelet_client) == renewed.serial_number != first
        assert await logs_answer() == grpc.StatusCode.NOT_FOUND          # verified against the CA and its SAN
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def _serves(target, creds) -> bool:
    try:
        served_serial(target, creds)
        return True
    except OSError:
        return False
