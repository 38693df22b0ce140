"""A Redis Sentinel set of one test: a master, a replica and a sentinel on free loopback ports.

Started from Debian's ``redis-server`` and ``redis-sentinel`` (``python3 run.py test`` installs
them); nothing is shared with the Redis on 6379 that other tests use, so a test may kill this
master. The sentinel gets a generated ``sentinel.conf`` in the test's temporary directory
(``sentinel monitor m 127.0.0.1 <master port> 1``, a quorum of one) with short
``down-after-milliseconds`` and ``failover-timeout``, so a failover takes seconds, not a minute.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.servers import free_port, wait_for_port

CI = os.environ.get("CI", "").lower() == "true"
MASTER_NAME = "m"
#: How long the sentinel waits before it calls the master down, and the failover's own bound.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class SentinelSet:
    """The three processes, started by :meth:`start`; :meth:`kill_master` ends the master with SIGKILL,
    :meth:`freeze_master` stops it with SIGSTOP."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.master_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """What channels-redis takes as ``{"sentinels": ..., "master_name": MASTER_NAME}``."""
        return [("127.0.0.1", self.sentinel_port)]

    def _redis(self, name: str, port: int, *extra: str) -> None:
        work = self.tmp / name
        work.mkdir(exist_ok=True)
        self.procs[name] = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(work), "--logfile", str(work / "redis.log"), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port, self.procs[name])

    def start(self) -> SentinelSet:
        self._redis("master", self.master_port)
        self._redis("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        self.wait_replica_synced()
        conf = self.tmp / "sentinel.conf"  # the sentinel rewrites its file: it must be its own
        conf.write_text("\n".join([
            f"port {self.sentinel_port}", "bind 127.0.0.1", f"dir {self.tmp}",
            f"logfile {self.tmp / 'sentinel.log'}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 1",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 1", ""]))
        binary = shutil.which("redis-sentinel") or "redis-sentinel"
        self.procs["sentinel"] = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL)
        wait_for_port(self.sentinel_port, self.procs["sentinel"])
        self.wait_sentinel_sees_replica()
        return self

    def wait_replica_synced(self, timeout: float = 30.0) -> None:
        client = redis.Redis(port=self.replica_port, socket_timeout=2)
        deadline = time.monotonic() + timeout
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica did not sync with the master within {timeout}s")
            time.sleep(0.05)
        client.close()

    def wait_sentinel_sees_replica(self, timeout: float = 30.0) -> None:
        """The sentinel learns the replica from the master's INFO (every 10 s at most): wait for it,
        or a failover right after start-up would find nobody to promote."""
        client = redis.Redis(port=self.sentinel_port, socket_timeout=2, decode_responses=True)
        deadline = time.monotonic() + timeout
        while True:
            replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            if any(str(self.replica_port) in str(r) for r in replicas):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sentinel did not discover the replica within {timeout}s")
            time.sleep(0.1)
        client.close()

    def master_port_now(self) -> int:
        """The master's port as the sentinel reports it."""
        client = redis.Redis(port=self.sentinel_port, socket_timeout=2, decode_responses=True)
        try:
            _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            return int(port)
        finally:
            client.close()

    def kill_master(self) -> None:
        proc = self.procs["master"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def freeze_master(self) -> None:
        """SIGSTOP: the master keeps its sockets open and answers nothing, as behind a partition."""
        self.procs["master"].send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a frozen process handles SIGTERM only once continued
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def sentinel_redis(tmp_path: Path) -> Iterator[SentinelSet]:
    """A master, a replica and a sentinel of this test (skipped without the binaries, failed under CI)."""
    missing = [b for b in ("redis-server", "redis-sentinel") if not shutil.which(b)]
    if missing:
        if CI:
            pytest.fail(f"{', '.join(missing)} not installed (CI=true: the Sentinel tests must run); "
                        "python3 run.py test installs them from Debian's packages")
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install redis-server redis-sentinel)")
    group = SentinelSet(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()
