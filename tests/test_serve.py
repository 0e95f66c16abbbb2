"""``msgstatus listen``'s pieces in process: the ASGI app (a push written to the ledger and one
line out, the lifespan closing the ledger), the listening socket, and the missing-extra hint.
The real uvicorn process is tests/ledger/test_push_e2e.py."""

from __future__ import annotations

import io
import socket
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from msgstatus import SQLiteLedger
from msgstatus._serve import ListenApp, bind, serve

pytestmark = pytest.mark.anyio

SECRET = "listen-secret-0123456789"
HANDLE = "6c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"


class Lifespan:
    """The server's side of a lifespan call: the given messages, then what the app sent."""

    def __init__(self, *incoming: str) -> None:
        self.incoming = [{"type": kind} for kind in incoming]
        self.sent: list[dict[str, object]] = []

    async def receive(self) -> dict[str, object]:
        if not self.incoming:
            raise AssertionError("the app read past the lifespan messages it was given")
        return self.incoming.pop(0)

    async def send(self, message: dict[str, object]) -> None:
        self.sent.append(message)


async def test_a_push_is_written_to_the_ledger_and_one_line_out(tmp_path: Path) -> None:
    out = io.StringIO()
    async with SQLiteLedger(tmp_path / "ledger.sqlite3") as ledger:
        app = ListenApp(ledger, secret=SECRET, out=out)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://listen"
        ) as client:
            response = await client.post(
                "/",
                json={"message_handle": HANDLE, "status": "DELIVERED"},
                headers={"sb-signing-secret": SECRET},
            )
    assert response.status_code == 200
    [line] = out.getvalue().splitlines()
    stamp, rest = line.split(" ", 1)
    assert stamp.endswith("+00:00")
    assert rest == f"DELIVERED sendblue:{HANDLE} not in the ledger (ignored)"


async def test_the_lifespan_shutdown_closes_the_ledger(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    app = ListenApp(ledger, secret=SECRET, out=io.StringIO())
    peer = Lifespan("lifespan.startup", "lifespan.not-yet-invented", "lifespan.shutdown")
    with anyio.fail_after(10):
        await app({"type": "lifespan"}, peer.receive, peer.send)
    assert peer.sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    with pytest.raises(RuntimeError, match="the ledger is closed"):
        await ledger.in_flight()


async def test_the_shutdown_is_acknowledged_even_when_closing_the_ledger_fails(
    tmp_path: Path,
) -> None:
    class FailingClose(SQLiteLedger):
        async def aclose(self) -> None:
            await super().aclose()
            raise OSError("disk gone")

    app = ListenApp(FailingClose(tmp_path / "ledger.sqlite3"), secret=SECRET, out=io.StringIO())
    peer = Lifespan("lifespan.startup", "lifespan.shutdown")
    with pytest.raises(OSError, match="disk gone"):
        await app({"type": "lifespan"}, peer.receive, peer.send)
    assert peer.sent[-1] == {"type": "lifespan.shutdown.complete"}


def test_bind_gives_a_listening_socket_on_a_free_port() -> None:
    with bind("127.0.0.1", 0) as sock:
        host, port = sock.getsockname()
        assert (host, sock.family) == ("127.0.0.1", socket.AF_INET)
        assert port > 0
        assert sock.get_inheritable()
        with socket.create_connection((host, port), timeout=5):
            pass


def test_bind_to_a_port_in_use_raises_and_closes_its_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[socket.socket] = []

    class Recording(socket.socket):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr("msgstatus._serve.socket.socket", Recording)
        with pytest.raises(OSError, match="in use"):
            bind("127.0.0.1", port)
    [sock] = made
    assert sock.fileno() == -1  # closed, not leaked


def test_serve_without_uvicorn_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    app = ListenApp(SQLiteLedger(tmp_path / "ledger.sqlite3"), secret=None, out=io.StringIO())
    out = io.StringIO()
    with bind("127.0.0.1", 0) as sock, pytest.raises(ImportError) as caught:
        serve(app, sock, out=out)
    assert str(caught.value) == "msgstatus listen needs uvicorn: pip install 'msgstatus[server]'"
    assert out.getvalue() == ""  # nothing announced for a server that never started
