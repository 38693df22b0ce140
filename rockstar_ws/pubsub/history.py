"""History of a group's publications: the last N for T seconds, each with an offset and an epoch.

A group's history is a stream. Every publication appended to it gets the next offset (1, 2, 3,
... per group, assigned atomically with the append) and carries the stream's *epoch*, a random
string created with the stream's metadata. A client that remembers ``(epoch, offset)`` asks
:meth:`HistoryStore.since` for what came after it; the answer says ``recovered=False`` when the
epoch is not the stream's any more (the history was lost: Redis flushed or restarted without
persistence, an idle stream's metadata expired, a process restarted in embedded mode) or when the
history no longer holds ``offset + 1`` (trimmed to N, or expired after T). The client then reloads
its state instead of showing a hole.

Two stores with one interface:

- :class:`MemoryHistoryStore`: per process, for embedded mode (the in-memory channel layer);
- :class:`RedisHistoryStore`: a Redis stream per group, capped with ``MAXLEN``, plus a small hash
  (epoch and top offset). One Lua script appends a publication or a whole batch of them (one
  round trip), so every process shares one history and offsets never repeat. The layout follows
  Centrifugo's Redis broker (``broker_history_add_stream.lua``): the offset counter lives in the
  metadata hash, which outlives the stream (``meta_ttl``), so offsets keep increasing after an
  idle stream expired.

Unlike Centrifugo, whose ``history_ttl`` expires a whole stream after T seconds without
publications, each publication here carries its own deadline: a publication older than T is
never returned, even while the stream keeps receiving new ones. "The last N for T seconds" then
holds per publication.
"""

from __future__ import annotations

import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

from rockstar_ws.core.redis import RedisConfig, redis_from_config

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_META_TTL",
    "HISTORY_SOCKET_TIMEOUT",
    "HistoryStore",
    "MemoryHistoryStore",
    "Position",
    "Publication",
    "Recovery",
    "RedisConfig",
    "RedisHistoryStore",
    "history_store_from_config",
    "new_epoch",
    "redis_from_config",
]

DEFAULT_KEY_PREFIX = "rockstar_ws:history:"
#: Seconds a group's epoch and offset counter outlive its last use (Centrifugo's history_meta_ttl).
DEFAULT_META_TTL = 30 * 24 * 3600.0
#: Seconds a history call's socket may wait (connect or read) when the store builds its client.
HISTORY_SOCKET_TIMEOUT = 5.0

Payload = bytes | str


def new_epoch() -> str:
    """A random epoch: 12 URL-safe characters (72 bits), so two streams never share one."""
    return secrets.token_urlsafe(9)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream is (or where a client is in it): the last offset seen, in an epoch.

    ``Position(0, epoch)`` is an empty stream: its first publication will get offset 1.
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication of a group: its offset, the stream's epoch and the payload as appended."""

    offset: int
    epoch: str
    data: Payload


@dataclass(frozen=True, slots=True)
class Recovery:
    """The answer of :meth:`HistoryStore.since`.

    ``publications`` come in offset order, contiguous from the asked offset + 1 (at most ``limit``
    of them). ``recovered`` is False when the epoch differs or the history no longer covers
    ``offset + 1``; ``publications`` is then empty (a partial history would hide a hole).
    ``position`` is the stream's top when the history was read.
    """

    publications: list[Publication]
    recovered: bool
    position: Position

    @property
    def complete(self) -> bool:
        """True when nothing after the publications was left out by ``limit``."""
        if not self.recovered:
            return True
        last = self.publications[-1].offset if self.publications else None
        return last is None or last >= self.position.offset


def _check_append(size: int, ttl: float) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"history size must be an int >= 1, got {size!r}")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValueError(f"history ttl must be a number of seconds > 0, got {ttl!r}")


def _check_since(offset: int, limit: int | None) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, got {offset!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an int >= 1, got {limit!r}")


def _recovery(pubs: list[Publication], top: int, epoch: str, since_epoch: str, offset: int,
              limit: int | None) -> Recovery:
    """Decide ``recovered`` from what the store read: same epoch, contiguous from ``offset + 1``
    up to the top (or to ``limit`` publications)."""
    position = Position(top, epoch)
    if since_epoch != epoch or offset > top:
        return Recovery([], False, position)
    if offset == top:
        return Recovery([], True, position)
    expected = offset + 1
    for pub in pubs:
        if pub.offset != expected:  # trimmed, or one publication expired before its neighbours
            return Recovery([], False, position)
        expected += 1
    if not pubs:  # offset < top and nothing left: every later publication is gone
        return Recovery([], False, position)
    if pubs[-1].offset < top and (limit is None or len(pubs) < limit):
        return Recovery([], False, position)  # the read stopped at an expired publication
    return Recovery(pubs, True, position)


class HistoryStore(ABC):
    """Where groups' histories live. Every method is a coroutine; stores are safe to share."""

    @abstractmethod
    async def append(self, group: str, payload: Payload, *, size: int, ttl: float) -> Position:
        """Store ``payload`` as the group's next publication; keep the last ``size`` for ``ttl`` s.

        Returns the publication's position (its offset and the stream's epoch). Offsets increase
        by exactly one per append of the group, whatever the number of concurrent callers.
        """

    @abstractmethod
    async def since(self, group: str, epoch: str, offset: int, *, limit: int | None = None) -> Recovery:
        """Publications after ``offset`` of ``epoch`` (at most ``limit``), or ``recovered=False``."""

    @abstractmethod
    async def position(self, group: str) -> Position:
        """The group's top: its last offset (0 when it never had a publication) and its epoch.

        A group without metadata gets its epoch here, so a client that subscribes before the
        first publication can recover it later.
        """

    async def append_many(self, group: str, payloads: Sequence[Payload], *, size: int, ttl: float) -> list[Position]:
        """:meth:`append` each payload in order. This default appends one at a time (positions
        contiguous unless another writer appends meanwhile); both built-in stores override it
        to append the batch atomically (contiguous offsets; Redis: one script, one round trip)."""
        return [await self.append(group, p, size=size, ttl=ttl) for p in payloads]

    async def close(self) -> None:
        """Release resources (connections). The store is not used afterwards."""
        return None


# -- in memory --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Stream:
    epoch: str
    top: int = 0
    # (offset, deadline on the monotonic clock, payload)
    items: deque[tuple[int, float, Payload]] = field(default_factory=deque)
    used: float = 0.0


class MemoryHistoryStore(HistoryStore):
    """Histories in this process's memory (embedded mode: one process, the in-memory layer).

    A process restart loses them: every group gets a new epoch, so recoveries answer
    ``recovered=False``, as after a Redis flush. A group unused for ``meta_ttl`` seconds is
    forgotten (its next use starts a new epoch), so abandoned groups do not grow memory forever.
    """

    def __init__(self, *, meta_ttl: float = DEFAULT_META_TTL) -> None:
        if not meta_ttl > 0:
            raise ValueError(f"meta_ttl must be > 0 seconds, got {meta_ttl!r}")
        self.meta_ttl = float(meta_ttl)
        self._streams: dict[str, _Stream] = {}
        # Sync handlers run in threads and may publish; the critical sections never await.
        self._lock = threading.Lock()
        self._ops = 0

    def _now(self) -> float:
        return time.monotonic()

    def _stream(self, group: str, now: float) -> _Stream:
        stream = self._streams.get(group)
        if stream is None or now - stream.used > self.meta_ttl:
            stream = self._streams[group] = _Stream(new_epoch())
        stream.used = now
        self._ops += 1
        if self._ops >= 1024:
            self._ops = 0
            self._sweep(now)
        return stream

    def _sweep(self, now: float) -> None:
        for name in [n for n, s in self._streams.items() if now - s.used > self.meta_ttl]:
            del self._streams[name]

    @staticmethod
    def _expire(stream: _Stream, now: float) -> None:
        items = stream.items
        while items and items[0][1] <= now:
            items.popleft()

    async def append(self, group: str, payload: Payload, *, size: int, ttl: float) -> Position:
        """See :meth:`HistoryStore.append`."""
        _check_append(size, ttl)
        with self._lock:
            now = self._now()
            stream = self._stream(group, now)
            stream.top += 1
            stream.items.append((stream.top, now + ttl, payload))
            while len(stream.items) > size:
                stream.items.popleft()
            self._expire(stream, now)
            return Position(stream.top, stream.epoch)

    async def append_many(self, group: str, payloads: Sequence[Payload], *, size: int, ttl: float) -> list[Position]:
        """See :meth:`HistoryStore.append_many` (under one lock: contiguous offsets)."""
        _check_append(size, ttl)
        with self._lock:
            now = self._now()
            stream = self._stream(group, now)
            items, deadline, out = stream.items, now + ttl, []
            for payload in payloads:
                stream.top += 1
                items.append((stream.top, deadline, payload))
                out.append(Position(stream.top, stream.epoch))
            while len(items) > size:
                items.popleft()
            self._expire(stream, now)
            return out

    async def since(self, group: str, epoch: str, offset: int, *, limit: int | None = None) -> Recovery:
        """See :meth:`HistoryStore.since`."""
        _check_since(offset, limit)
        with self._lock:
            now = self._now()
            stream = self._stream(group, now)
            self._expire(stream, now)
            pubs: list[Publication] = []
            if epoch == stream.epoch and offset < stream.top and stream.items:
                first = stream.items[0][0]
                # Offsets in the deque are contiguous, so the wanted one sits at a known index.
                start = offset + 1 - first
                if start >= 0:
                    stop = len(stream.items) if limit is None else min(len(stream.items), start + limit)
                    for i in range(start, stop):
                        off, deadline, data = stream.items[i]
                        if deadline > now:
                            pubs.append(Publication(off, stream.epoch, data))
                        else:
                            break
            return _recovery(pubs, stream.top, stream.epoch, epoch, offset, limit)

    async def position(self, group: str) -> Position:
        """See :meth:`HistoryStore.position`."""
        with self._lock:
            stream = self._stream(group, self._now())
            return Position(stream.top, stream.epoch)


# -- Redis ------------------------------------------------------------------------------------
# The replication id of the master running the script: it changes when a replica is promoted
# (a failover) or a Redis restarts without its data; '' where INFO is refused in scripts.
_REPLID = """
local function master_replid()
  local info = redis.pcall('INFO', 'replication')
  return type(info) == 'string' and string.match(info, 'master_replid:(%w+)') or ''
end
"""

# KEYS: meta hash, stream. ARGV: size, ttl ms, meta ttl ms, epoch if new, binary flags (one '0'
# or '1' per payload), then the payloads in order. Appends them all, at offsets top + 1 .. top + n.
# The epoch comes from the caller: a script's random numbers are not random enough for it.
# One script for one publication or a batch: one round trip and one metadata update per batch.
_APPEND = _REPLID + """
local meta, stream = KEYS[1], KEYS[2]
local size, ttl, meta_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local flags = ARGV[5]
local n = #ARGV - 5
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local replid = master_replid()
local m = redis.call('HMGET', meta, 'e', 'r')
local epoch = m[1]
if epoch and m[2] and m[2] ~= replid then
  -- Another master (a failover): the old one may have taken appends it never replicated, so
  -- the offsets after this stream's top may be known to clients: a new epoch, never a reuse.
  redis.call('DEL', meta)
  epoch = nil
end
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', meta, 'e', epoch, 'r', replid)
elseif not m[2] then
  redis.call('HSET', meta, 'r', replid)
end
local top = redis.call('HINCRBY', meta, 's', n)
local first = top - n + 1
if first == 1 then
  -- A new epoch: entries left from a lost one (metadata evicted) must not be served in it.
  redis.call('DEL', stream)
else
  -- Reclaim expired entries at the head; reads skip expired ones anyway, this bounds memory.
  local expired = nil
  for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', 8)) do
    local f, deadline = entry[2], 0
    for i = 1, #f, 2 do if f[i] == 'x' then deadline = tonumber(f[i + 1]) end end
    if deadline > now then break end
    expired = entry[1]
  end
  if expired then
    redis.call('XTRIM', stream, 'MINID', (tonumber(string.match(expired, '^%d+')) + 1) .. '-0')
  end
end
local deadline = now + ttl
for i = 1, n do
  local id = (first + i - 1) .. '-0'
  if string.sub(flags, i, i) == '1' then
    redis.call('XADD', stream, 'MAXLEN', size, id, 'd', ARGV[5 + i], 'x', deadline, 'b', '1')
  else
    redis.call('XADD', stream, 'MAXLEN', size, id, 'd', ARGV[5 + i], 'x', deadline)
  end
end
if redis.call('PTTL', stream) < ttl then redis.call('PEXPIRE', stream, ttl) end
if meta_ttl > 0 then redis.call('PEXPIRE', meta, meta_ttl) end
return {top, epoch}
"""

# KEYS: meta hash, stream. ARGV: client epoch, offset, limit (0: none), meta ttl ms, epoch if new.
# Returns {top, epoch, entries}; entries are unexpired {id, data, binary flag} from offset + 1.
_SINCE = _REPLID + """
local meta, stream = KEYS[1], KEYS[2]
local offset, limit, meta_ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local replid = master_replid()
local m = redis.call('HMGET', meta, 'e', 's', 'r')
local epoch, top = m[1], tonumber(m[2] or '0')
if epoch and m[3] and m[3] ~= replid then
  -- Another master (a failover): what the stream held may be short of what clients saw.
  redis.call('DEL', meta, stream)
  epoch = nil
end
if not epoch then
  epoch = ARGV[5]
  top = 0
  redis.call('HSET', meta, 'e', epoch, 'r', replid)
elseif not m[3] then
  redis.call('HSET', meta, 'r', replid)
end
if meta_ttl > 0 then redis.call('PEXPIRE', meta, meta_ttl) end
local out = {}
if ARGV[1] == epoch and offset < top then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local entries
  if limit > 0 then
    entries = redis.call('XRANGE', stream, (offset + 1) .. '-0', '+', 'COUNT', limit)
  else
    entries = redis.call('XRANGE', stream, (offset + 1) .. '-0', '+')
  end
  for _, entry in ipairs(entries) do
    local f = entry[2]
    local data, deadline, binary = '', 0, '0'
    for i = 1, #f, 2 do
      if f[i] == 'd' then data = f[i + 1] elseif f[i] == 'x' then deadline = tonumber(f[i + 1])
      elseif f[i] == 'b' then binary = '1' end
    end
    if deadline <= now then break end
    out[#out + 1] = {entry[1], data, binary}
  end
end
return {top, epoch, out}
"""


class RedisHistoryStore(HistoryStore):
    """Histories in Redis: one stream (capped with MAXLEN) and one metadata hash per group.

    Keys: ``<prefix><group>:s`` (the stream; entry ids are ``<offset>-0``) and ``<prefix><group>:m``
    (``e``: epoch, ``s``: top offset). The stream expires T after its last append; the hash
    ``meta_ttl`` after its last use. Needs one Redis (a primary, with Sentinel if you like), not
    Redis Cluster: both keys of a group are touched by one script, and no hash tag is imposed.
    """

    def __init__(self, redis: Redis | RedisConfig, *, key_prefix: str = DEFAULT_KEY_PREFIX,
                 meta_ttl: float = DEFAULT_META_TTL) -> None:
        if not isinstance(key_prefix, str) or not key_prefix:
            raise ImproperlyConfigured("history KEY_PREFIX must be a non-empty string")
        if not meta_ttl >= 0:
            raise ValueError(f"meta_ttl must be >= 0 seconds (0: never expires), got {meta_ttl!r}")
        if isinstance(redis, str | Mapping):
            # Socket timeouts: a master that stops answering (a partition, a frozen host) fails a
            # call after 5 s instead of holding a publication until TCP gives up.
            redis = redis_from_config(redis, setting="PUBSUB_HISTORY['REDIS']",
                                      socket_timeout=HISTORY_SOCKET_TIMEOUT,
                                      socket_connect_timeout=HISTORY_SOCKET_TIMEOUT)
        self.redis: Redis = redis
        self.key_prefix = key_prefix
        self.meta_ttl_ms = int(meta_ttl * 1000)
        self._append = redis.register_script(_APPEND)
        self._since = redis.register_script(_SINCE)

    def _keys(self, group: str) -> list[str]:
        return [f"{self.key_prefix}{group}:m", f"{self.key_prefix}{group}:s"]

    async def append(self, group: str, payload: Payload, *, size: int, ttl: float) -> Position:
        """See :meth:`HistoryStore.append` (one round trip: one script)."""
        return (await self.append_many(group, [payload], size=size, ttl=ttl))[0]

    async def append_many(self, group: str, payloads: Sequence[Payload], *, size: int, ttl: float) -> list[Position]:
        """See :meth:`HistoryStore.append_many`: one script appends them all (one round trip), so
        their offsets are contiguous even while other processes append to the group."""
        _check_append(size, ttl)
        if not payloads:
            return []
        flags = "".join("0" if isinstance(p, str) else "1" for p in payloads)
        data = [p.encode() if isinstance(p, str) else bytes(p) for p in payloads]
        top, epoch = await self._append(
            keys=self._keys(group),
            args=[size, max(1, int(ttl * 1000)), self.meta_ttl_ms, new_epoch(), flags, *data])
        top, current = int(top), _text(epoch)
        first = top - len(data) + 1
        return [Position(first + i, current) for i in range(len(data))]

    async def since(self, group: str, epoch: str, offset: int, *, limit: int | None = None) -> Recovery:
        """See :meth:`HistoryStore.since` (one round trip)."""
        _check_since(offset, limit)
        top, current, entries = await self._since(
            keys=self._keys(group), args=[epoch, offset, limit or 0, self.meta_ttl_ms, new_epoch()])
        current_epoch = _text(current)
        pubs = [
            Publication(int(_text(entry_id).split("-", 1)[0]), current_epoch,
                        bytes(data) if _text(binary) == "1" else bytes(data).decode())
            for entry_id, data, binary in entries
        ]
        return _recovery(pubs, int(top), current_epoch, epoch, offset, limit)

    async def position(self, group: str) -> Position:
        """See :meth:`HistoryStore.position` (one round trip; reads no publication)."""
        top, epoch, _ = await self._since(keys=self._keys(group), args=["", 0, 1, self.meta_ttl_ms, new_epoch()])
        return Position(int(top), _text(epoch))

    async def delete(self, group: str) -> None:
        """Forget a group's history and epoch (its next use starts a new epoch)."""
        await self.redis.delete(*self._keys(group))

    async def close(self) -> None:
        """Close the Redis client."""
        await self.redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def history_store_from_config(config: Mapping[str, object] | None) -> HistoryStore:
    """Build the store the ``PUBSUB_HISTORY`` setting describes (see docs/pubsub.md).

    ``None`` or ``{}``: in memory. Keys: ``REDIS`` (a URL or a channels-redis host dict; present:
    the Redis store), ``KEY_PREFIX``, ``META_TTL``. Unknown keys are an error.
    """
    config = dict(config or {})
    unknown = sorted(set(config) - {"REDIS", "KEY_PREFIX", "META_TTL"})
    if unknown:
        raise ImproperlyConfigured(
            f"unknown PUBSUB_HISTORY key(s) {unknown}; the keys are REDIS, KEY_PREFIX and META_TTL")
    meta_ttl = config.get("META_TTL", DEFAULT_META_TTL)
    if isinstance(meta_ttl, bool) or not isinstance(meta_ttl, int | float) or meta_ttl < 0:
        raise ImproperlyConfigured(f"PUBSUB_HISTORY['META_TTL'] must be seconds >= 0, got {meta_ttl!r}")
    redis = config.get("REDIS")
    if redis is None:
        if "KEY_PREFIX" in config:
            raise ImproperlyConfigured("PUBSUB_HISTORY['KEY_PREFIX'] needs PUBSUB_HISTORY['REDIS']")
        if meta_ttl == 0:
            raise ImproperlyConfigured("PUBSUB_HISTORY['META_TTL'] must be > 0 for the in-memory store")
        return MemoryHistoryStore(meta_ttl=float(meta_ttl))
    if not isinstance(redis, str | Mapping):
        raise ImproperlyConfigured(
            f"PUBSUB_HISTORY['REDIS'] must be a URL or a dict, got {type(redis).__name__}")
    prefix = config.get("KEY_PREFIX", DEFAULT_KEY_PREFIX)
    if not isinstance(prefix, str):
        raise ImproperlyConfigured("PUBSUB_HISTORY['KEY_PREFIX'] must be a string")
    return RedisHistoryStore(redis, key_prefix=prefix, meta_ttl=float(meta_ttl))
