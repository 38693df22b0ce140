"""The pure logic of rockstar.js (backoff, the offline queue, token timing) under node."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.servers import ROOT


def test_rockstar_js_pure_logic_under_node():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run([node, "--test", str(ROOT / "tests/js/rockstar_logic.test.mjs")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout and "# pass 9" in done.stdout, done.stdout
