"""Client-controlled text made safe for a log line.

A path, a query string, a ``Host`` or ``Origin`` header, a subprotocol, a user agent, a close
reason or a token error can carry CR/LF (``%0d%0a`` in a path, decoded by the ASGI server) and
forge whole log lines, or terminal escape sequences that rewrite what an operator sees. Every
log line of rockstar_ws that carries such text passes it through :func:`escape` first.
"""

from __future__ import annotations

__all__ = ["LOG_VALUE_LIMIT", "escape"]

#: Characters of one client-controlled value kept in a log line; the rest is cut and counted.
LOG_VALUE_LIMIT = 200

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return _SHORT.get(ch) or f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(value: object, limit: int = LOG_VALUE_LIMIT) -> str:
    """``value`` as text that cannot break a log line: control characters (CR, LF, tab, ESC...),
    C1 controls and non-printable characters (line and paragraph separators, format characters,
    lone surrogates) become ``\\r``, ``\\n``, ``\\xNN``, ``\\uNNNN`` escapes as ``repr()`` writes
    them; printable text, non-ASCII letters included, stays as it is. More than ``limit``
    characters are cut, and the cut is said (``...[+N chars]``). ``None`` is ``-``.

    The backslash itself is kept, so an already ``repr()``-escaped detail stays readable; what
    matters for a log line is that no character of the value can end it or move the cursor.
    """
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    extra = len(text) - limit if limit and len(text) > limit else 0
    if extra:
        text = text[:limit]
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)
    return f"{text}...[+{extra} chars]" if extra else text
