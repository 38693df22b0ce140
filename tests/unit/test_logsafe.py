"""rockstar_ws.logsafe.escape: client text that cannot break a log line."""

from __future__ import annotations

import pytest

from rockstar_ws.core.logsafe import LOG_VALUE_LIMIT, escape


@pytest.mark.parametrize(("raw", "logged"), [
    ("/ws/chat", "/ws/chat"),
    ("/ws/a\r\nINFO forged", "/ws/a\\r\\nINFO forged"),
    ("tab\there", "tab\\there"),
    ("\x1b[2Jclear", "\\x1b[2Jclear"),
    ("nel\x85 del\x7f nul\x00", "nel\\x85 del\\x7f nul\\x00"),
    ("sep\u2028par\u2029bom\ufeff", "sep\\u2028par\\u2029bom\\ufeff"),
    ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ("café 東京 🎸", "café 東京 🎸"),  # printable text stays readable
    (None, "-"),
    (404, "404"),
])
def test_escape(raw, logged):
    assert escape(raw) == logged


def test_no_escaped_value_contains_a_line_break_of_any_kind():
    every = "".join(chr(c) for c in range(0x3000))
    out = escape(every, limit=0)
    assert len(out.splitlines()) == 1
    assert out.isprintable()


def test_long_values_are_cut_and_the_cut_is_said():
    out = escape("x" * 1000)
    assert out == "x" * LOG_VALUE_LIMIT + f"...[+{1000 - LOG_VALUE_LIMIT} chars]"
    assert escape("y" * 30, limit=10) == "y" * 10 + "...[+20 chars]"
