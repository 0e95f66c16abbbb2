"""``msgstatus listen``: the Sendblue webhook receiver served by uvicorn, writing to a ledger.

uvicorn (extra ``msgstatus[server]``) owns the event loop and the signals: on SIGTERM or SIGINT
it stops accepting connections, waits for the requests in flight (their ``on_result`` calls
included) and then runs the lifespan shutdown, which closes the ledger.
"""

from __future__ import annotations

import logging
import socket
import sys
from datetime import datetime, timezone
from typing import TextIO

from msgstatus._ledger import Ledger
from msgstatus._providers.sendblue import SendblueWebhook
from msgstatus._status import StatusResult
from msgstatus._webhooks import Receive, Scope, Send

__all__ = ["GRACEFUL_SHUTDOWN_SECONDS", "ListenApp", "bind", "serve"]

logger = logging.getLogger("msgstatus.listen")

#: How long a graceful shutdown waits for requests in flight before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 30.0


class ListenApp:
    """The ASGI app ``listen`` serves: the Sendblue receiver writing to ``ledger``, one line per
    result on ``out``, the ledger closed at lifespan shutdown."""

    def __init__(self, ledger: Ledger, *, secret: str | None, out: TextIO) -> None:
        self.ledger = ledger
        self._out = out
        self.receiver = SendblueWebhook(self._record, secret=secret)

    async def _record(self, result: StatusResult) -> None:
        known = await self.ledger.observe(result)
        where = "recorded" if known else "not in the ledger (ignored)"
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._out.write(f"{stamp} {result.status.value} {result.handle} {where}\n")
        self._out.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "lifespan":
            await self.receiver(scope, receive, send)
            return
        while True:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message.get("type") == "lifespan.shutdown":
                try:
                    await self.ledger.aclose()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port). Raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(app: ListenApp, sock: socket.socket, *, out: TextIO = sys.stdout) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until SIGTERM / SIGINT, then shut down gracefully.

    Raises ``ImportError`` naming the extra when uvicorn is not installed.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(
            "msgstatus listen needs uvicorn: pip install 'msgstatus[server]'"
        ) from exc
    config = uvicorn.Config(
        app,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECONDS),
        # The body cap is the receiver's; uvicorn's own limits stay at their defaults.
    )
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    out.write(f"msgstatus listen: receiving Sendblue webhooks on http://{shown}:{port}\n")
    out.flush()
    server.run(sockets=[sock])
