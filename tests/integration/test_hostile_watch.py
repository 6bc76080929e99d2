"""Issue 19's acceptance: a watcher that stops reading is disconnected and
the apiserver's memory does not grow with what it would have been sent.

One gRPC watcher and one HTTP watcher open a ConfigMap watch and never
read; 150 updates of a 400 KB ConfigMap (60 MB of events) go by. The
apiserver's RSS (/proc/<pid>/status) grows by far less than that, both
watchers are dropped after --watch-send-timeout, the gRPC one with
RESOURCE_EXHAUSTED (429 TooManyRequests) once it reads again, and the
apiserver keeps serving.
"""
from __future__ import annotations

import socket
import ssl
import time

import grpc
import pytest
from google.protobuf import any_pb2

from harness.control_plane import ApiServer
from harness.process import free_port
from machinery import kinds
from machinery.pb import api_pb2, api_pb2_grpc

VALUE = 400 * 1024
UPDATES = 150


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def configmap(i: int):
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = "big", "default"
    cm.data["v"] = f"{i:08d}" + "x" * VALUE
    a = any_pb2.Any()
    a.Pack(cm)
    return a


@pytest.fixture
def api(etcd, tmp_path):
    port = free_port()
    server = ApiServer(etcd, tmp_path, extra_args=["--watch-send-timeout", "3", "--watch-cache-size", "20",
                                                   "--http-listen", f"127.0.0.1:{port}"])
    with server:
        server.http_port = port
        yield server


def test_a_watcher_that_stops_reading_is_dropped_without_memory_growth(api):
    ch = api.channel(options=[("grpc.http2.bdp_probe", 0)])
    stub = api_pb2_grpc.ApiStub(ch)
    stub.Create(api_pb2.CreateRequest(object=configmap(0)), timeout=30)
    for i in range(30):                       # fill the ring once: its size is not the watcher's doing
        stub.Update(api_pb2.UpdateRequest(object=configmap(i)), timeout=30)
    before = rss_mb(api.pid)

    stalled = stub.Watch(api_pb2.WatchRequest(kind="ConfigMap", namespace="default"))   # never read (yet)
    raw = api.ssl_context().wrap_socket(socket.create_connection(("127.0.0.1", api.http_port)),
                                        server_hostname="127.0.0.1")
    raw.sendall(b"GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
    t0 = time.monotonic()
    peak = before
    for i in range(UPDATES):
        stub.Update(api_pb2.UpdateRequest(object=configmap(1000 + i)), timeout=30)
        peak = max(peak, rss_mb(api.pid))
    print(f"\napiserver RSS {before:.0f} MB before, peak {peak:.0f} MB during {UPDATES} updates of "
          f"{VALUE // 1024} KB ({UPDATES * VALUE // 2**20} MB of events) in {time.monotonic() - t0:.1f}s")
    assert peak - before < 40

    time.sleep(5)                             # past --watch-send-timeout
    log = api.log_tail(400)
    assert "watch of ConfigMap closed: the client took no event for 3s" in log, log[-2000:]
    assert "watch of configmaps closed: the client took no event for 3s" in log, log[-2000:]

    t1 = time.monotonic()
    with pytest.raises(grpc.RpcError) as exc:
        for _ in stalled:                     # what was in flight, then the end
            pass
    print(f"gRPC watcher: ended {time.monotonic() - t1:.1f}s after it read again")
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "took no event" in exc.value.details()

    t1 = time.monotonic()
    raw.settimeout(10)
    got = 0
    try:
        while chunk := raw.recv(1 << 20):
            got += len(chunk)
    except (ConnectionResetError, ssl.SSLError):
        pass                                  # aborted: also a disconnect
    raw.close()
    print(f"HTTP watcher: {got} bytes were in flight, then the connection closed "
          f"({time.monotonic() - t1:.1f}s)")
    assert got < UPDATES * VALUE / 4
    stub.Update(api_pb2.UpdateRequest(object=configmap(99)), timeout=30)   # still serving
    ch.close()
