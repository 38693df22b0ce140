"""A refused handshake is one quiet log line on every server the project runs on: daphne,
daphne's ``manage.py runserver`` (the demo's server) and uvicorn. No "Logging error", no
traceback, no ERROR line (docs/protection.md, "What a refusal logs")."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.client import refusal_status
from tests.waiting import wait_until_async

pytestmark = pytest.mark.timeout(120)

#: The server's own line for a refused handshake of ``path`` (access log or its logger).
SERVER_LINE = {
    "daphne": r'"WSREJECT {path}"',
    "runserver": r"WebSocket REJECT {path} \[127\.0\.0\.1:\d+\]",
    "uvicorn": r'"WebSocket {path}" 404',
}


async def wait_for_line(server, pattern: str, timeout: float = 30) -> str:
    """Poll the server's log until ``pattern`` appears; the log at that moment."""
    def matched() -> str | None:
        out = server.output()
        return out if re.search(pattern, out) else None

    return await wait_until_async(matched, timeout, 0.1,
                                  message=lambda: f"no line matching {pattern!r} in:\n{server.output()[-3000:]}")


@pytest.mark.parametrize("kind", ["daphne", "runserver", "uvicorn"])
async def test_a_refusal_is_one_quiet_line(server_factory, kind):
    server = server_factory(kind)
    paths = [f"/ws/no-such-route-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for path in paths:
        status, _ = await refusal_status(server, path)
        assert status == 404
    # The second refusal's lines come after everything the first one logged (one event loop,
    # one connection after the other), so once they are there the first refusal is complete.
    out = await wait_for_line(server, SERVER_LINE[kind].format(path=re.escape(paths[1])))
    out = await wait_for_line(server, rf"refused \S*{re.escape(paths[1])} from 127\.0\.0\.1")
    assert "Logging error" not in out
    assert "Traceback" not in out
    assert "KeyError" not in out
    errors = [line for line in out.splitlines() if re.search(r"\bERROR\b", line)]
    assert errors == []
    for path in paths:
        ours = [line for line in out.splitlines() if "rockstar_ws.refusals" in line and path in line]
        assert len(ours) == 1 and " INFO " in ours[0], ours
        assert len(re.findall(SERVER_LINE[kind].format(path=re.escape(path)), out)) == 1
