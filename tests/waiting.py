"""Event-driven waits for tests: poll a condition until it holds, with a deadline.

A test never sleeps a fixed time and then looks: on a loaded machine the thing it waits for
may take longer than any guess. It waits for the condition itself (a log line, a count, an
event recorded by a handler) and fails with a message only when a generous deadline passes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["poll", "wait_until", "wait_until_async"]


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
               message: str | Callable[[], str] = "") -> T:
    """Call ``predicate`` until it returns a truthy value and return that value; raise
    ``AssertionError`` (with ``message``) when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_text(message) or f"condition not met within {timeout}s: {predicate!r}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], T | Awaitable[T]], timeout: float = 30.0,
                           interval: float = 0.05, message: str | Callable[[], str] = "") -> T:
    """:func:`wait_until` for async tests: ``predicate`` may be a plain or an async callable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value: Any = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(_text(message) or f"condition not met within {timeout}s: {predicate!r}")
        await asyncio.sleep(interval)


async def poll(fetch: Callable[[], Awaitable[T]], until: Callable[[T], object], timeout: float = 30.0,
               interval: float = 0.1) -> T:
    """Await ``fetch()`` until ``until(value)`` holds or ``timeout`` seconds pass; return the last
    value either way, so the caller's assertion on it shows what the server last said."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await fetch()
        if until(value) or loop.time() > deadline:
            return value
        await asyncio.sleep(interval)


def _text(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message
