"""Every Python block of the README and docs/*.md runs as pasted, in a fresh project served by a
real daphne, and every route the blocks register answers a handshake.

How a block is used (the rule docs/testing.md states for doc writers):

- a first line ``# mysite/settings.py`` (or ``# settings.py``) appends the block to settings.py;
- ``# mysite/asgi.py`` replaces asgi.py; any other ``# path.py`` writes (or appends to) that file;
- ``# python manage.py shell`` runs the block in ``manage.py shell`` once the project is migrated;
- any other block is appended to ``myapp/ws_routes.py``, in the order of the page: a reader
  pasting a page's blocks into one module gets exactly what the test runs;
- ``<!-- not-run: why -->`` on the line before a block skips it (a fragment, such as a signature);
- ``<!-- run -->`` before a ```sh block runs its ``python manage.py ...`` lines (set-up steps).
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.client import InvalidStatus, connect
from tests.conftest import CI, REDIS_HOST, REDIS_PORT, redis_available
from tests.freshproject import NAME, FreshProject
from tests.servers import ROOT
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
#: Blocks that are fragments on purpose; each carries its reason in the marker. Few, on purpose.
MAX_NOT_RUN = 5


@dataclass
class Block:
    lang: str
    text: str
    line: int
    marker: str = ""

    @property
    def header(self) -> str:
        first = self.text.split("\n", 1)[0].strip()
        return first[1:].strip() if first.startswith("#") else ""


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)

    def python(self) -> list[Block]:
        return [b for b in self.blocks if b.lang == "python" and not b.marker.startswith("not-run")]


def parse(path: Path) -> Page:
    page = Page(path)
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(1):
            start = i
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            before = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
            marker = before[4:-3].strip() if before.startswith("<!--") and before.endswith("-->") else ""
            page.blocks.append(Block(m.group(1), "\n".join(body), start + 1, marker))
        i += 1
    return page


PAGES = [p for p in map(parse, DOCS) if p.python()]


def test_not_run_markers_are_few_and_say_why():
    skipped = [(p.path.name, b.line, b.marker) for p in map(parse, DOCS) for b in p.blocks
               if b.marker.startswith("not-run")]
    assert all(m.startswith("not-run:") and len(m) > len("not-run:") + 10 for _, _, m in skipped), skipped
    assert len(skipped) <= MAX_NOT_RUN, skipped


def readme_setup() -> list[Block]:
    """The README's settings.py and asgi.py blocks: the set-up every page's project starts from."""
    blocks = [b for b in parse(ROOT / "README.md").python() if b.header in (f"{NAME}/settings.py", f"{NAME}/asgi.py")]
    assert [b.header for b in blocks] == [f"{NAME}/settings.py", f"{NAME}/asgi.py"], \
        "the README shows settings.py and asgi.py, each with a '# mysite/...' first line"
    return blocks


def build(tmp_path: Path, page: Page, prefix: str) -> tuple[FreshProject, list[Block]]:
    project = FreshProject(tmp_path / "project")
    project.write("myapp/ws_routes.py", "")
    setup = readme_setup()
    shells = []
    for block in [*setup, *(b for b in page.python() if b.text not in {s.text for s in setup})]:
        header = block.header
        if header.split(":", 1)[0].strip() in ("settings.py", f"{NAME}/settings.py"):
            project.append(f"{NAME}/settings.py", block.text)
        elif header == "python manage.py shell":
            shells.append(block)
        elif re.fullmatch(r"[\w/]+\.py", header):
            if header.endswith("asgi.py"):
                project.write(header, block.text)
            else:
                project.append(header, block.text)
        else:
            project.append("myapp/ws_routes.py", block.text)
    settings = project.path(f"{NAME}/settings.py")
    if "RedisChannelLayer" in settings.read_text():
        # The shared Redis: this test's keys get their own prefix (and are deleted afterwards).
        project.append(f"{NAME}/settings.py", f'CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "{prefix}"')
    return project, shells


ROUTES_SCRIPT = """
import json
from rockstar_ws import default_server
from rockstar_ws.tenants.models import TenantHost
hosts, tenant_of = {}, {}
for h in TenantHost.objects.select_related("tenant"):
    hosts.setdefault(h.tenant.identifier, h.host)
    tenant_of[h.host] = h.tenant.identifier
print(json.dumps([{"path": r.path, "host": r.host, "tenant": r.tenant, "auth": r.authenticated,
                   "scopes": list(r.allowed_scopes), "tenant_host": hosts.get(r.tenant),
                   "host_tenant": r.tenant or tenant_of.get(r.host)}
                  for r in default_server.routes]))
"""

TOKEN_SCRIPT = """
from django.contrib.auth import get_user_model
from rockstar_ws.auth.tokens import access_token_for
user, _ = get_user_model().objects.get_or_create(username="docs-reader")
print(access_token_for(user, scopes={scopes!r}, tenant={tenant!r}))
"""


def sample_path(path: str) -> str:
    return re.sub(r"<(?:(\w+):)?\w+>", lambda m: "1" if m.group(1) == "int" else "room1", path)


def run_setup_steps(project: FreshProject, page: Page) -> None:
    for block in page.blocks:
        if block.lang in ("sh", "console") and block.marker == "run":
            for line in block.text.splitlines():
                line = line.removeprefix("$ ").strip()
                if line.startswith("python manage.py "):
                    project.manage(*shlex.split(line.split("#", 1)[0])[2:])


async def open_route(server, route: dict, token: str | None) -> None:
    host = route["host"] or route["tenant_host"]
    if host and host.startswith("*."):
        host = "any" + host[1:]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(server, sample_path(route["path"]), host=f"{host}:{server.port}" if host else None,
                       additional_headers=headers):
        pass


@pytest.fixture
def redis_keys(request) -> Iterator[str]:
    """A Redis key prefix of this test; its keys are deleted afterwards (never FLUSHDB)."""
    prefix = f"docs{uuid.uuid4().hex[:10]}"
    yield prefix
    if redis_available():
        import redis

        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


@pytest.mark.parametrize("page", PAGES, ids=[p.path.name for p in PAGES])
async def test_python_blocks_run_as_pasted_and_their_routes_answer(page: Page, tmp_path: Path, redis_keys: str):
    if any("RedisChannelLayer" in b.text for b in page.python()) and not redis_available():
        if CI:
            pytest.fail(f"{page.path.name} configures Redis, which is not reachable (CI=true)")
        pytest.skip(f"{page.path.name} configures Redis, which is not reachable on 127.0.0.1:6379")
    project, shells = build(tmp_path, page, redis_keys)
    project.manage("migrate", "--noinput", "-v", "0")
    run_setup_steps(project, page)
    check = project.manage("check")
    # A project built from the docs alone is complete: no set-up warning of rockstar_ws.
    assert "rockstar_ws.W30" not in check.stdout + check.stderr, check.stdout + check.stderr
    for block in shells:
        project.shell(block.text)
    routes = json.loads(project.shell(ROUTES_SCRIPT).strip().splitlines()[-1])
    assert routes, f"{page.path.name} registers no route"
    with project.server(log_dir=tmp_path) as server:
        for route in routes:
            if route["tenant"] and not route["tenant_host"]:
                pytest.fail(f"{page.path.name}: route {route['path']} of tenant {route['tenant']} has no host: "
                            "the page must say how to create the tenant")
            token = None
            if route["auth"]:
                with pytest.raises(InvalidStatus) as refused:
                    await open_route(server, route, None)
                assert refused.value.response.status_code == 401
                token = project.shell(TOKEN_SCRIPT.format(scopes=route["scopes"] or None,
                                                          tenant=route["host_tenant"])).strip()
            await open_route(server, route, token)
        await CHECKS.get(page.path.name, _no_check)(project, server)


async def _no_check(project: FreshProject, server) -> None:
    return None


async def _examples(project: FreshProject, server) -> None:
    async with connect(server, "/ws/echo-logged") as ws:
        await ws.send("logged")
        assert await ws.recv() == "logged"
    wait_until(lambda: "WebSocket connection ended" in server.output(), message=server.output)
    async with connect(server, "/ws/echo-sync") as ws:
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"
    for tenant in ("tenant1", "tenant2"):  # the tenants the page says how to create
        async with connect(server, "/ws/chat", host=f"{tenant}.localhost:{server.port}") as ws:
            await ws.send("hi")
            assert await ws.recv() == f"[{tenant}] hi"


def post_json(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def _auth(project: FreshProject, server) -> None:
    """SimpleJWT's own TokenObtainPairView, with only the settings auth.md shows, issues tokens
    that carry the scopes SCOPE_MAP gives the user's group, and they open /ws/private."""
    import asyncio

    project.shell(
        "from django.contrib.auth import get_user_model\nfrom django.contrib.auth.models import Group\n"
        "U = get_user_model()\n"
        "w = U.objects.create_user('writer', password='writer-password')\n"
        "w.groups.add(Group.objects.get_or_create(name='writers')[0])\n"
        "U.objects.create_user('reader', password='reader-password')\n")
    uid = project.shell("from django.contrib.auth import get_user_model\n"
                        "print(get_user_model().objects.get(username='writer').pk)").strip()
    status, pair = await asyncio.to_thread(post_json, f"{server.http_url}/api/token/",
                                           {"username": "writer", "password": "writer-password"})
    assert status == 200, pair
    async with connect(server, "/ws/private", additional_headers={"Authorization": f"Bearer {pair['access']}"}) as ws:
        await ws.send("hi")
        assert await ws.recv() == f"User {uid}: hi"
    status, fresh = await asyncio.to_thread(post_json, f"{server.http_url}/api/token/refresh/",
                                            {"refresh": pair["refresh"]})
    assert status == 200, fresh
    async with connect(server, "/ws/private", additional_headers={"Authorization": f"Bearer {fresh['access']}"}):
        pass
    status, other = await asyncio.to_thread(post_json, f"{server.http_url}/api/token/",
                                            {"username": "reader", "password": "reader-password"})
    assert status == 200, other
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server, "/ws/private", additional_headers={"Authorization": f"Bearer {other['access']}"}):
            pass
    assert refused.value.response.status_code == 403
    wait_until(lambda: "insufficient scope" in server.output(), message=server.output)


async def _channels(project: FreshProject, server) -> None:
    """The page's project: the old consumer answers at its Channels route, the same consumer
    behind rockstar_ws's authenticated route sees what the token said."""
    async with connect(server, "/ws/legacy/lobby") as ws:
        assert json.loads(await ws.recv()) == {"room": "lobby", "user_id": None}
        await ws.send("hi")
        assert await ws.recv() == "[lobby] hi"
    token = project.shell(TOKEN_SCRIPT.format(scopes=["chat:read"], tenant=None)).strip()
    async with connect(server, "/ws/chat/den", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        hello = json.loads(await ws.recv())
        assert hello["room"] == "den" and hello["user_id"] is not None


CHECKS = {"examples.md": _examples, "auth.md": _auth, "channels.md": _channels}
