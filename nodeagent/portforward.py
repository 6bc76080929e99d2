"""``port-forward``: one TCP connection to a port of a pod, made inside the pod's network namespace.

Like the kubelet, the agent connects to ``localhost:PORT`` *in the pod's
netns*, so a server listening only on the pod's loopback is reachable too.
The socket is created by a short-lived thread of its own that ``setns()``es
into the netns of the pod's container (``/proc/PID/ns/net``) first: a
socket belongs to the netns it was created in, whichever thread uses it
later, and the thread ends right after, so no other code of the agent
ever runs in the pod's netns. (pyroute2's netns helpers fork, which a gRPC
process must not do — design §4.) The connected socket is then handed to
the event loop and relayed.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading

from nodeagent.errors import NodeAgentError

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10.0
_libc = ctypes.CDLL(None, use_errno=True)


class PortForwardError(NodeAgentError):
    """The pod's port cannot be reached; the message says why (Kubernetes' wording)."""


def _connect_in_netns(netns: str, port: int) -> socket.socket:
    fd = os.open(netns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise PortForwardError(f"cannot enter the pod's network namespace: {os.strerror(err)}")
    finally:
        os.close(fd)
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise PortForwardError(f"failed to connect to localhost:{port} inside the pod's network namespace: "
                               f"{exc.strerror or exc}") from exc


async def connect(netns: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to 127.0.0.1:PORT in the netns at path NETNS (e.g. /proc/PID/ns/net)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def settle(result: socket.socket | None, error: BaseException | None) -> None:
        if done.done():                  # the caller was cancelled meanwhile
            if result is not None:
                result.close()
        elif error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:      # a fresh thread: its netns change dies with it
        try:
            loop.call_soon_threadsafe(settle, _connect_in_netns(netns, port), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
            loop.call_soon_threadsafe(settle, None, exc)
    threading.Thread(target=run, name=f"portforward-{port}", daemon=True).start()
    sock = await done
    sock.setblocking(False)
    return await asyncio.open_connection(sock=sock)
