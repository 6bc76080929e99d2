"""The node agent's side of exec/attach without containers: sessions (nodeagent/sessions.py)
on real host processes, its pseudo-terminal (nodeagent/tty.py), conmon's attach
protocol against a stand-in socket (nodeagent/attach.py), and the log time filters."""
from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timezone

import pytest

from machinery.pb import node_pb2
from nodeagent import attach
from nodeagent.server import parse_time, since_cutoff
from nodeagent.sessions import PipeSession, TtySession, drive
from nodeagent.tty import Terminal, get_size


async def requests(*reqs):
    for r in reqs:
        yield r


async def collect(gen) -> tuple[bytes, bytes, list[int]]:
    out, err, codes = b"", b"", []
    async for r in gen:
        out += r.stdout
        err += r.stderr
        if r.HasField("exit_code"):
            codes.append(r.exit_code)
    return out, err, codes


async def test_pipe_session_stdin_output_and_code(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", "cat; echo to-err >&2; exit 3", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    first = node_pb2.ExecRequest(stdin=True, stdin_data=b"a\n")
    out, err, codes = await collect(drive(PipeSession(proc, tmp_path / "pid"), first, requests(
        node_pb2.ExecRequest(stdin_data=b"b\n"), node_pb2.ExecRequest(stdin_eof=True))))
    assert (out, err, codes) == (b"a\nb\n", b"to-err\n", [3])


async def test_tty_session_has_a_terminal_of_the_asked_size(tmp_path):
    term = Terminal(100, 30)
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", "stty size; read x; echo got-$x; exit 4", stdin=term.slave, stdout=term.slave, stderr=term.slave,
        start_new_session=True)
    term.close_slave()
    session = TtySession(proc, tmp_path / "pid", term)
    first = node_pb2.ExecRequest(stdin=True)
    out, err, codes = await collect(drive(session, first, requests(node_pb2.ExecRequest(stdin_data=b"hi\n"))))
    assert b"30 100" in out and b"got-hi" in out and err == b"" and codes == [4]
    assert term.master == -1                       # closed with the session


async def test_terminal_resize_and_eof_character():
    term = Terminal()
    try:
        assert get_size(term.master) == (80, 24)   # kubectl's default when no size is sent
        term.resize(132, 43)
        assert get_size(term.master) == (132, 43)
        assert TtySession.EOF == b"\x04"
    finally:
        term.close()


async def test_attach_session_reads_conmons_packets(tmp_path):
    """conmon's attach socket: SEQPACKET, first byte 2 = stdout, 3 = stderr; input goes back raw."""
    bundle = tmp_path / "b"
    bundle.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(bundle / "attach"))
    listener.listen(1)
    sock = attach.connect(bundle)
    peer, _ = listener.accept()
    peer.sendall(b"\x02hello ")
    peer.sendall(b"\x03oops")
    peer.sendall(b"\x02world")
    session = attach.AttachSession(sock, bundle)
    out = session.output()
    got = [await anext(out) for _ in range(3)]
    assert [(r.stdout, r.stderr) for r in got] == [(b"hello ", b""), (b"", b"oops"), (b"world", b"")]
    await session.write(b"typed")
    assert peer.recv(100) == b"typed"
    await session.close_stdin()
    assert peer.recv(100) == b""                  # conmon sees the end of the client's input
    session.resize(80, 24)                        # no pidfile: nothing to resize, no error
    peer.close()
    assert [r async for r in out] == [] and await session.finish() == 0
    await session.aclose()
    listener.close()


def test_attach_to_a_container_without_a_socket(tmp_path):
    with pytest.raises(attach.ContainerNotRunning):
        attach.connect(tmp_path)


def test_log_times():
    assert parse_time("2026-01-02T03:04:05.123456789Z") == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert parse_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert since_cutoff(node_pb2.LogsRequest()) is None
    assert since_cutoff(node_pb2.LogsRequest(since_time="2026-01-02T03:04:05Z")).year == 2026
    cut = since_cutoff(node_pb2.LogsRequest(since_seconds=60))
    assert 55 < (datetime.now(timezone.utc) - cut).total_seconds() < 65
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_stdin_and_tty_containers_reach_conmon_and_the_spec(tmp_path):
    """`stdin: true` / `tty: true` in the pod: ContainerConfig flags, OCI process.terminal."""
    from machinery import codec
    from nodeagent import ocispec, podspec
    from nodeagent.images import Image, ImageConfig
    from nodeagent.network import Sandbox
    p = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", "namespace": "default",
                                                                       "uid": "u"},
                         "spec": {"containers": [{"name": "c", "image": "x", "stdin": True, "tty": True},
                                                 {"name": "d", "image": "x"}]}})
    image = Image("docker.io/library/x:1", "sha256:" + "a" * 64, None, ("/l0",), ImageConfig(cmd=["sh"]), 1)
    sandbox = Sandbox("u", "ns", "/var/run/netns/ns", "10.1.0.5", 24, "10.1.0.1", "veth")
    cfgs = [podspec.container_config(p, c, image, sandbox, str(tmp_path), {}, "192.0.2.9", f"cid{i}", 0, ["/l0"])
            for i, c in enumerate(p.spec.containers)]
    assert [(c.stdin, c.tty) for c in cfgs] == [(True, True), (False, False)]
    assert [ocispec.build_spec(c, "/r", "/k/c")["process"]["terminal"] for c in cfgs] == [True, False]
