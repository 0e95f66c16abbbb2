"""Issue 11: each promise of SECURITY.md against a hostile provider, a careless caller and a dying
process. One section per numbered item of the issue; hostile servers are raw loopback servers
(``_raw_server.RawServer``) or the emulators."""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest

from _raw_server import RawServer, http_response
from msgstatus import (
    ChimeHandle,
    ChimeProvider,
    InvalidHandleError,
    MsgStatusError,
    ProviderResponseError,
    ProviderUnavailableError,
    RetryPolicy,
    SendblueProvider,
    StatusClient,
    StatusResult,
    SyncStatusClient,
)
from msgstatus._status import MAX_RAW_BYTES, MAX_RAW_DEPTH, MAX_RESULT_MEMORY, MAX_TEXT_LENGTH
from msgstatus.errors import ClientClosedError
from msgstatus.testing import ChimeEmulator, SendblueEmulator

SECRET = "sb-hardening-secret-7c1e9a"
ONE_TRY = RetryPolicy(max_attempts=1)
BEARER = "arn:aws:chime:us-east-1:111122223333:app-instance/a/user/u"
CHANNEL = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c"
MiB = 1024 * 1024

pytestmark = pytest.mark.anyio


def sendblue(server: RawServer, **options: Any) -> SendblueProvider:
    options.setdefault("retry", ONE_TRY)
    options.setdefault("timeout", 5.0)
    return SendblueProvider("key-id", SECRET, base_url=server.base_url, **options)


def chime(server: RawServer) -> ChimeProvider:
    session = boto3.session.Session(
        aws_access_key_id="AKID", aws_secret_access_key="aws-secret", region_name="us-east-1"
    )
    return ChimeProvider(
        session=session,
        endpoint_url=server.base_url,
        bearer=BEARER,
        retry=ONE_TRY,
        connect_timeout=2,
        read_timeout=2,
    )


def status_body(handle: str, **fields: Any) -> bytes:
    return json.dumps({"message_handle": handle, "status": "DELIVERED", **fields}).encode()


def sendblue_ok(target: str, query: dict[str, str]) -> bytes:
    return http_response(status_body(query["handle"]))


def bounded_wait(condition: Any, seconds: float = 10.0) -> bool:
    """Poll ``condition`` for at most ``seconds`` (a bound, not a timing assertion)."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


# -- 2. SyncStatusClient.close() after leaving iter_statuses early -----------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_2_sync_close_returns_after_a_break_out_of_iter_statuses(backend: str) -> None:
    unraisable: list[Any] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with SendblueEmulator("k", SECRET, latency=0.05) as emulator:
            handles = [emulator.add_message(status="DELIVERED") for _ in range(50)]
            provider = emulator.provider(retry=ONE_TRY)
            client = SyncStatusClient([provider], backend=backend)
            results = client.iter_statuses(handles, concurrency=4)
            for _pair in results:
                break
            closer = threading.Thread(target=client.close, daemon=True)
            closer.start()
            closer.join(10)
            assert not closer.is_alive(), "close() did not return"
            assert provider.closed
            del results, _pair
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    assert unraisable == []


# -- 4. gzip bombs -----------------------------------------------------------------------------


def _gzip_bomb() -> bytes:
    return gzip.compress(gzip.compress(b"\0" * (200 * MiB), 9), 9)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return _gzip_bomb()


async def test_4_a_gzip_gzip_bomb_is_refused_within_a_few_mib(gzip_bomb: bytes) -> None:
    assert len(gzip_bomb) < 1024  # 200 MiB of zeros, twice compressed
    headers = (("Content-Type", "application/json"), ("Content-Encoding", "gzip, gzip"))
    with RawServer(lambda t, q: http_response(gzip_bomb, headers=headers)) as server:
        async with sendblue(server) as provider:
            tracemalloc.start()
            try:
                with pytest.raises(ProviderResponseError, match="larger than"):
                    await provider.get_status("sendblue:bomb")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert peak < 8 * MiB


async def test_4_gzip_and_deflate_bodies_within_the_cap_are_read() -> None:
    import zlib

    def answer(target: str, query: dict[str, str]) -> bytes:
        body = status_body(query["handle"])
        if query["handle"] == "gz":
            return http_response(gzip.compress(body), headers=(("Content-Encoding", "gzip"),))
        if query["handle"] == "gzgz":
            double = gzip.compress(gzip.compress(body))
            return http_response(double, headers=(("Content-Encoding", "gzip, gzip"),))
        return http_response(zlib.compress(body), headers=(("Content-Encoding", "deflate"),))

    with RawServer(answer) as server:
        async with sendblue(server) as provider:
            for handle in ("gz", "gzgz", "deflate"):
                result = await provider.get_status(f"{handle}")
                assert result.status == "DELIVERED"


async def test_4_an_unknown_content_encoding_is_a_typed_error() -> None:
    headers = (("Content-Encoding", "br"),)
    with RawServer(lambda t, q: http_response(b"\x0b\x02\x80{}\x03", headers=headers)) as server:
        async with sendblue(server) as provider:
            with pytest.raises(ProviderResponseError, match="br"):
                await provider.get_status("sendblue:x")


def _chunked(pieces: list[bytes], headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A chunked response (no Content-Length), one HTTP chunk per piece."""
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in headers]
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces if piece)
    return "\r\n".join([*head, "Connection: close", "", ""]).encode() + body + b"0\r\n\r\n"


GZIP = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))


@pytest.mark.parametrize(
    ("body", "encoding", "message"),
    [
        pytest.param(gzip.compress(status_body("x"))[:-12], "gzip", "ends early", id="cut"),
        pytest.param(
            gzip.compress(status_body("x"))[:10] + b"\xff" * 40, "gzip", "is corrupt", id="bad"
        ),
        pytest.param(
            gzip.compress(gzip.compress(gzip.compress(status_body("x")))),
            "gzip, gzip, gzip",
            "3 content encodings stacked",
            id="three-layers",
        ),
    ],
)
async def test_4_a_compressed_body_msgstatus_cannot_decode_is_a_typed_error(
    body: bytes, encoding: str, message: str
) -> None:
    headers = (("Content-Type", "application/json"), ("Content-Encoding", encoding))
    with RawServer(lambda t, q: http_response(body, headers=headers)) as server:
        async with sendblue(server) as provider:
            with pytest.raises(ProviderResponseError, match=message) as caught:
                await provider.get_status("sendblue:x")
    assert "could not be read" in str(caught.value)
    assert caught.value.__cause__ is None
    assert server.requests == 1


async def test_4_a_compressed_body_arriving_a_byte_at_a_time_is_decoded() -> None:
    body = gzip.compress(status_body("x", status="READ"))
    pieces = [bytes([byte]) for byte in body]
    with RawServer(lambda t, q: _chunked(pieces, headers=GZIP[1:])) as server:
        async with sendblue(server) as provider:
            result = await provider.get_status("sendblue:x")
    assert (result.status, result.handle) == ("READ", "sendblue:x")


async def test_4_bytes_after_a_compressed_body_count_against_the_raw_cap() -> None:
    """Bytes after the end of the gzip stream are ignored (as httpx does) but not read without
    end: without a Content-Length the raw bytes are capped too, decoded or not."""
    pieces = [gzip.compress(status_body("x")), *([b"\0" * (64 * 1024)] * 40)]  # 2.5 MiB after
    with RawServer(lambda t, q: _chunked(pieces, headers=GZIP[1:])) as server:
        async with sendblue(server) as provider:
            with pytest.raises(ProviderResponseError, match="larger than"):
                await provider.get_status("sendblue:x")
            # Within the cap the trailing bytes are ignored.
            pieces[1:] = [b"\0" * 1024]
            assert (await provider.get_status("sendblue:x")).status == "DELIVERED"


async def test_4_a_body_an_event_hook_streamed_away_is_a_typed_error() -> None:
    import httpx

    async def drain(response: httpx.Response) -> None:
        async for _ in response.aiter_raw():
            pass

    with RawServer(lambda t, q: http_response(status_body("x"))) as server:
        client = httpx.AsyncClient(event_hooks={"response": [drain]})
        async with client, sendblue(server, http_client=client) as provider:
            with pytest.raises(ProviderResponseError, match="streamed by someone else"):
                await provider.get_status("sendblue:x")


# -- 5. amplification: what a result keeps is bounded ------------------------------------------


def _amplifier(handle: str) -> bytes:
    items = ",".join(["{}"] * ((1024 * 1024 - 100) // 3))
    return f'{{"message_handle":"{handle}","status":"DELIVERED","x":[{items}]}}'.encode()


def _deep_size(root: object) -> int:
    """Bytes of every object reachable from ``root`` (classes and modules excluded)."""
    import types

    seen: set[int] = set()
    todo, total = [root], 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType)):
            continue
        if obj is None or isinstance(obj, bool):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return total


async def test_5_a_result_keeps_a_bounded_raw_and_cached_results_a_bounded_memory() -> None:
    count = 4
    bodies = {f"m{n}": http_response(_amplifier(f"m{n}")) for n in range(count + 1)}
    with RawServer(lambda t, q: bodies[q["handle"]]) as server:
        async with StatusClient([sendblue(server)], cache_size=count) as client:
            results = [await client.get_status(f"sendblue:m{n}") for n in range(count + 1)]
            assert len(client._cache) == count
            cached = list(client._cache.values())
    first = results[0]
    assert first.status == "DELIVERED"
    assert first.raw["message_handle"] == "m0"
    assert "x" not in first.raw
    assert first.raw["msgstatus_raw_truncated"] is True
    assert len(json.dumps(first.raw, separators=(",", ":"))) <= MAX_RAW_BYTES
    # Each 1 MiB body became ~24 MiB of Python objects before; a cached result is now bounded.
    for result in cached:
        assert _deep_size(result) <= MAX_RESULT_MEMORY


def test_5_raw_within_the_limits_is_kept_whole_and_beyond_them_cut() -> None:
    small = {"status": "SENT", "nested": {"a": [1, 2, {"b": None}]}}
    assert StatusResult(provider="p", handle="p:1", status="SENT", raw=small).raw == small
    wide = {"status": "SENT", **{f"k{n}": "v" * 100 for n in range(1000)}}
    kept = StatusResult(provider="p", handle="p:1", status="SENT", raw=wide).raw
    assert kept["status"] == "SENT"
    assert kept["msgstatus_raw_truncated"] is True
    assert len(json.dumps(kept, separators=(",", ":"))) <= MAX_RAW_BYTES
    long_text = StatusResult(provider="p", handle="p:1", status="SENT", detail="d" * 10**6)
    assert long_text.detail is not None
    assert len(long_text.detail) <= MAX_TEXT_LENGTH


def test_5_measured_memory_of_the_largest_result_is_within_the_documented_cap() -> None:
    # The worst shapes within the raw limits: many small containers, many short strings.
    shapes: list[dict[str, Any]] = [
        {f"k{n}": {} for n in range(MAX_RAW_BYTES // 8)},
        {"a": [[] for _ in range(MAX_RAW_BYTES // 3)]},
        {f"{n}": n for n in range(MAX_RAW_BYTES // 6)},
    ]
    for raw in shapes:
        gc.collect()
        tracemalloc.start()
        try:
            result = StatusResult(
                provider="p",
                handle="p:" + "h" * 4000,
                status="SENT",
                provider_status="s" * 10**5,
                detail="d" * 10**5,
                error_code="e" * 10**5,
                raw=raw,
            )
            del raw
            gc.collect()
            kept, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert kept <= MAX_RESULT_MEMORY, kept
        del result


# -- 6. deep nesting is a typed error ----------------------------------------------------------


def _deep_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [MAX_RAW_DEPTH + 1, 500, 985, 5000, 100_000])
async def test_6_a_deeply_nested_sendblue_body_is_a_typed_error(depth: int) -> None:
    def answer(target: str, query: dict[str, str]) -> bytes:
        nested = "[" * depth + "]" * depth
        body = f'{{"message_handle":"{query["handle"]}","status":"SENT","x":{nested}}}'
        return http_response(body.encode())

    with RawServer(answer) as server:
        async with sendblue(server) as provider:
            with pytest.raises(ProviderResponseError, match=r"nested|JSON"):
                await provider.get_status("sendblue:deep")


@pytest.mark.parametrize("depth", [500, 985, 5000, 100_000])
def test_6_result_from_payload_refuses_any_depth_with_a_typed_error(depth: int) -> None:
    payload = {"message_handle": "m", "status": "SENT", "x": _deep_list(depth)}
    provider = SendblueProvider("k", SECRET)
    with pytest.raises(ProviderResponseError, match="nested"):
        provider.result_from_payload(payload)
    session = boto3.session.Session(
        aws_access_key_id="AKID", aws_secret_access_key="s", region_name="us-east-1"
    )
    chime_provider = ChimeProvider(session=session, bearer=BEARER)
    response = {"ChannelArn": CHANNEL, "MessageId": "m1", "Status": {"Value": "SENT"}}
    with pytest.raises(ProviderResponseError, match="nested"):
        chime_provider.result_from_payload({**response, "x": _deep_list(depth)})
    chime_provider.client.close()


@pytest.mark.parametrize("depth", [500, 5000])
async def test_6_a_deeply_nested_chime_body_is_a_typed_error(depth: int) -> None:
    def answer(target: str, query: dict[str, str]) -> bytes:
        nested = "[" * depth + "]" * depth
        return http_response(f'{{"Status":{{"Value":"SENT"}},"X":{nested}}}'.encode())

    with RawServer(answer) as server:
        async with chime(server) as provider:
            try:
                result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
            except MsgStatusError:
                pass  # a typed error is what the promise asks
            else:  # botocore drops members the model does not know
                assert result.status == "SENT"


def test_6_a_deep_raw_given_to_status_result_is_cut_not_a_recursion_error() -> None:
    result = StatusResult(provider="p", handle="p:1", status="SENT", raw={"x": _deep_list(10**5)})
    assert result.raw == {"msgstatus_raw_truncated": True}
    result.model_dump_json()


# -- 7. lone surrogates ------------------------------------------------------------------------


def _surrogate_answer(target: str, query: dict[str, str]) -> bytes:
    body = (
        f'{{"message_handle":"{query["handle"]}","status":"ERROR\\udc80",'
        '"error_message":"bad \\udc80 text","\\ud800key":"\\udfff"}'
    )
    return http_response(body.encode())


async def test_7_lone_surrogates_from_sendblue_serialize() -> None:
    with RawServer(_surrogate_answer) as server:
        async with sendblue(server) as provider:
            result = await provider.get_status("sendblue:s1")
    text = result.model_dump_json()
    assert "\\ufffd" in text or "\ufffd" in text
    assert json.loads(text)["handle"] == "sendblue:s1"
    assert result.detail == "bad \ufffd text"


async def test_7_a_lone_surrogate_in_chime_detail_serializes() -> None:
    body = b'{"Status":{"Value":"FAILED","Detail":"x\\udc80y"}}'
    with RawServer(lambda t, q: http_response(body)) as server:
        async with chime(server) as provider:
            result = await provider.get_status(ChimeHandle(CHANNEL, "m1"))
    assert result.detail == "x\ufffdy"
    result.model_dump_json()


def _cli_env(base_url: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        SENDBLUE_API_KEY="key-id",
        SENDBLUE_API_SECRET=SECRET,
        SENDBLUE_BASE_URL=base_url,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONIOENCODING="utf-8",
    )
    return env


def test_7_check_json_reports_every_handle_with_lone_surrogates() -> None:
    with RawServer(_surrogate_answer) as server:
        done = subprocess.run(
            [sys.executable, "-m", "msgstatus", "check", "-", "--json"],
            input="sendblue:a\nsendblue:b\nsendblue:c\n",
            env=_cli_env(server.base_url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert {json.loads(line)["result"]["handle"] for line in lines} == {
        "sendblue:a",
        "sendblue:b",
        "sendblue:c",
    }


# -- 8. endpoint checks that a parser reads differently ----------------------------------------

BYPASSES = [
    "http://10.1.2.3\\@127.0.0.1:8080",
    "http://10.1.2.3@127.0.0.1:8080",
    "http://user:pw@127.0.0.1:8080",
    "http://127.0.0.1:8080 @10.1.2.3",
    "http://127.0.0.1\t.evil:8080",
    "http://127.0.0.1%2f@10.1.2.3",
]


@pytest.mark.parametrize("url", BYPASSES)
def test_8_sendblue_refuses_an_ambiguous_base_url(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        SendblueProvider("k", SECRET, base_url=url)


@pytest.mark.parametrize("url", BYPASSES)
def test_8_chime_refuses_an_ambiguous_endpoint(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    session = boto3.session.Session(
        aws_access_key_id="AKID", aws_secret_access_key="s", region_name="us-east-1"
    )
    with pytest.raises(ValueError, match="endpoint"):
        ChimeProvider(session=session, endpoint_url=url, bearer=BEARER)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING", url)
    with pytest.raises(ValueError, match="endpoint"):
        ChimeProvider(session=boto3.session.Session(region_name="us-east-1"), bearer=BEARER)


# -- 9. secrets out of reach -------------------------------------------------------------------


def _reachable_text(root: object, limit: int = 20_000) -> Iterator[str]:
    """Every str and bytes reachable from ``root`` by references, except through frames and
    tracebacks (a traceback reaches the caller's whole program) and classes or modules."""
    import types

    seen: set[int] = set()
    todo = [root]
    skip = (types.FrameType, types.TracebackType, type, types.ModuleType, types.FunctionType)
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        if isinstance(obj, (str, bytes)):
            yield obj.decode("latin-1") if isinstance(obj, bytes) else obj
            continue
        todo.extend(gc.get_referents(obj))


def _dead_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cut_after_headers(target: str, query: dict[str, str]) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"


@pytest.mark.parametrize("where", ["refused", "cut short"])
async def test_9_no_chained_cause_carries_the_secret(where: str) -> None:
    server = RawServer(_cut_after_headers)
    with server:
        base_url = server.base_url if where == "cut short" else f"http://127.0.0.1:{_dead_port()}"
        async with SendblueProvider("key-id", SECRET, base_url=base_url, retry=ONE_TRY) as p:
            with pytest.raises(ProviderUnavailableError) as caught:
                await p.get_status("sendblue:x")
    error = caught.value
    cause = error.__cause__
    assert cause is not None
    assert error.__context__ is cause or error.__context__ is None
    assert "Error" in type(cause).__name__  # the cause's type is kept (ConnectError, ...)
    for text in _reachable_text(error):
        assert SECRET not in text


def test_9_the_provider_keeps_its_secret_redacted() -> None:
    provider = SendblueProvider("key-id", SECRET)
    for value in vars(provider).values():
        assert SECRET not in repr(value)
        assert SECRET not in str(value)
    assert SECRET not in repr(vars(provider))


def _constructor_failures() -> Iterator[BaseException]:
    attempts = [
        lambda: SendblueProvider("key-id", SECRET, base_url="http://10.0.0.1"),
        lambda: SendblueProvider("key-id", SECRET + " "),
        lambda: SendblueProvider("key-id", SECRET, timeout=-1),
        lambda: ChimeProvider(
            session=boto3.session.Session(
                aws_access_key_id="AKID", aws_secret_access_key=SECRET, region_name="us-east-1"
            ),
            endpoint_url="http://10.0.0.1",
        ),
    ]
    for attempt in attempts:
        try:
            attempt()
        except Exception as exc:
            yield exc
        else:  # pragma: no cover - each attempt is refused
            raise AssertionError("a bad configuration was accepted")


def test_9_tracebacks_with_locals_of_a_failed_constructor_hold_no_secret() -> None:
    for exc in _constructor_failures():
        text = "".join(
            traceback.TracebackException.from_exception(exc, capture_locals=True).format()
        )
        assert SECRET not in text


@pytest.mark.parametrize("cls", [SendblueProvider, ChimeProvider, StatusClient, SyncStatusClient])
def test_9_repr_of_a_half_built_object_is_total(cls: type) -> None:
    half_built = object.__new__(cls)
    assert cls.__name__ in repr(half_built)


# -- 10. sync iterables never block the event loop ---------------------------------------------


def _slow_handles(server: RawServer, seen: list[bool]) -> Iterator[str]:
    """Yields one handle, then blocks (at most 10 s) until the server saw its request."""
    yield "sendblue:first"
    seen.append(bounded_wait(lambda: server.requests >= 1))
    yield "sendblue:second"


async def test_10_a_blocking_sync_iterable_does_not_stall_lookups_in_flight() -> None:
    seen: list[bool] = []
    with RawServer(sendblue_ok) as server:
        async with StatusClient([sendblue(server)]) as client:
            results = await client.get_statuses(_slow_handles(server, seen), concurrency=2)
    assert seen == [True]
    assert [r.handle for r in results if isinstance(r, StatusResult)] == [
        "sendblue:first",
        "sendblue:second",
    ]


async def test_10_iter_statuses_advances_a_sync_iterable_outside_the_loop() -> None:
    seen: list[bool] = []
    with RawServer(sendblue_ok) as server:
        async with (
            StatusClient([sendblue(server)]) as client,
            client.iter_statuses(_slow_handles(server, seen)) as stream,
        ):
            handles = [handle async for handle, _ in stream]
    assert seen == [True]
    assert sorted(handles) == ["sendblue:first", "sendblue:second"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_10_the_sync_client_advances_a_sync_iterable_outside_its_loop(backend: str) -> None:
    seen: list[bool] = []
    with (
        RawServer(sendblue_ok) as server,
        SyncStatusClient([sendblue(server)], backend=backend) as client,
    ):
        results = client.get_statuses(_slow_handles(server, seen))
    assert seen == [True]
    assert all(isinstance(r, StatusResult) for r in results)


# -- 11. the command streams its input ---------------------------------------------------------


@pytest.mark.parametrize("output", ["--json", "table"])
def test_11_check_prints_results_while_stdin_is_still_open(output: str) -> None:
    args = ["--json"] if output == "--json" else []
    with RawServer(sendblue_ok) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "msgstatus", "check", "-", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_cli_env(server.base_url),
            text=True,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write("sendblue:first\n")
            process.stdin.flush()
            # Raw reads of the pipe: a buffered reader would hide ready lines from select().
            received = ""
            while "sendblue:first" not in received or not received.endswith("\n"):
                ready, _, _ = select.select([process.stdout], [], [], 30)
                assert ready, "no result before the end of the input"
                chunk = os.read(process.stdout.fileno(), 65536).decode()
                assert chunk, "the command ended early"
                received += chunk
            lines = received.splitlines()
            if args:
                assert json.loads(lines[-1])["result"]["handle"] == "sendblue:first"
            else:
                assert lines[-1].split()[:3] == ["SKIP", "DELIVERED", "sendblue:first"]
            process.stdin.write("sendblue:second\n")
            process.stdin.close()
            rest = process.stdout.read()
            assert "sendblue:second" in rest
            assert process.wait(30) == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
            process.stderr.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["plain", "csv"])
def test_11_reading_handles_takes_flat_memory(kind: str, tmp_path: Path) -> None:
    from msgstatus._cli import read_handles

    def peak_for(lines: int) -> int:
        path = tmp_path / f"{kind}-{lines}.txt"
        with path.open("w", encoding="utf-8", newline="") as out:
            if kind == "csv":
                out.write("id,handle\n")
            for n in range(lines):
                out.write(f"{n},sendblue:msg-{n:08d}\n" if kind == "csv" else f"sendblue:{n}\n")
        with path.open(encoding="utf-8", newline="") as source:
            tracemalloc.start()
            try:
                count = sum(1 for _ in read_handles(source))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert count == lines
        return peak

    small, large = peak_for(1_000), peak_for(100_000)
    assert large < 1 * MiB
    assert large < small + 256 * 1024


# -- 12. closing mid-batch, odd handles, several loops -----------------------------------------


class _HeldProvider:
    """A provider whose ``fast…`` handles answer at once and whose ``slow…`` handles wait until
    it is closed, then raise ``RuntimeError`` as a closed provider does."""

    name = "held"

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.closed = anyio.Event()

    async def get_status(self, handle: object, /) -> StatusResult:
        self.started += 1
        text = str(handle)
        if text.startswith("held:slow"):
            await self.closed.wait()
            raise RuntimeError("the _HeldProvider is closed")
        self.finished += 1
        return StatusResult(provider="held", handle=text, status="SENT", is_final=True)

    async def aclose(self) -> None:
        self.closed.set()


async def _until(condition: Any) -> None:
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 - polls a fake's counters, bounded
            await anyio.sleep(0.01)


async def test_12_closing_mid_batch_raises_a_typed_error_with_the_finished_results() -> None:
    provider = _HeldProvider()
    handles = ["held:fast1", "held:fast2", "held:slow1", "held:slow2"]
    handles += [f"held:slow-later{n}" for n in range(20)]
    caught: list[BaseException] = []
    client = StatusClient([provider])  # type: ignore[list-item]

    async def batch() -> None:
        try:
            await client.get_statuses(handles, concurrency=4)
        except BaseException as exc:
            caught.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(batch)
        await _until(lambda: provider.started == 6 and provider.finished == 2)
        await client.aclose()
    assert len(caught) == 1
    error = caught[0]
    assert isinstance(error, ClientClosedError)
    assert isinstance(error, RuntimeError)
    results = error.results
    # The six handles read: the two finished results kept, the four cut short typed.
    assert results[:2] == [r for r in results[:2] if isinstance(r, StatusResult)]
    assert [r.handle for r in results[:2]] == handles[:2]  # type: ignore[union-attr]
    assert [type(r) for r in results[2:]] == [ClientClosedError] * (len(results) - 2)
    assert len(results) == 6  # nothing more was read after the close
    assert provider.started == 6


async def test_12_closing_mid_stream_ends_the_stream_with_a_typed_error() -> None:
    provider = _HeldProvider()
    handles = ["held:fast1", "held:slow1", "held:slow2"]
    handles += [f"held:slow-later{n}" for n in range(20)]
    seen: list[tuple[str, object]] = []
    client = StatusClient([provider])  # type: ignore[list-item]

    async def consume() -> None:
        async with client.iter_statuses(handles, concurrency=3) as stream:
            async for handle, outcome in stream:
                seen.append((handle, outcome))
                if handle == "held:fast1":
                    await _until(lambda: provider.started == 4)
                    await client.aclose()

    with pytest.raises(ClientClosedError):
        await consume()
    assert seen[0][0] == "held:fast1"
    assert isinstance(seen[0][1], StatusResult)
    assert all(isinstance(outcome, ClientClosedError) for _, outcome in seen[1:])
    assert provider.started == 4


def test_12_sync_close_inside_a_loop_refuses_and_leaves_the_client_usable() -> None:
    with SendblueEmulator("k", SECRET) as emulator:
        provider = emulator.provider()
        client = SyncStatusClient([provider])
        handle = emulator.add_message(status="DELIVERED")
        assert client.get_status(handle).status == "DELIVERED"

        async def inside() -> None:
            with pytest.raises(RuntimeError, match="inside a running"):
                client.close()

        anyio.run(inside)
        assert not provider.closed
        assert client.get_status(handle).status == "DELIVERED"
        client.close()
        assert provider.closed


class _RaisingHandle:
    provider = "sendblue"

    def __str__(self) -> str:
        raise ZeroDivisionError("boom")


class _SneakyStr(str):
    __slots__ = ()

    def __str__(self) -> str:
        raise ZeroDivisionError("boom")

    def strip(self, chars: str | None = None) -> str:
        return "sendblue:other"

    def partition(self, sep: str) -> tuple[str, str, str]:
        raise ZeroDivisionError("boom")

    def startswith(self, *args: Any) -> bool:
        raise ZeroDivisionError("boom")

    def __hash__(self) -> int:
        raise ZeroDivisionError("boom")


class _BadProviderHandle:
    @property
    def provider(self) -> str:
        raise ZeroDivisionError("boom")


async def test_12_odd_handles_give_typed_errors_and_never_break_a_batch() -> None:
    with RawServer(sendblue_ok) as server:
        async with StatusClient([sendblue(server)]) as client:
            with pytest.raises(InvalidHandleError):
                await client.get_status(_RaisingHandle())  # type: ignore[arg-type]
            with pytest.raises(InvalidHandleError):
                await client.get_status(_BadProviderHandle())  # type: ignore[arg-type]
            sneaky = await client.get_status(_SneakyStr("sendblue:real"))
            assert sneaky.handle == "sendblue:real"
            assert type(sneaky.handle) is str
            handles: list[Any] = [
                "sendblue:a",
                _RaisingHandle(),
                _SneakyStr("sendblue:b"),
                _BadProviderHandle(),
            ]
            results = await client.get_statuses(handles)
    assert isinstance(results[0], StatusResult)
    assert isinstance(results[1], InvalidHandleError)
    assert isinstance(results[2], StatusResult)
    assert results[2].handle == "sendblue:b"
    assert isinstance(results[3], InvalidHandleError)


def test_12_one_chime_provider_used_from_two_loops_stays_within_its_pool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Pools and limiters belong to one event loop: a second loop is refused, clearly, while the
    # first has lookups in flight, so max_concurrency bounds the provider.
    with ChimeEmulator(latency=0.2) as emulator:
        sender = "arn:aws:chime:us-east-1:111122223333:app-instance/a/user/sender"
        channel = "arn:aws:chime:us-east-1:111122223333:app-instance/a/channel/c2"
        ids = [emulator.add_message(channel, sender=sender, status="SENT") for _ in range(16)]
        provider = emulator.provider(bearer=sender, max_concurrency=4)
        outcomes: list[list[object]] = [[], []]
        started = threading.Barrier(2)

        async def one(message_id: str, seen: list[object]) -> None:
            try:
                seen.append(await provider.get_status(ChimeHandle(channel, message_id)))
            except RuntimeError as exc:
                seen.append(exc)

        async def many(seen: list[object]) -> None:
            started.wait(5)
            async with anyio.create_task_group() as tg:
                for message_id in ids:
                    tg.start_soon(one, message_id, seen)

        caplog.set_level(logging.WARNING, logger="urllib3")
        threads = [threading.Thread(target=anyio.run, args=(many, seen)) for seen in outcomes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # Used again from a new loop once the others are done: fine.
        later = anyio.run(provider.get_status, ChimeHandle(channel, ids[0]), backend="trio")
        provider.client.close()
    assert emulator.stats.max_in_flight <= 4
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    results = [o for seen in outcomes for o in seen]
    assert len(results) == 32
    refused = [o for o in results if isinstance(o, RuntimeError)]
    assert refused, "the second loop was not refused"
    assert all("another event loop" in str(o) for o in refused)
    assert sum(isinstance(o, StatusResult) for o in results) >= 16
    assert later.status.value == "SENT"
