"""Fixtures shared by the transport tests: a test CA and a loopback TLS server it certifies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme
from _servers import RawServer, tls_server_context


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[RawServer]:
    """A TLS server for ``localhost`` (certified by ``ca``) that answers every request."""
    raw = RawServer("answer", tls=tls_server_context(ca))
    yield raw
    raw.close()
