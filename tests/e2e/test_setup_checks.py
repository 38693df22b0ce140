"""Set-up mistakes of a fresh project get a system check or a start-up warning naming the fix
(docs/guide.md, "Set-up checks"), and a handler of the wrong shape stops a real daphne at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client import InvalidStatus, connect
from tests.e2e.test_docs import readme_setup
from tests.freshproject import NAME, FreshProject

pytestmark = pytest.mark.timeout(300)

ECHO = '''
from rockstar_ws import default_server as ws

@ws.route("/ws/echo")
async def echo(ctx, conn):
    async for message_type, data in conn:
        await conn.write_message(message_type, data)
'''


def project(tmp_path: Path, *, asgi: bool = True, routes: str = ECHO, settings_extra: str = "") -> FreshProject:
    """A fresh project set up as the README says, minus what a test leaves out."""
    p = FreshProject(tmp_path / "project")
    settings, asgi_block = readme_setup()
    p.append(f"{NAME}/settings.py", settings.text + "\n" + settings_extra)
    if asgi:
        p.write(f"{NAME}/asgi.py", asgi_block.text)
    p.write("myapp/ws_routes.py", routes)
    return p


def check_output(p: FreshProject) -> str:
    proc = p.manage("check", check=False)
    return proc.stdout + proc.stderr


def test_the_readme_set_up_passes_every_check(tmp_path):
    out = check_output(project(tmp_path))
    assert "rockstar_ws.W" not in out and "no issues" in out, out


def test_missing_daphne_is_named_with_the_fix(tmp_path):
    out = check_output(project(tmp_path, settings_extra='INSTALLED_APPS.remove("daphne")'))
    assert "rockstar_ws.W301" in out and "HTML 404" in out and "Put 'daphne' first in INSTALLED_APPS" in out, out


def test_asgi_py_left_as_generated_is_named_and_daphne_answers_500(tmp_path):
    p = project(tmp_path, asgi=False)
    out = check_output(p)
    assert "rockstar_ws.W303" in out and "Django can only handle ASGI/HTTP connections" in out, out
    assert "ProtocolTypeRouter" in out  # the hint shows the lines to write
    with p.server(log_dir=tmp_path) as server:  # what the check warns about, on a real daphne
        with pytest.raises(InvalidStatus) as refused:
            async_connect(server)
        assert refused.value.response.status_code == 500


def async_connect(server) -> None:
    import asyncio

    async def go() -> None:
        async with connect(server, "/ws/echo"):
            pass
    asyncio.run(go())


def test_websocket_side_that_does_not_reach_rockstar_ws_is_named(tmp_path):
    p = project(tmp_path)
    p.append(f"{NAME}/asgi.py", 'application.application_mapping["websocket"] = django_asgi_app')
    out = check_output(p)
    assert "rockstar_ws.W303" in out, out


def test_no_route_is_named(tmp_path):
    out = check_output(project(tmp_path, routes=""))
    assert "rockstar_ws.W304" in out and "ws_routes.py" in out, out


def test_rockstar_ws_missing_from_installed_apps_warns_where_the_server_is_imported(tmp_path):
    p = project(tmp_path, settings_extra='INSTALLED_APPS.remove("rockstar_ws")')
    proc = p.manage("shell", "-v", "0", "-c", f"import {NAME}.asgi", check=False)
    text = proc.stdout + proc.stderr
    assert '"rockstar_ws" is not in INSTALLED_APPS' in text and 'Add "rockstar_ws" to INSTALLED_APPS' in text, text


def test_a_handler_of_the_wrong_shape_stops_daphne_at_start_up_naming_the_fix(tmp_path):
    p = project(tmp_path, routes=ECHO + '''
@ws.route("/ws/x")
async def one_arg(conn):
    pass
''')
    server = p.server(log_dir=tmp_path)
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    server.stop()
    out = server.output()
    assert "myapp.ws_routes.one_arg(conn) of '/ws/x' must take two arguments (ctx, conn)" in out, out
    assert "write 'async def one_arg(ctx, conn):'" in out
