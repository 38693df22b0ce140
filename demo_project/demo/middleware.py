"""The reference's logging middleware, ported: it times the whole connection's life."""

import logging
import time

from rockstar_ws import Context
from rockstar_ws.core.logsafe import escape

log = logging.getLogger("demo")


async def ws_logging_middleware(ctx: Context, next):
    """Log when a connection starts and ends, with its duration."""
    start = time.monotonic()
    # remote_addr comes from X-Forwarded-For behind daphne's --proxy-headers: client text.
    log.info("WebSocket connection started: %s", escape(ctx.request.remote_addr))
    try:
        return await next(ctx)
    finally:
        log.info("WebSocket connection ended: %s (duration: %.3fs)", escape(ctx.request.remote_addr),
                 time.monotonic() - start)
