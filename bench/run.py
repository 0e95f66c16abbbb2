"""Benchmarks: msgstatus's providers against the official SDKs and bare clients.

    python bench/run.py            # the full run (nox -s bench runs this)
    python bench/run.py --quick    # one short run of everything, to check that it works

Every figure comes from the project's loopback emulators, each in its own process, and from one
client process per contender, so that server and client never share an interpreter. Contenders
of one provider take turns within each run (A, B, C, A, B, C, ...) so machine noise hits them
alike. Throughput is lookups per second of a timed section; CPU is the client process's user +
system time (``resource.getrusage``, worker threads included) per 1,000 lookups.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import anyio

API_KEY, API_SECRET = "bench-key", "bench-secret"
AKID, AWS_SECRET, REGION = "AKIDBENCH", "bench-aws-secret", "us-east-1"
MESSAGES = 500
CONCURRENCIES = (1, 16, 64)
LATENCIES_MS = (0, 20)
CONTENDERS = {
    "sendblue": ("msgstatus", "msgstatus-trio", "official-sdk", "bare-httpx"),
    "chime": ("msgstatus", "msgstatus-trio", "boto3-threads", "aiobotocore"),
}
#: The ratios of each msgstatus cell are taken against these (on its own backend for the
#: msgstatus rows; the contenders run on asyncio, boto3 threads are backend-neutral).
OURS = ("msgstatus", "msgstatus-trio")
#: Contenders whose client process runs on trio (every other one on asyncio).
TRIO = {"msgstatus-trio"}


# -- the emulator process ------------------------------------------------------------------------


def serve(provider: str, latency_ms: float, *, skip_sigv4: bool = False) -> None:
    """Start one emulator, print what clients need as one JSON line, serve until stdin closes.

    ``skip_sigv4`` (``--emulator-skip-sigv4``, never the default) makes the Chime emulator accept
    any signature, so that its own HMAC work is not the ceiling of the 20 ms / c64 cells; the
    clients sign exactly as always."""
    from msgstatus.testing import ChimeEmulator, SendblueEmulator

    latency = latency_ms / 1000
    if provider == "sendblue":
        sendblue = SendblueEmulator(API_KEY, API_SECRET, latency=latency)
        with sendblue:
            # Bare message_handles: the SDK contenders send them as they are.
            handles = [
                sendblue.add_message(f"bench-{i:05d}").removeprefix("sendblue:")
                for i in range(MESSAGES)
            ]
            print(json.dumps({"url": sendblue.base_url, "handles": handles}), flush=True)
            sys.stdin.read()
        return
    chime = ChimeEmulator(
        access_key_id=AKID, secret_access_key=AWS_SECRET, region=REGION, latency=latency
    )
    if skip_sigv4:
        chime._check_signature = lambda *_: None  # type: ignore[method-assign]
    with chime:
        channel, bearer = chime.channel_arn("bench"), chime.user_arn("bench")
        ids = [
            chime.add_message(channel, sender=bearer, message_id=f"m{i:05d}")
            for i in range(MESSAGES)
        ]
        info = {"url": chime.base_url, "channel": channel, "bearer": bearer, "ids": ids}
        print(json.dumps(info), flush=True)
        sys.stdin.read()


# -- the client processes ------------------------------------------------------------------------

Lookup = Callable[[int], Awaitable[None]]


async def _workers(lookup: Lookup, count: int, concurrency: int) -> None:
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            await lookup(index)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)


class Contender:
    """One way of looking statuses up; ``run`` does ``count`` lookups ``concurrency`` at once."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info

    async def run(self, count: int, concurrency: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class SendblueOurs(Contender):
    async def run(self, count: int, concurrency: int) -> None:
        from msgstatus import SendblueProvider

        if not hasattr(self, "provider"):
            self.provider = SendblueProvider(API_KEY, API_SECRET, base_url=self.info["url"])
        handles = self.info["handles"]

        async def lookup(i: int) -> None:
            await self.provider.get_status(f"sendblue:{handles[i % len(handles)]}")

        await _workers(lookup, count, concurrency)

    async def close(self) -> None:
        await self.provider.aclose()


class SendblueSdk(Contender):
    async def run(self, count: int, concurrency: int) -> None:
        import sendblue_api

        if not hasattr(self, "sdk"):
            self.sdk = sendblue_api.AsyncSendblueAPI(
                api_key=API_KEY, api_secret=API_SECRET, base_url=self.info["url"], max_retries=0
            )
        handles = self.info["handles"]

        async def lookup(i: int) -> None:
            await self.sdk.messages.get_status(handle=handles[i % len(handles)])

        await _workers(lookup, count, concurrency)

    async def close(self) -> None:
        await self.sdk.close()


class SendblueHttpx(Contender):
    async def run(self, count: int, concurrency: int) -> None:
        import httpx

        if not hasattr(self, "http"):
            self.http = httpx.AsyncClient(
                base_url=self.info["url"],
                headers={"sb-api-key-id": API_KEY, "sb-api-secret-key": API_SECRET},
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        handles = self.info["handles"]

        async def lookup(i: int) -> None:
            reply = await self.http.get("/api/status", params={"handle": handles[i % len(handles)]})
            reply.raise_for_status()
            reply.json()

        await _workers(lookup, count, concurrency)

    async def close(self) -> None:
        await self.http.aclose()


def _boto3_session() -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=AKID, aws_secret_access_key=AWS_SECRET, region_name=REGION
    )


class ChimeOurs(Contender):
    def __init__(self, info: dict[str, Any]) -> None:
        from msgstatus import ChimeHandle

        super().__init__(info)
        self.providers: dict[int, Any] = {}
        # Built once, outside every timed section (a contender's lookups get ready ids too).
        self.handles = [ChimeHandle(info["channel"], mid) for mid in info["ids"]]

    async def run(self, count: int, concurrency: int) -> None:
        from msgstatus import ChimeProvider

        if concurrency not in self.providers:
            # max_concurrency sizes both the worker limiter and botocore's pool.
            self.providers[concurrency] = ChimeProvider(
                session=_boto3_session(),
                region_name=REGION,
                endpoint_url=self.info["url"],
                bearer=self.info["bearer"],
                max_concurrency=concurrency,
            )
        provider = self.providers[concurrency]
        handles = self.handles

        async def lookup(i: int) -> None:
            await provider.get_status(handles[i % len(handles)])

        await _workers(lookup, count, concurrency)

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()


class ChimeBoto3Threads(Contender):
    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info)
        self.pools: dict[int, ThreadPoolExecutor] = {}

    def _pool(self, concurrency: int) -> ThreadPoolExecutor:
        """One executor per concurrency with all its threads started: built in the untimed
        warm-up run, never inside a timed section."""
        if concurrency not in self.pools:
            pool = ThreadPoolExecutor(concurrency)
            barrier = threading.Barrier(concurrency)
            list(pool.map(lambda _: barrier.wait(), range(concurrency)))
            self.pools[concurrency] = pool
        return self.pools[concurrency]

    async def run(self, count: int, concurrency: int) -> None:
        import botocore.config

        if not hasattr(self, "client"):
            config = botocore.config.Config(
                retries={"total_max_attempts": 1}, max_pool_connections=max(CONCURRENCIES)
            )
            self.client = _boto3_session().client(
                "chime-sdk-messaging", endpoint_url=self.info["url"], config=config
            )
        ids, channel, bearer = self.info["ids"], self.info["channel"], self.info["bearer"]

        def lookup(i: int) -> None:
            self.client.get_channel_message_status(
                ChannelArn=channel, MessageId=ids[i % len(ids)], ChimeBearer=bearer
            )

        list(self._pool(concurrency).map(lookup, range(count)))

    async def close(self) -> None:
        self.client.close()
        for pool in self.pools.values():
            pool.shutdown()


class ChimeAiobotocore(Contender):
    async def run(self, count: int, concurrency: int) -> None:
        if not hasattr(self, "client"):
            import aiobotocore.session
            from aiobotocore.config import AioConfig

            config = AioConfig(
                retries={"total_max_attempts": 1}, max_pool_connections=max(CONCURRENCIES)
            )
            self._context = aiobotocore.session.get_session().create_client(
                "chime-sdk-messaging",
                endpoint_url=self.info["url"],
                region_name=REGION,
                aws_access_key_id=AKID,
                aws_secret_access_key=AWS_SECRET,
                config=config,
            )
            self.client = await self._context.__aenter__()
        ids, channel, bearer = self.info["ids"], self.info["channel"], self.info["bearer"]

        async def lookup(i: int) -> None:
            await self.client.get_channel_message_status(
                ChannelArn=channel, MessageId=ids[i % len(ids)], ChimeBearer=bearer
            )

        await _workers(lookup, count, concurrency)

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)


CLASSES: dict[tuple[str, str], type[Contender]] = {
    ("sendblue", "msgstatus"): SendblueOurs,
    ("sendblue", "msgstatus-trio"): SendblueOurs,
    ("sendblue", "official-sdk"): SendblueSdk,
    ("sendblue", "bare-httpx"): SendblueHttpx,
    ("chime", "msgstatus"): ChimeOurs,
    ("chime", "msgstatus-trio"): ChimeOurs,
    ("chime", "boto3-threads"): ChimeBoto3Threads,
    ("chime", "aiobotocore"): ChimeAiobotocore,
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def client_loop(provider: str, contender: str) -> None:
    """Read ``count concurrency`` lines from stdin; answer each with one JSON line of figures."""
    info = json.loads(sys.stdin.readline())
    bench = CLASSES[(provider, contender)](info)
    while line := await anyio.to_thread.run_sync(sys.stdin.readline):
        count, concurrency = map(int, line.split())
        await bench.run(min(concurrency, 8), concurrency)  # warm clients, pools and threads
        cpu, start = _cpu(), time.perf_counter()
        await bench.run(count, concurrency)
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
        print(json.dumps({"seconds": seconds, "cpu": cpu, "count": count}), flush=True)
    await bench.close()


async def mixed_batch(sendblue_info: dict[str, Any], chime_info: dict[str, Any], n: int) -> None:
    """StatusClient.get_statuses over ``n`` mixed handles: prints throughput and peak RSS."""
    from msgstatus import ChimeHandle, ChimeProvider, SendblueProvider, StatusClient, StatusResult

    def handles() -> Iterator[Any]:
        for i in range(n):
            kind = i % 4
            if kind == 0:
                yield f"sendblue:{sendblue_info['handles'][i % MESSAGES]}"
            elif kind == 1:
                yield ChimeHandle(chime_info["channel"], chime_info["ids"][i % MESSAGES])
            elif kind == 2:
                yield f"sendblue:missing-{i}"
            else:
                yield f"elsewhere:{i}"

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sendblue = SendblueProvider(API_KEY, API_SECRET, base_url=sendblue_info["url"])
    chime = ChimeProvider(
        session=_boto3_session(),
        region_name=REGION,
        endpoint_url=chime_info["url"],
        bearer=chime_info["bearer"],
        max_concurrency=16,
    )
    async with StatusClient([sendblue, chime], cache_final=False) as client:
        cpu, start = _cpu(), time.perf_counter()
        outcomes = await client.get_statuses(handles(), concurrency=64)
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    found = sum(isinstance(o, StatusResult) for o in outcomes)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "handles": len(outcomes),
                "found": found,
                "seconds": seconds,
                "cpu": cpu,
                "rss_before_mb": rss_before / 1024,
                "peak_rss_mb": rss_after / 1024,
            }
        ),
        flush=True,
    )


# -- ceilings of this machine ---------------------------------------------------------------------


def ceilings(quick: bool) -> None:
    """Print, as one JSON line, what bounds every contender on this machine: botocore's own CPU
    per call with no network at all (build, serialize, SigV4, parse of an empty reply; the floor
    of any client built on botocore, msgstatus's included), and the CPU one idle wake costs (an
    event loop or a thread sleeping 20 ms, as every lookup of a 20 ms cell does)."""
    import botocore.awsrequest
    import botocore.config

    from msgstatus._transports._botocore import memoize_user_agent

    class NoBody:
        def stream(self, **_: object) -> Iterator[bytes]:
            return iter(())

    def placeholder(request: Any, **_: object) -> Any:
        return botocore.awsrequest.AWSResponse(request.url, 200, {}, NoBody())

    client = _boto3_session().client(
        "chime-sdk-messaging",
        endpoint_url="http://127.0.0.1:9",
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    client.meta.events.register(
        "before-send.chime-sdk-messaging.GetChannelMessageStatus", placeholder
    )
    memoize_user_agent(client)  # as msgstatus's exchange drives the client
    channel = f"arn:aws:chime:{REGION}:111122223333:app-instance/bench/channel/c"
    bearer = f"arn:aws:chime:{REGION}:111122223333:app-instance/bench/user/u"
    calls = 500 if quick else 3000
    for i in range(100):
        client.get_channel_message_status(ChannelArn=channel, MessageId=f"w{i}", ChimeBearer=bearer)
    cpu = _cpu()
    for i in range(calls):
        client.get_channel_message_status(ChannelArn=channel, MessageId=f"m{i}", ChimeBearer=bearer)
    figures = {"botocore": (_cpu() - cpu) / calls * 1000}
    client.close()

    wakes = 20 if quick else 100

    async def sleeper() -> float:
        cpu = _cpu()
        for _ in range(wakes):
            await anyio.sleep(0.02)
        return (_cpu() - cpu) / wakes * 1000

    for backend in ("asyncio", "trio"):
        figures[f"wake-{backend}"] = anyio.run(sleeper, backend=backend)
    cpu = _cpu()
    for _ in range(wakes):
        time.sleep(0.02)
    figures["wake-thread"] = (_cpu() - cpu) / wakes * 1000
    print(json.dumps(figures), flush=True)


def ceiling_lines(quick: bool) -> list[str]:
    done = subprocess.run(
        [sys.executable, __file__, "--ceilings", *(["--quick"] if quick else [])],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )
    figures = json.loads(done.stdout)
    return [
        "ceilings of this machine (CPU ms per call or per wake):",
        f"  botocore alone, no network (build, serialize, SigV4, parse an empty reply): "
        f"{figures['botocore']:.3f} ms per call",
        f"  one idle wake after 20 ms asleep: asyncio {figures['wake-asyncio']:.3f}, "
        f"trio {figures['wake-trio']:.3f}, a thread {figures['wake-thread']:.3f}",
    ]


# -- the driver ----------------------------------------------------------------------------------


SKIP_SIGV4: list[str] = []  # ["--emulator-skip-sigv4"] when asked for


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )


@dataclass
class Series:
    rates: list[float] = field(default_factory=list)
    cpu_per_1000: list[float] = field(default_factory=list)
    #: The emulator process's CPU seconds per 1,000 requests while this contender ran (warm-up
    #: lookups included in the count); empty where /proc is not there.
    server_cpu_per_1000: list[float] = field(default_factory=list)

    def server_cpu(self) -> float | None:
        return statistics.median(self.server_cpu_per_1000) if self.server_cpu_per_1000 else None

    def rate(self) -> float:
        return statistics.median(self.rates)

    def cpu(self) -> float:
        return statistics.median(self.cpu_per_1000)


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lookups_per_run(concurrency: int, latency_ms: int, quick: bool) -> int:
    """Enough lookups for a timed section of at least ~0.5 s for the fastest contender on a
    2-core machine (msgstatus reaches ~3,000/s where latency allows): a shorter one weighs the
    start (every worker's first request at once) and the tail (the last, partial round) too."""
    estimate = min(concurrency / (latency_ms / 1000), 3000) if latency_ms else 3000
    count = int(estimate * (0.3 if quick else 0.5))
    return max(count, 20 if quick else 40)


def measure(
    provider: str, latency_ms: int, runs: int, quick: bool
) -> dict[tuple[str, int], Series]:
    server = _spawn("--serve", provider, str(latency_ms), *SKIP_SIGV4)
    assert server.stdout is not None and server.stdin is not None
    info_line = server.stdout.readline()
    clients = {name: _spawn("--client", provider, name) for name in CONTENDERS[provider]}
    series: dict[tuple[str, int], Series] = {}
    try:
        for proc in clients.values():
            assert proc.stdin is not None
            proc.stdin.write(info_line)
        for concurrency in CONCURRENCIES:
            count = lookups_per_run(concurrency, latency_ms, quick)
            for _ in range(runs):
                for name, proc in clients.items():
                    assert proc.stdin is not None and proc.stdout is not None
                    server_before = process_cpu(server.pid)
                    proc.stdin.write(f"{count} {concurrency}\n")
                    proc.stdin.flush()
                    figures = json.loads(proc.stdout.readline())
                    server_after = process_cpu(server.pid)
                    entry = series.setdefault((name, concurrency), Series())
                    entry.rates.append(figures["count"] / figures["seconds"])
                    entry.cpu_per_1000.append(figures["cpu"] / figures["count"] * 1000)
                    if server_before is not None and server_after is not None:
                        served = figures["count"] + min(concurrency, 8)  # with the warm-up
                        entry.server_cpu_per_1000.append(
                            (server_after - server_before) / served * 1000
                        )
    finally:
        for proc in clients.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)
        server.stdin.close()
        server.wait(timeout=60)
    return series


def mixed(quick: bool) -> dict[str, float]:
    servers = [_spawn("--serve", name, "0") for name in ("sendblue", "chime")]
    try:
        infos = [proc.stdout.readline() for proc in servers if proc.stdout is not None]
        n = 2000 if quick else 10_000
        done = subprocess.run(
            [sys.executable, __file__, "--mixed", str(n)],
            input="".join(infos),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
        )
        result: dict[str, float] = json.loads(done.stdout)
        return result
    finally:
        for proc in servers:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)


def report(results: dict[tuple[str, int], dict[tuple[str, int], Series]], runs: int) -> list[str]:
    lines = []
    header = (
        f"{'provider':<9}{'latency':>8}{'conc':>6}  {'contender':<15}{'lookups/s (min-max)':>25}"
        f"{'CPU s/1000':>12}{'emu CPU':>9}  ratio of msgstatus (asyncio; trio)"
    )
    lines.append(header)
    lines.append("-" * len(header))
    targets: list[str] = []
    for (provider, latency_ms), series in results.items():
        for concurrency in CONCURRENCIES:
            ours = series[("msgstatus", concurrency)]
            for name in CONTENDERS[provider]:
                entry = series[(name, concurrency)]
                spread = f"{entry.rate():8.0f} ({min(entry.rates):.0f}-{max(entry.rates):.0f})"
                trio = series[("msgstatus-trio", concurrency)]
                ratio = (
                    ""
                    if name in OURS
                    else (
                        f"{ours.rate() / entry.rate():.2f}x rate, "
                        f"{ours.cpu() / entry.cpu():.2f}x CPU; "
                        f"{trio.rate() / entry.rate():.2f}x, {trio.cpu() / entry.cpu():.2f}x"
                    )
                )
                server_cpu = entry.server_cpu()
                emulator = "" if server_cpu is None else f"{server_cpu:.3f}"
                lines.append(
                    f"{provider:<9}{latency_ms:>6}ms{concurrency:>6}  {name:<15}{spread:>25}"
                    f"{entry.cpu():>12.3f}{emulator:>9}  {ratio}"
                )
            ideal = concurrency / (latency_ms / 1000) if latency_ms else float("inf")
            for us in OURS:
                mine = series[(us, concurrency)]
                cell = f"{provider} {latency_ms}ms c{concurrency} {us}"
                if provider == "sendblue":
                    sdk, bare = (
                        series[("official-sdk", concurrency)],
                        series[("bare-httpx", concurrency)],
                    )
                    targets.append(
                        _target(f"{cell}: rate >= 1.2x SDK", mine.rate() / sdk.rate(), 1.2)
                        + _near_ideal(1.2 * sdk.rate(), mine.rate(), ideal)
                    )
                    targets.append(
                        _target(f"{cell}: rate >= 1.0x httpx", mine.rate() / bare.rate(), 1.0)
                        + _near_ideal(bare.rate(), mine.rate(), ideal)
                    )
                    targets.append(
                        _target(
                            f"{cell}: CPU <= 1.0x httpx",
                            mine.cpu() / bare.cpu(),
                            1.0,
                            at_most=True,
                        )
                    )
                else:
                    # Issue #15's targets: >= 1.0x boto3 threads everywhere, >= 1.5x at 0 ms
                    # with c16 and c64; CPU <= 0.6x boto3 threads; >= aiobotocore's rate in
                    # the asyncio cells (aiobotocore runs on asyncio only).
                    threads = series[("boto3-threads", concurrency)]
                    bound = 1.5 if latency_ms == 0 and concurrency >= 16 else 1.0
                    targets.append(
                        _target(
                            f"{cell}: rate >= {bound:g}x boto3 threads",
                            mine.rate() / threads.rate(),
                            bound,
                        )
                        + _near_ideal(bound * threads.rate(), mine.rate(), ideal)
                    )
                    targets.append(
                        _target(
                            f"{cell}: CPU <= 0.6x boto3 threads",
                            mine.cpu() / threads.cpu(),
                            0.6,
                            at_most=True,
                        )
                    )
                    if us == "msgstatus":
                        aio = series[("aiobotocore", concurrency)]
                        targets.append(
                            _target(
                                f"{cell}: rate >= 1.0x aiobotocore",
                                mine.rate() / aio.rate(),
                                1.0,
                            )
                            + _near_ideal(aio.rate(), mine.rate(), ideal)
                        )
            if latency_ms == 20 and concurrency == 64:
                for us in OURS:
                    mine = series[(us, concurrency)]
                    # One event loop is one thread: it cannot do more lookups a second than one
                    # core's worth of its CPU per lookup, whatever the emulator does.
                    one_core = 1000 / mine.cpu()
                    targets.append(
                        _target(
                            f"{provider} 20ms c64 {us}: >= 80% of ideal {ideal:.0f}/s",
                            mine.rate() / ideal,
                            0.8,
                        )
                        + f"; one core's worth of its CPU per lookup: {one_core:.0f}/s"
                        f" = {one_core / ideal:.0%} of ideal"
                    )
        lines.append("")
    lines.append(
        f"median of {runs} runs; ratio = msgstatus / contender (rate), msgstatus / contender (CPU);"
        f" emu CPU = the emulator process's CPU s/1000 requests;"
        f" emulator SigV4 check {'skipped' if SKIP_SIGV4 else 'on'}"
    )
    lines.append("")
    lines.append("targets:")
    lines.extend(targets)
    return lines


def _near_ideal(needed: float, reached: float, ideal: float) -> str:
    """A latency cell's rate target as shares of the cell's ideal (concurrency / round trip):
    what it needs and what msgstatus reached. The emulator holds every request for the latency
    and takes its own time on top, so no client gets above the ideal."""
    if ideal == float("inf"):
        return ""
    need = "above the ideal" if needed > ideal else f"{needed / ideal:.1%} of the ideal"
    share = f"{reached / ideal:.1%}"
    return f"; needs {needed:.0f}/s ({need} {ideal:.0f}/s), reached {reached:.0f}/s ({share})"


def _target(name: str, value: float, bound: float, *, at_most: bool = False) -> str:
    met = value <= bound if at_most else value >= bound
    relation = "<=" if at_most else ">="
    verdict = "met   " if met else "MISSED"
    return f"  {verdict}  {name}  (measured {value:.3f}, needs {relation} {bound:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--serve", nargs=2, metavar=("PROVIDER", "LATENCY_MS"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--client", nargs=2, metavar=("PROVIDER", "CONTENDER"), help=argparse.SUPPRESS
    )
    parser.add_argument("--mixed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ceilings", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--emulator-skip-sigv4",
        action="store_true",
        help="the Chime emulator accepts any signature (not the default; see BENCHMARKS.md)",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], float(args.serve[1]), skip_sigv4=args.emulator_skip_sigv4)
        return
    if args.emulator_skip_sigv4:
        SKIP_SIGV4.append("--emulator-skip-sigv4")
    if args.client:
        backend = "trio" if args.client[1] in TRIO else "asyncio"
        anyio.run(client_loop, *args.client, backend=backend)
        return
    if args.ceilings:
        ceilings(args.quick)
        return
    if args.mixed:
        sendblue_info, chime_info = (json.loads(sys.stdin.readline()) for _ in range(2))
        anyio.run(mixed_batch, sendblue_info, chime_info, args.mixed)
        return
    runs = 1 if args.quick else args.runs
    started = time.perf_counter()
    results = {}
    for provider in CONTENDERS:
        for latency_ms in LATENCIES_MS:
            print(f"measuring {provider} at {latency_ms} ms ...", file=sys.stderr, flush=True)
            results[(provider, latency_ms)] = measure(provider, latency_ms, runs, args.quick)
    print("measuring StatusClient.get_statuses on mixed handles ...", file=sys.stderr, flush=True)
    batch = mixed(args.quick)
    lines = report(results, runs)
    lines.append("")
    print("measuring the machine's ceilings ...", file=sys.stderr, flush=True)
    lines.extend(ceiling_lines(args.quick))
    lines.append("")
    lines.append(
        f"StatusClient.get_statuses, {batch['handles']:.0f} mixed handles (1/4 sendblue found, "
        f"1/4 chime found, 1/4 not found, 1/4 unknown provider), concurrency 64, 0 ms: "
        f"{batch['handles'] / batch['seconds']:.0f} handles/s, "
        f"{batch['cpu'] / batch['handles'] * 1000:.3f} CPU s/1000, "
        f"peak RSS {batch['peak_rss_mb']:.0f} MB (after imports {batch['rss_before_mb']:.0f} MB)"
    )
    lines.append(
        f"total time {time.perf_counter() - started:.0f} s; "
        f"python {sys.version.split()[0]}; {os.cpu_count()} cores"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
