"""A single waiter that another task wakes: the group hub's writers and publisher sleep on one."""

from __future__ import annotations

import asyncio

__all__ = ["Wakeup"]


class Wakeup:
    """``await wakeup.wait()`` sleeps until ``wakeup.notify()``. A notify without a waiter is not
    remembered: the waiter checks its condition (a queue) before it waits, so none is lost."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def notify(self) -> None:
        """Wake the waiter, if there is one."""
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self) -> None:
        """Sleep until :meth:`notify`."""
        self._future = asyncio.get_running_loop().create_future()
        try:
            await self._future
        finally:
            self._future = None
