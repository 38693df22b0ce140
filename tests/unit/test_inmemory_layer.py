"""rockstar_ws.layers.InMemoryChannelLayer: channels' in-memory layer with an amortized expiry
sweep and attachable channels (the consumer's use of it runs through daphne in e2e/test_idle.py)."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull

from rockstar_ws.layers import InMemoryChannelLayer, crosses_processes


async def test_an_attached_channel_gets_copies_at_once_and_nothing_after_detach():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    got: list[dict] = []
    detach = layer.attach(channel, got.append)
    message = {"type": "rockstar.send", "data": ["x"]}
    await layer.send(channel, message)
    message["data"].append("changed by the sender afterwards")
    assert got == [{"type": "rockstar.send", "data": ["x"]}]
    assert channel not in layer.channels  # no queue was made for it
    detach()
    await layer.send(channel, {"type": "later"})
    assert len(got) == 1
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "later"}
    assert not crosses_processes(layer)


async def test_group_send_reaches_attached_and_receiving_channels():
    layer = InMemoryChannelLayer()
    attached, plain = await layer.new_channel(), await layer.new_channel()
    got: list[dict] = []
    layer.attach(attached, got.append)
    await layer.group_add("g", attached)
    await layer.group_add("g", plain)
    await layer.group_send("g", {"type": "hello"})
    assert got == [{"type": "hello"}]
    assert await asyncio.wait_for(layer.receive(plain), 5) == {"type": "hello"}


async def test_a_callback_that_is_full_refuses_like_a_full_queue():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()

    def full(message: dict) -> None:
        raise ChannelFull(channel)
    layer.attach(channel, full)
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "x"})


async def test_receive_drops_its_own_expired_messages_between_sweeps():
    layer = InMemoryChannelLayer(sweep_interval=3600)
    stale, other = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", stale)
    layer._clean_expired()  # the one sweep of the hour
    layer.expiry = -1  # messages sent now have expired already
    await layer.send(stale, {"type": "old"})
    await layer.send(other, {"type": "old elsewhere"})
    layer.expiry = 60
    await layer.send(stale, {"type": "new"})
    assert await asyncio.wait_for(layer.receive(stale), 5) == {"type": "new"}
    # An expired message drops its channel from its groups, as channels' sweep does.
    assert stale not in layer.groups.get("g", {})
    # No sweep ran for the other channel (a receive costs its own channel only).
    assert layer.channels[other].qsize() == 1
    layer.sweep_interval = 0
    layer._clean_expired()
    assert other not in layer.channels
