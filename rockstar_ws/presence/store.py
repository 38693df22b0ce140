"""Who is in a group: the presence stores (docs/presence.md).

A member is one connection in one group. The stores count members per *user* too, so a caller
can tell a user's first connection in a group (a join worth announcing) from a second tab, and
the last one leaving (a leave worth announcing) from one tab of several:

* :class:`LocalPresenceStore`: one process, in memory (embedded mode).
* :class:`RedisPresenceStore`: every process of a cluster, in Redis (``redis.asyncio``). Each
  process writes only its own keys and keeps them alive with a heartbeat; a process that dies
  without cleaning up (``kill -9``) drops out of every listing when its heartbeat key expires,
  and the first live process to notice deletes what it left, atomically, in a Lua script.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..core.redis import client_for, close_client, loop_task, text
from ..groups import validate_group_name
from ..registry import process_name

__all__ = [
    "DEFAULT_MAX_INFO_BYTES",
    "InfoTooLarge",
    "LocalPresenceStore",
    "Member",
    "PresenceError",
    "PresenceStats",
    "PresenceStore",
    "RedisPresenceStore",
]

logger = logging.getLogger("rockstar_ws.presence")

#: Largest ``info`` of a member, in bytes of compact JSON: enough for a display name, an avatar
#: URL and a status, small enough that a listing of 2,000 members stays well under a megabyte.
DEFAULT_MAX_INFO_BYTES = 512
_MAX_ID_LENGTH = 200

ExpiredHandler = Callable[[str, "Member"], None]


class PresenceError(ValueError):
    """A member the store cannot take: an invalid id, an ``info`` that is not a small JSON object,
    a connection that joins a group twice as two different users, or one of another process."""


class InfoTooLarge(PresenceError):
    """A member's ``info`` is larger than the store's ``max_info_bytes``."""


def _id(value: Any, what: str, *, optional: bool) -> str | None:
    if value is None:
        if optional:
            return None
        raise PresenceError(f"{what} is required")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PresenceError(f"{what} must be a str or an int, not {type(value).__name__}")
    text = str(value)
    if not text or len(text) > _MAX_ID_LENGTH:
        raise PresenceError(f"{what} must have 1 to {_MAX_ID_LENGTH} characters, got {len(text)}")
    return text


@dataclass(frozen=True, slots=True)
class Member:
    """One connection present in one group.

    ``user_id`` is None for a guest; ``info`` is the member's public data (a display name, say),
    a JSON object; ``joined_at`` is a Unix time; ``process`` is the process that holds the
    connection (``hostname:pid``, see :func:`rockstar_ws.registry.process_name`). Ids given as
    ints are kept as strings, as the live registry keeps them.
    """

    connection_id: str
    user_id: str | None = None
    tenant_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    joined_at: float = field(default_factory=time.time)
    process: str = field(default_factory=process_name)

    def __post_init__(self) -> None:
        # A frozen dataclass: normalise through object.__setattr__ so 42 and "42" are one user.
        object.__setattr__(self, "connection_id", _id(self.connection_id, "connection_id", optional=False))
        object.__setattr__(self, "user_id", _id(self.user_id, "user_id", optional=True))
        object.__setattr__(self, "tenant_id", _id(self.tenant_id, "tenant_id", optional=True))
        object.__setattr__(self, "process", _id(self.process, "process", optional=False))
        if not isinstance(self.info, dict):
            raise PresenceError(f"info must be a dict (a JSON object), not {type(self.info).__name__}")
        if isinstance(self.joined_at, bool) or not isinstance(self.joined_at, (int, float)) \
                or not math.isfinite(self.joined_at):
            raise PresenceError(f"joined_at must be a finite Unix time, not {self.joined_at!r}")

    @property
    def user_key(self) -> str:
        """Who this member is for per-user counts: the (tenant, user) of a user, or the connection
        of a guest (each guest connection is its own user)."""
        if self.user_id is None:
            return f"c:{self.connection_id}"
        return f"u:{self.tenant_id or ''}:{self.user_id}"

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (what the Redis store keeps)."""
        return {"connection_id": self.connection_id, "user_id": self.user_id, "tenant_id": self.tenant_id,
                "info": self.info, "joined_at": self.joined_at, "process": self.process}

    def public_dict(self) -> dict[str, Any]:
        """What clients may see: every field but ``process``, which names a host."""
        data = self.as_dict()
        del data["process"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Member:
        """The member :meth:`as_dict` wrote."""
        return cls(connection_id=data["connection_id"], user_id=data.get("user_id"),
                   tenant_id=data.get("tenant_id"), info=data.get("info") or {},
                   joined_at=float(data["joined_at"]), process=data["process"])


class PresenceStats(NamedTuple):
    """The size of a group: its connections and its distinct users (guests count one each)."""

    connections: int
    users: int


def _encode_info(info: dict[str, Any], limit: int) -> str:
    try:
        text = json.dumps(info, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PresenceError(f"info must be JSON-serialisable: {exc}") from None
    if any(not isinstance(k, str) for k in info):
        raise PresenceError("info keys must be strings")
    size = len(text.encode())
    if size > limit:
        raise InfoTooLarge(f"info is {size} bytes of JSON; the limit is {limit} (max_info_bytes)")
    return text


class PresenceStore(ABC):
    """Who is in each group, and whether a join or leave changes the group's set of users.

    ``join`` and ``leave`` are called by the process that holds the connection; ``members`` and
    ``stats`` may be called anywhere. ``join`` returns True when the member is its user's first
    connection in the group, ``leave`` True when it was the last (cluster-wide for the Redis
    store): those are the transitions a join/leave event announces.
    """

    def __init__(self, *, process: str | None = None, max_info_bytes: int = DEFAULT_MAX_INFO_BYTES) -> None:
        if isinstance(max_info_bytes, bool) or not isinstance(max_info_bytes, int) or max_info_bytes < 2:
            raise PresenceError(f"max_info_bytes must be an int >= 2, not {max_info_bytes!r}")
        self.process = process or process_name()
        self.max_info_bytes = max_info_bytes
        #: This process's members: group -> connection id -> member.
        self.own: dict[str, dict[str, Member]] = {}

    def member(self, connection_id: str | int, user_id: str | int | None = None, tenant_id: str | int | None = None,
               info: dict[str, Any] | None = None) -> Member:
        """A member of this process, joined now."""
        # Member normalises int ids to str; join() stores a copy of info.
        return Member(connection_id=connection_id, user_id=user_id, tenant_id=tenant_id,  # type: ignore[arg-type]
                      info={} if info is None else info, joined_at=time.time(), process=self.process)

    def _admit(self, group: str, member: Member) -> tuple[Member, str, Member | None]:
        """Validate a join; return the member as stored, its info as JSON and the entry it replaces."""
        validate_group_name(group)
        if not isinstance(member, Member):
            raise PresenceError(f"join() takes a Member, not {type(member).__name__}")
        if member.process != self.process:
            raise PresenceError(f"member of process {member.process!r} cannot join through the store of "
                                f"process {self.process!r}: a process records only its own connections")
        info_json = _encode_info(member.info, self.max_info_bytes)
        # The stored copy never changes when the caller later mutates its dict.
        stored = Member(member.connection_id, member.user_id, member.tenant_id, json.loads(info_json),
                        member.joined_at, member.process)
        previous = self.own.get(group, {}).get(member.connection_id)
        if previous is not None and previous.user_key != stored.user_key:
            raise PresenceError(f"connection {member.connection_id!r} is already in group {group!r} as another "
                                "user; leave first")
        return stored, info_json, previous

    @abstractmethod
    async def join(self, group: str, member: Member) -> bool:
        """Add ``member`` to ``group``; True if it is its user's first connection there.

        Joining again with the same connection id updates ``info`` and returns False.
        Raises :class:`PresenceError` (or :class:`InfoTooLarge`) for a member it cannot take.
        """

    @abstractmethod
    async def leave(self, group: str, connection_id: str) -> bool:
        """Remove a connection of this process from ``group``; True if it was its user's last
        connection there. Leaving a group one is not in returns False."""

    @abstractmethod
    async def members(self, group: str) -> list[Member]:
        """The members of ``group``, oldest first."""

    @abstractmethod
    async def stats(self, group: str) -> PresenceStats:
        """The connections and distinct users of ``group``."""

    async def leave_all(self, connection_id: str) -> list[tuple[str, Member, bool]]:
        """Remove a closing connection from every group it is in: (group, member, last) for each."""
        out = []
        for group in [g for g, conns in self.own.items() if connection_id in conns]:
            member = self.own[group][connection_id]
            out.append((group, member, await self.leave(group, connection_id)))
        return out

    async def close(self) -> None:  # noqa: B027 - optional hook: the in-memory store holds nothing
        """Release resources (the Redis store stops its heartbeat)."""


class LocalPresenceStore(PresenceStore):
    """Presence of this process only, in memory: for embedded mode and tests."""

    def __init__(self, *, process: str | None = None, max_info_bytes: int = DEFAULT_MAX_INFO_BYTES) -> None:
        super().__init__(process=process, max_info_bytes=max_info_bytes)
        self._users: dict[str, Counter[str]] = {}

    async def join(self, group: str, member: Member) -> bool:
        """Add ``member`` to ``group``; True if it is its user's first connection there."""
        stored, _info, previous = self._admit(group, member)
        self.own.setdefault(group, {})[stored.connection_id] = stored
        if previous is not None:
            return False
        users = self._users.setdefault(group, Counter())
        users[stored.user_key] += 1
        return users[stored.user_key] == 1

    async def leave(self, group: str, connection_id: str) -> bool:
        """Remove the connection from ``group``; True if it was its user's last connection there."""
        conns = self.own.get(group)
        member = conns.pop(str(connection_id), None) if conns is not None else None
        if member is None:
            return False
        users = self._users[group]
        users[member.user_key] -= 1
        last = users[member.user_key] <= 0
        if last:
            del users[member.user_key]
        if not conns:
            del self.own[group], self._users[group]
        return last

    async def members(self, group: str) -> list[Member]:
        """The members of ``group``, oldest first."""
        validate_group_name(group)
        return sorted(self.own.get(group, {}).values(), key=lambda m: m.joined_at)

    async def stats(self, group: str) -> PresenceStats:
        """The connections and distinct users of ``group``."""
        validate_group_name(group)
        return PresenceStats(len(self.own.get(group, {})), len(self._users.get(group, ())))


# Lua. Keys are built inside the scripts from the prefix (as the live registry's are), so the
# store needs one Redis (or a primary with replicas), not Redis Cluster. Per group G and process P:
#   {prefix}g:G:procs      set of processes with members in G
#   {prefix}g:G:P:m        hash connection id -> member JSON
#   {prefix}g:G:P:u        hash user key -> connections of that user in G on P
#   {prefix}node:P:alive   the heartbeat key of P (expires after `ttl`)
#   {prefix}node:P:groups  set of the groups where P has members
# A process writes only its own hashes, so a dead process is removed by deleting two keys per
# group: no counts of live processes need repair. Group names cannot contain ':' (they are
# validated as channel-layer group names), so no two groups share a key.
_SWEEP = """
local function sweep(prefix, group, me)
  local base = prefix .. 'g:' .. group
  local live, dead, gone_users, gone_members = {}, {}, {}, {}
  for _, node in ipairs(redis.call('SMEMBERS', base .. ':procs')) do
    if node == me or redis.call('EXISTS', prefix .. 'node:' .. node .. ':alive') == 1 then
      live[#live + 1] = node
    else
      dead[#dead + 1] = node
    end
  end
  if #dead == 0 then return live, gone_users, gone_members end
  local candidates = {}
  for _, node in ipairs(dead) do
    local ukey, mkey = base .. ':' .. node .. ':u', base .. ':' .. node .. ':m'
    for _, u in ipairs(redis.call('HKEYS', ukey)) do candidates[u] = true end
    for _, m in ipairs(redis.call('HVALS', mkey)) do gone_members[#gone_members + 1] = m end
    redis.call('DEL', ukey, mkey)
    redis.call('SREM', base .. ':procs', node)
  end
  for u, _ in pairs(candidates) do
    local present = false
    for _, node in ipairs(live) do
      if redis.call('HEXISTS', base .. ':' .. node .. ':u', u) == 1 then present = true; break end
    end
    if not present then gone_users[#gone_users + 1] = u end
  end
  return live, gone_users, gone_members
end
"""

_JOIN = _SWEEP + """
local prefix, group, me, conn, user, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local alive_ttl, data_ttl = ARGV[7], ARGV[8]
local live, gu, gm = sweep(prefix, group, me)
local base = prefix .. 'g:' .. group
local mkey, ukey = base .. ':' .. me .. ':m', base .. ':' .. me .. ':u'
local first = 0
if redis.call('HSET', mkey, conn, member) == 1 then
  if redis.call('HINCRBY', ukey, user, 1) == 1 then
    first = 1
    for _, node in ipairs(live) do
      if node ~= me and redis.call('HEXISTS', base .. ':' .. node .. ':u', user) == 1 then first = 0; break end
    end
  end
end
local groups = prefix .. 'node:' .. me .. ':groups'
redis.call('SADD', base .. ':procs', me)
redis.call('SADD', groups, group)
-- A join before this process's first heartbeat must not look like a dead process's entry.
redis.call('SET', prefix .. 'node:' .. me .. ':alive', '1', 'PX', alive_ttl)
for _, key in ipairs({mkey, ukey, base .. ':procs', groups}) do redis.call('PEXPIRE', key, data_ttl) end
return {first, gu, gm}
"""

_LEAVE = _SWEEP + """
local prefix, group, me, conn, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local live, gu, gm = sweep(prefix, group, me)
local base = prefix .. 'g:' .. group
local mkey, ukey = base .. ':' .. me .. ':m', base .. ':' .. me .. ':u'
if redis.call('HDEL', mkey, conn) == 0 then return {0, gu, gm} end
local last = 0
if redis.call('HINCRBY', ukey, user, -1) <= 0 then
  redis.call('HDEL', ukey, user)
  last = 1
  for _, node in ipairs(live) do
    if node ~= me and redis.call('HEXISTS', base .. ':' .. node .. ':u', user) == 1 then last = 0; break end
  end
end
if redis.call('HLEN', mkey) == 0 then
  redis.call('DEL', mkey, ukey)
  redis.call('SREM', base .. ':procs', me)
  redis.call('SREM', prefix .. 'node:' .. me .. ':groups', group)
end
return {last, gu, gm}
"""

_MEMBERS = _SWEEP + """
local prefix, group, me = ARGV[1], ARGV[2], ARGV[3]
local live, gu, gm = sweep(prefix, group, me)
local base, out = prefix .. 'g:' .. group, {}
for _, node in ipairs(live) do
  for _, m in ipairs(redis.call('HVALS', base .. ':' .. node .. ':m')) do out[#out + 1] = m end
end
return {out, gu, gm}
"""

_STATS = _SWEEP + """
local prefix, group, me = ARGV[1], ARGV[2], ARGV[3]
local live, gu, gm = sweep(prefix, group, me)
local base, conns, users = prefix .. 'g:' .. group, 0, 0
if #live == 1 then
  conns = redis.call('HLEN', base .. ':' .. live[1] .. ':m')
  users = redis.call('HLEN', base .. ':' .. live[1] .. ':u')
else
  local seen = {}
  for _, node in ipairs(live) do
    conns = conns + redis.call('HLEN', base .. ':' .. node .. ':m')
    for _, u in ipairs(redis.call('HKEYS', base .. ':' .. node .. ':u')) do
      if not seen[u] then seen[u] = true; users = users + 1 end
    end
  end
end
return {conns, users, gu, gm}
"""

# One call per batch of this process's groups: keep its keys alive and sweep dead processes
# from those groups (so their users' leaves are noticed even if nobody lists the group).
_HEARTBEAT = _SWEEP + """
local prefix, me, alive_ttl, data_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local alive = prefix .. 'node:' .. me .. ':alive'
local existed = redis.call('EXISTS', alive)
redis.call('SET', alive, '1', 'PX', alive_ttl)
redis.call('PEXPIRE', prefix .. 'node:' .. me .. ':groups', data_ttl)
local out, lost = {}, 0
for i = 5, #ARGV do
  local group = ARGV[i]
  local live, gu, gm = sweep(prefix, group, me)
  local base = prefix .. 'g:' .. group
  if redis.call('PEXPIRE', base .. ':' .. me .. ':m', data_ttl) == 0 then lost = 1 end
  redis.call('PEXPIRE', base .. ':' .. me .. ':u', data_ttl)
  redis.call('PEXPIRE', base .. ':procs', data_ttl)
  if #gu > 0 then out[#out + 1] = {group, gu, gm} end
end
-- The master's replication id: a new one (a failover, a Redis restarted empty) may lack this
-- process's last joins and leaves, so the process rewrites its entries. '' where INFO is refused.
local info = redis.pcall('INFO', 'replication')
local replid = type(info) == 'string' and string.match(info, 'master_replid:(%w+)') or ''
return {existed, lost, out, replid}
"""

# Rewrites this process's entries of one group from its own memory: after Redis lost them (a
# restart) or another process swept them (this one missed heartbeats for longer than the TTL).
_RESYNC = """
local prefix, group, me, data_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local base = prefix .. 'g:' .. group
local mkey, ukey = base .. ':' .. me .. ':m', base .. ':' .. me .. ':u'
redis.call('DEL', mkey, ukey)
for i = 5, #ARGV, 3 do
  redis.call('HSET', mkey, ARGV[i], ARGV[i + 2])
  redis.call('HINCRBY', ukey, ARGV[i + 1], 1)
end
redis.call('SADD', base .. ':procs', me)
redis.call('SADD', prefix .. 'node:' .. me .. ':groups', group)
for _, key in ipairs({mkey, ukey, base .. ':procs', prefix .. 'node:' .. me .. ':groups'}) do
  redis.call('PEXPIRE', key, data_ttl)
end
return 0
"""

_HEARTBEAT_BATCH = 200  # groups per heartbeat script, so one call never blocks Redis for long


class RedisPresenceStore(PresenceStore):
    """Cluster-wide presence in Redis: every process sees every member, and a dead process's
    members drop out within ``ttl`` seconds of its last heartbeat.

    ``heartbeat`` and ``ttl`` default to the live registry's (3 s and 10 s); ``ttl`` must be at
    least twice ``heartbeat``. A process's entries are kept for ``3 * ttl`` after its last
    heartbeat, so that the live processes' heartbeats (which sweep the groups they share) still
    find what a dead process left and can report its users' leaves through ``on_expired``
    (called with the group and one member per user whose last connection was there).
    ``client_factory``, when given, builds the Redis client (``url`` then only names it in logs).
    """

    def __init__(self, url: str, *, prefix: str = "rockstar_ws:presence:", heartbeat: float = 3.0,
                 ttl: float = 10.0, timeout: float = 1.0, process: str | None = None,
                 max_info_bytes: int = DEFAULT_MAX_INFO_BYTES, on_expired: ExpiredHandler | None = None,
                 client_factory: Callable[[], Any] | None = None) -> None:
        super().__init__(process=process, max_info_bytes=max_info_bytes)
        if not heartbeat > 0 or ttl < 2 * heartbeat:
            raise PresenceError(f"ttl ({ttl}) must be at least twice heartbeat ({heartbeat}), and heartbeat > 0")
        self.url = url
        self.prefix = prefix
        self.heartbeat = float(heartbeat)
        self.ttl = float(ttl)
        self.timeout = float(timeout)
        self.on_expired = on_expired
        #: Builds the ``redis.asyncio`` client instead of ``url`` (a Sentinel master, say); called
        #: once per event loop.
        self.client_factory = client_factory
        self._alive_ms = str(int(self.ttl * 1000))
        self._data_ms = str(int(self.ttl * 3000))
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}
        self._beat: asyncio.Task[None] | None = None
        #: Heartbeats that reached Redis, and those that failed (tests and metrics read them).
        self.beats = 0
        self.failed_beats = 0
        self._pending = 0  # joins and leaves in flight
        self._dirty = False  # Redis may not hold exactly self.own: the next heartbeat rewrites it
        self._resyncing = False
        #: The replication id of the Redis master the last heartbeat reached (a new one: resync).
        self._replid: str | None = None
        self._open: asyncio.Event | None = None  # set unless a resync holds writes back
        self._drained: asyncio.Event | None = None  # set when no write is in flight

    # -- Redis plumbing ---------------------------------------------------------------
    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # Many joins at once wait for a pooled connection, as the live registry's do.
            self._client = client_for(self.url, self.timeout, self.client_factory)
            self._scripts = {name: self._client.register_script(src) for name, src in (
                ("join", _JOIN), ("leave", _LEAVE), ("members", _MEMBERS), ("stats", _STATS),
                ("heartbeat", _HEARTBEAT), ("resync", _RESYNC))}
            self._loop = loop
            self._beat = None
            self._open, self._drained = asyncio.Event(), asyncio.Event()
            self._open.set()
            self._drained.set()
        return self._client

    async def _call(self, script: str, args: list[Any]) -> Any:
        self._redis()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives
        # as the call completes, and a cancelled heartbeat would keep beating.
        async with asyncio.timeout(self.timeout * 2):
            return await self._scripts[script](keys=[], args=args)

    def _report(self, group: str, gone_users: Iterable[Any], gone_members: Iterable[Any]) -> None:
        gone = {text(u) for u in gone_users}
        if not gone or self.on_expired is None:
            return
        # One member per user whose last connection died with its process.
        seen: dict[str, Member] = {}
        for raw in gone_members:
            member = Member.from_dict(json.loads(raw))
            if member.user_key in gone and member.user_key not in seen:
                seen[member.user_key] = member
        for member in seen.values():
            try:
                self.on_expired(group, member)
            except Exception:
                # A failing handler must not fail the join or listing that noticed the death.
                logger.exception("presence: on_expired failed for group %r", group)

    def _ensure_heartbeat(self) -> None:
        self._redis()  # a client on the running loop first: a new loop resets the heartbeat
        self._beat = loop_task(self._beat, self._loop, self._heartbeat_loop)

    async def _heartbeat_loop(self) -> None:
        failing = False
        me = asyncio.current_task()
        while self._beat is me:  # close() (or a new loop) replaced it: stop
            # The first beat waits too: join() has just set this process's heartbeat key.
            await asyncio.sleep(self.heartbeat)
            if self._beat is not me:
                return
            try:
                await self.beat()
                if failing:
                    failing = False
                    logger.warning("presence: Redis answers heartbeats again")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed_beats += 1
                # Logged once per outage; the next beat that reaches Redis rewrites what it lost.
                if not failing:
                    failing = True
                    logger.error("presence: heartbeat to Redis failed (%s: %r); this process's members "
                                 "drop out of other processes' listings after %s s", type(exc).__name__,
                                 str(exc), self.ttl)

    async def beat(self) -> None:
        """One heartbeat: keep this process alive in Redis, sweep dead processes from its groups,
        and rewrite its own entries if Redis lost them."""
        groups = list(self.own)
        batches = [groups[i:i + _HEARTBEAT_BATCH] for i in range(0, len(groups), _HEARTBEAT_BATCH)] or [[]]
        for batch in batches:
            existed, lost, reports, replid = await self._call(
                "heartbeat", [self.prefix, self.process, self._alive_ms, self._data_ms, *batch])
            replid = text(replid)
            if not int(existed) or int(lost) or (self._replid is not None and replid != self._replid):
                self._dirty = True
            self._replid = replid
            for group, gone_users, gone_members in reports:
                self._report(text(group), gone_users, gone_members)
        if not self.own:
            self._dirty = False
        elif self._dirty:
            await self._resync()
        self.beats += 1

    async def _resync(self) -> None:
        # Writes wait while this runs, and it waits for those in flight: a snapshot of
        # self.own must not overwrite a join or leave that Redis has and self.own has not yet.
        self._redis()
        assert self._open is not None and self._drained is not None
        self._resyncing = True
        self._open.clear()
        try:
            while self._pending:
                self._drained.clear()
                await self._drained.wait()
            self._dirty = False
            for group, conns in list(self.own.items()):
                args: list[Any] = [self.prefix, group, self.process, self._data_ms]
                for m in conns.values():
                    args += [m.connection_id, m.user_key, json.dumps(m.as_dict(), separators=(",", ":"))]
                await self._call("resync", args)
        except BaseException:
            self._dirty = True
            raise
        finally:
            self._resyncing = False
            self._open.set()

    async def _write(self, script: str, args: list[Any]) -> Any:
        """A join or leave (they run concurrently with each other, never with a resync)."""
        self._redis()
        assert self._open is not None and self._drained is not None
        while self._resyncing:
            await self._open.wait()
        self._pending += 1
        try:
            return await self._call(script, args)
        except BaseException:
            # It may or may not have run in Redis: the next heartbeat rewrites this process's entries.
            self._dirty = True
            raise
        finally:
            self._pending -= 1
            if not self._pending:
                self._drained.set()

    # -- the store --------------------------------------------------------------------
    async def join(self, group: str, member: Member) -> bool:
        """Add ``member`` to ``group``; True if it is its user's first connection there in the cluster."""
        stored, _info, _previous = self._admit(group, member)
        self._ensure_heartbeat()
        raw = json.dumps(stored.as_dict(), separators=(",", ":"), ensure_ascii=False)
        first, gone_users, gone_members = await self._write(
            "join", [self.prefix, group, self.process, stored.connection_id, stored.user_key, raw,
                     self._alive_ms, self._data_ms])
        self.own.setdefault(group, {})[stored.connection_id] = stored
        self._report(group, gone_users, gone_members)
        return bool(int(first))

    async def leave(self, group: str, connection_id: str) -> bool:
        """Remove the connection from ``group``; True if it was its user's last connection there in the cluster."""
        validate_group_name(group)
        connection_id = str(connection_id)
        member = self.own.get(group, {}).get(connection_id)
        if member is None:
            return False
        last, gone_users, gone_members = await self._write(
            "leave", [self.prefix, group, self.process, connection_id, member.user_key])
        conns = self.own[group]
        conns.pop(connection_id, None)
        if not conns:
            del self.own[group]
        self._report(group, gone_users, gone_members)
        return bool(int(last))

    async def members(self, group: str) -> list[Member]:
        """The members of ``group`` in every live process, oldest first."""
        validate_group_name(group)
        raws, gone_users, gone_members = await self._call("members", [self.prefix, group, self.process])
        self._report(group, gone_users, gone_members)
        return sorted((Member.from_dict(json.loads(r)) for r in raws), key=lambda m: m.joined_at)

    async def stats(self, group: str) -> PresenceStats:
        """The connections and distinct users of ``group`` in every live process."""
        validate_group_name(group)
        conns, users, gone_users, gone_members = await self._call("stats", [self.prefix, group, self.process])
        self._report(group, gone_users, gone_members)
        return PresenceStats(int(conns), int(users))

    async def close(self) -> None:
        """Stop the heartbeat and close the Redis client.

        This process's entries stay until its heartbeat key expires: connections leave one by
        one as they close, and what remains is then swept (and reported) like a dead process's.
        """
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.cancel()
            if beat.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await beat
        if self._client is not None:
            await close_client(self._client)
            self._client = None
