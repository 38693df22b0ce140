"""How a broadcast is encoded: the ASGI message built once for every member, its compact layer
form (``[1, text]`` or ``[2, bytes]``), and daphne's frame prepared once."""

from __future__ import annotations

from typing import Any

from ..core.messages import BinaryMessage, TextMessage

__all__ = ["MESSAGE_TYPE", "Prepared", "from_payload", "payload", "size", "ws_message"]

#: channel-layer message type of a broadcast between processes
MESSAGE_TYPE = "rockstar.broadcast"


def ws_message(message_type: int, data: Any) -> dict[str, Any]:
    """The ASGI ``websocket.send`` message for one broadcast (built once, shared by all members)."""
    if message_type == TextMessage:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8")
        elif not isinstance(data, str):
            raise TypeError(f"Text broadcast data must be str or UTF-8 bytes, not {type(data).__name__}")
        return {"type": "websocket.send", "text": data}
    if message_type == BinaryMessage:
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif not isinstance(data, bytes):
            raise TypeError(f"Binary broadcast data must be bytes or str, not {type(data).__name__}")
        return {"type": "websocket.send", "bytes": data}
    raise ValueError(f"Broadcast message type must be TextMessage (1) or BinaryMessage (2), not {message_type!r}")


def payload(msg: dict[str, Any]) -> list[Any]:
    """Compact layer form of a websocket.send message: [1, text] or [2, bytes]."""
    text = msg.get("text")
    return [1, text] if text is not None else [2, msg["bytes"]]


def from_payload(item: list[Any]) -> dict[str, Any]:
    kind, data = item
    return {"type": "websocket.send", "text": data} if kind == 1 else {"type": "websocket.send", "bytes": data}


def size(msg: dict[str, Any]) -> int:
    text = msg.get("text")
    return len(text) if text is not None else len(msg["bytes"])


class Prepared:
    """One broadcast, framed once for every daphne member (autobahn's PreparedMessage)."""

    __slots__ = ("msg", "_frame")

    def __init__(self, msg: dict[str, Any]) -> None:
        self.msg = msg
        self._frame: Any = None

    def frame(self) -> Any:
        if self._frame is None:
            from autobahn.websocket.protocol import PreparedMessage

            text = self.msg.get("text")
            payload = text.encode("utf-8") if text is not None else self.msg["bytes"]
            self._frame = PreparedMessage(payload, text is None, False, False)
        return self._frame
