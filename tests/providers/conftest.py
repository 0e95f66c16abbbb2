"""Fixtures shared by the provider tests."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

_TLS_CONTEXT = httpx.create_ssl_context()


def _shared_tls_context(**kwargs: Any) -> ssl.SSLContext:
    assert kwargs.get("verify", True) is True
    assert kwargs.get("cert") is None
    return _TLS_CONTEXT


@pytest.fixture
def reuse_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build httpx's default TLS context once, not once per client.

    Loading the CA bundle takes ~25 ms, and the httpx-based provider tests build hundreds of
    clients. The context is httpx's own default (certificates verified), only shared.
    """
    monkeypatch.setattr("httpx._transports.default.create_ssl_context", _shared_tls_context)
