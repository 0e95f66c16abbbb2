"""msgstatus's HTTP/1.1 client framing (``_http11``), checked against h11 on the same bytes.

h11 framed the pool's exchanges before ``_http11`` replaced it for speed: for any response a
server may send, cut into pieces anywhere, both must read the same status, headers, body and
keep-alive verdict, and both must refuse what is broken.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstatus._transports._http11 import (
    MAX_HEAD,
    NEED_DATA,
    Head,
    LocalProtocolError,
    RemoteProtocolError,
    ResponseReader,
    request_bytes,
)

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.text(TOKEN_CHARS, min_size=1, max_size=12).filter(
    lambda name: name.lower() not in {"content-length", "transfer-encoding", "connection"}
)
values = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=20
).map(lambda text: text.encode("ascii"))


@dataclass
class Read:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool


def read_with_h11(pieces: list[bytes], method: bytes = b"GET") -> Read:
    conn = h11.Connection(our_role=h11.CLIENT)
    conn.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"x")]))
    conn.send(h11.EndOfMessage())
    feed = iter([*pieces, b""])
    status, headers, body = 0, [], b""
    ended = False
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = next(feed)
            ended = not data
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            status, headers = event.status_code, list(event.headers)
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            break
    # Kept alive: both sides DONE at the end of the message (the old pool's test), on a
    # connection whose end has not come (a body read to the end of the connection).
    both_done = conn.our_state is h11.DONE and conn.their_state is h11.DONE
    return Read(status, headers, body, both_done and not ended)


def read_with_ours(pieces: list[bytes], method: bytes = b"GET") -> Read:
    reader = ResponseReader()
    reader.expect(method)
    feed = iter([*pieces, b""])
    while (head := reader.head()) is NEED_DATA:
        reader.feed(next(feed))
    assert isinstance(head, Head)
    body = b""
    while (piece := reader.body()) is not None:
        if piece is NEED_DATA:
            reader.feed(next(feed))
        else:
            assert isinstance(piece, bytes)
            body += piece
    return Read(head.status, head.headers, body, reader.keep_alive)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if data[a:b]]


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 201, 204, 304, 400, 403, 404, 429, 500, 503]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    headers = draw(st.lists(st.tuples(names, values), max_size=6))
    body = draw(st.binary(max_size=300)) if status not in (204, 304) else b""
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if draw(st.booleans()):
        headers.append(("Connection", draw(st.sampled_from([b"close", b"keep-alive"]))))
    interim = draw(st.sampled_from([b"", b"HTTP/1.1 100 Continue\r\n\r\n"]))
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    lines = [b"HTTP/" + version + b" %d Reason" % status]
    lines += [name.encode() + b": " + value for name, value in headers]
    if status in (204, 304):
        payload = b""
    elif framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 64), max_size=6))
        payload, rest = b"", body
        for size in sizes:
            if not rest:
                break
            payload += b"%x\r\n%s\r\n" % (len(rest[:size]), rest[:size])
            rest = rest[size:]
        if rest:
            payload += b"%x;ext=1\r\n%s\r\n" % (len(rest), rest)
        payload += b"0\r\n" + draw(st.sampled_from([b"", b"Trailer-One: x\r\n"])) + b"\r\n"
    else:
        payload = body
    return interim + eol.join(lines) + eol + eol + payload


@settings(max_examples=400, deadline=None)
@given(response=responses(), points=st.lists(st.integers(0, 10_000), max_size=8))
def test_any_response_reads_as_h11_reads_it(response: bytes, points: list[int]) -> None:
    pieces = cut(response, points)
    assert read_with_ours(pieces) == read_with_h11(pieces)


def test_a_response_to_head_has_no_body() -> None:
    response = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"]
    assert read_with_ours(response, b"HEAD") == read_with_h11(response, b"HEAD")
    assert read_with_ours(response, b"HEAD").body == b""


BROKEN = [
    pytest.param(b"", id="nothing"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="head-cut"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", id="body-cut"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", id="chunk-cut"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab", id="no-last"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-size"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", id="no-crlf"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", id="other-coding"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", id="two"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", id="negative"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", id="hex-length"),
    pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n", id="not-http"),
    pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="bad-status"),
    pytest.param(b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", id="no-colon"),
    pytest.param(b"HTTP/1.1 200 OK\r\nName : v\r\n\r\n", id="space-before-colon"),
    pytest.param(b"HTTP/1.1 200 OK\r\nName: a\x00b\r\n\r\n", id="nul-in-value"),
    pytest.param(b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", id="fold-first"),
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", id="upgrade"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
        id="bad-trailer",
    ),
]


@pytest.mark.parametrize("response", BROKEN)
def test_a_broken_response_is_refused_as_h11_refuses_it(response: bytes) -> None:
    with pytest.raises(h11.RemoteProtocolError):
        read_with_h11([response])
    with pytest.raises(RemoteProtocolError):
        read_with_ours([response])


def test_an_oversized_head_is_refused() -> None:
    reader = ResponseReader()
    reader.expect(b"GET")
    reader.feed(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * MAX_HEAD)
    with pytest.raises(RemoteProtocolError, match="over"):
        reader.head()


def test_a_folded_header_line_is_unfolded_as_h11_unfolds_it() -> None:
    response = [b"HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\n\tthree\r\nContent-Length: 0\r\n\r\n"]
    assert read_with_ours(response) == read_with_h11(response)
    assert (b"x-a", b"one two three") in read_with_ours(response).headers


def test_chunked_with_a_content_length_is_read_chunked_and_not_kept() -> None:
    # h11 reads it chunked and would keep the connection; RFC 9112 §6.3 says such a message may
    # be a smuggling attempt, so the connection is not trusted with another request.
    response = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"2\r\nab\r\n0\r\n\r\n"
    ]
    ours, theirs = read_with_ours(response), read_with_h11(response)
    assert (ours.status, ours.headers, ours.body) == (theirs.status, theirs.headers, theirs.body)
    assert ours.body == b"ab"
    assert not ours.keep_alive


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * MAX_HEAD + b"\r\n\r\n", id="head"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * (MAX_HEAD + 1),
            id="chunk-line",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"x" * MAX_HEAD + b"\r\n",
            id="chunk-line-ended",
        ),
    ],
)
def test_a_line_over_the_cap_is_refused_whole_or_not(response: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="over"):
        read_with_ours([response])


def test_bytes_after_a_response_make_the_connection_unusable() -> None:
    reader = ResponseReader()
    reader.expect(b"GET")
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
    assert isinstance(reader.head(), Head)
    assert reader.body() == b"ok"
    assert reader.body() is None
    assert not reader.reusable()
    with pytest.raises(LocalProtocolError):
        reader.expect(b"GET")


def test_a_kept_alive_connection_reads_the_next_response() -> None:
    reader = ResponseReader()
    for body in (b"one", b"second"):
        reader.expect(b"GET")
        reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert isinstance(reader.head(), Head)
        assert reader.body() == body
        assert reader.body() is None
        assert reader.reusable()


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from([b"GET", b"POST", b"PUT"]),
    target=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1).map(
        str.encode
    ),
    headers=st.lists(st.tuples(names.map(str.encode), values), max_size=6),
    body=st.binary(max_size=50),
)
def test_a_request_is_the_bytes_h11_writes(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [(n, v) for n, v in headers if n.lower() != b"host"]
    headers = [(b"Host", b"example.test"), *headers]
    if body:
        headers.append((b"Content-Length", b"%d" % len(body)))
    conn = h11.Connection(our_role=h11.CLIENT)
    expected = conn.send(h11.Request(method=method, target=target, headers=headers))
    if body:
        expected += conn.send(h11.Data(data=body))
    expected += conn.send(h11.EndOfMessage())
    assert request_bytes(method, target, headers, body) == expected


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param([(b"host", b"x"), (b"x-token", b"a\r\nInjected: 1")], b"", id="crlf"),
        pytest.param([(b"host", b"x"), (b"x-token", b"a\nb")], b"", id="lf"),
        pytest.param([(b"host", b"x"), (b"x-token", b"a\x00b")], b"", id="nul"),
        pytest.param([(b"host", b"x"), (b"bad name", b"v")], b"", id="name"),
        pytest.param([(b"x-no-host", b"v")], b"", id="no-host"),
        pytest.param([(b"host", b"x"), (b"host", b"y")], b"", id="two-hosts"),
        pytest.param([(b"host", b"x"), (b"content-length", b"9")], b"abc", id="wrong-length"),
        pytest.param(
            [(b"host", b"x"), (b"content-length", b"3"), (b"content-length", b"4")],
            b"abc",
            id="two-lengths",
        ),
        pytest.param([(b"host", b"x"), (b"transfer-encoding", b"chunked")], b"a", id="te"),
    ],
)
def test_a_request_http_does_not_allow_is_refused(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        request_bytes(b"GET", b"/", headers, body)
    assert b"Injected" not in str(caught.value).encode()
    with pytest.raises(LocalProtocolError, match="line"):
        request_bytes(b"GET", b"/with space", [(b"host", b"x")], b"")
