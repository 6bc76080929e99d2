"""Client.rotate: after a node's certificate is renewed, new calls go out on a
new channel that presents the new certificate; the old channel is closed
after the grace period (nodeagent/main.py wires it to the Renewer)."""
import asyncio

import grpc

from harness import pki as harness_pki
from machinery import kubeconfig
from machinery.client import Client


async def test_rotate_swaps_the_channel_and_closes_the_old_one():
    session = harness_pki.session()
    first = kubeconfig.select(session.node_kubeconfig("rot-a", "127.0.0.1")).credentials
    second = kubeconfig.select(session.node_kubeconfig("rot-b", "127.0.0.1")).credentials
    client = Client("127.0.0.1:1", credentials=first)
    old = client.channel
    await client.rotate(second, grace=0)
    assert client.channel is not old and client.credentials is second
    for _ in range(100):                                           # closed after the (zero) grace
        if old.get_state() == grpc.ChannelConnectivity.SHUTDOWN:
            break
        await asyncio.sleep(0.05)
    assert old.get_state() == grpc.ChannelConnectivity.SHUTDOWN
    assert client.channel.get_state() != grpc.ChannelConnectivity.SHUTDOWN
    await client.close()


async def test_rotate_renews_the_channel_of_every_apiserver():
    session = harness_pki.session()
    first = kubeconfig.select(session.node_kubeconfig("rot-a", "127.0.0.1")).credentials
    second = kubeconfig.select(session.node_kubeconfig("rot-b", "127.0.0.1")).credentials
    client = Client("127.0.0.1:1,127.0.0.2:1,127.0.0.3:1", credentials=first)
    old = list(client._endpoints.channels)
    await client.rotate(second, grace=0)
    for _ in range(100):
        if all(ch.get_state() == grpc.ChannelConnectivity.SHUTDOWN for ch in old):
            break
        await asyncio.sleep(0.05)
    assert all(ch.get_state() == grpc.ChannelConnectivity.SHUTDOWN for ch in old)
    new = client._endpoints.channels
    assert len(new) == 3 and not set(map(id, new)) & set(map(id, old))
    assert all(ch.get_state() != grpc.ChannelConnectivity.SHUTDOWN for ch in new)
    await client.close()
