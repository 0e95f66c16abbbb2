"""Ledger benchmarks (BENCHMARKS.md, "The send ledger"): claims/s and observes/s with 8 worker
processes on SQLite and PostgreSQL (pgserver), and ``send_once`` overhead as a ratio to a bare
send against the Sendblue emulator. Everything runs on 127.0.0.1 / unix sockets.

    python bench/ledger.py [--processes 8] [--keys 250] [--sends 300] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import anyio
import httpx

from msgstatus import (
    MessageStatus,
    SendClaim,
    StatusClient,
    StatusResult,
    open_ledger,
)


def _worker(url: str, index: int, keys: int, barrier: Barrier) -> None:
    async def main() -> None:
        ledger = open_ledger(url)
        try:
            await ledger.decision("warm-up")  # connect and create the schema before timing
            barrier.wait()
            claims: list[SendClaim] = []
            for j in range(keys):
                claim = await ledger.claim(f"p{index}-k{j}")
                assert isinstance(claim, SendClaim)
                claims.append(claim)
            barrier.wait()
            for j, claim in enumerate(claims):
                await claim.sent(f"sendblue:h-{index}-{j}")
            barrier.wait()
            for j in range(keys):
                result = StatusResult(
                    provider="sendblue",
                    handle=f"sendblue:h-{index}-{j}",
                    status=MessageStatus.DELIVERED,
                    is_final=True,
                )
                assert await ledger.observe(result)
            barrier.wait()
        finally:
            await ledger.aclose()

    anyio.run(main)


def fleet(url: str, processes: int, keys: int) -> tuple[float, float]:
    """claims/s and observes/s of ``processes`` workers, ``keys`` distinct keys each."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    workers = [
        context.Process(target=_worker, args=(url, index, keys, barrier))
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    barrier.wait()
    claimed = time.perf_counter()
    barrier.wait()
    observing = time.perf_counter()
    barrier.wait()
    observed = time.perf_counter()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0, worker.exitcode
    total = processes * keys
    return total / (claimed - started), total / (observed - observing)


async def _send_overhead(url: str, sends: int) -> tuple[float, float]:
    from msgstatus.testing import SendblueEmulator

    async with SendblueEmulator() as emulator:
        emulator.default_send_steps = [(0.0, "SENT")]
        headers = {"sb-api-key-id": emulator.api_key, "sb-api-secret-key": emulator.api_secret}
        async with httpx.AsyncClient(base_url=emulator.base_url, headers=headers) as http:

            async def bare() -> dict[str, Any]:
                response = await http.post(
                    "/api/send-message", json={"number": "+15551234567", "content": "hi"}
                )
                payload: dict[str, Any] = response.json()
                return payload

            for _ in range(20):
                await bare()
            started = time.perf_counter()
            for _ in range(sends):
                await bare()
            bare_seconds = time.perf_counter() - started

            provider = emulator.provider()
            async with StatusClient([provider], ledger=open_ledger(url)) as client:

                async def send(token: str) -> StatusResult:
                    return provider.result_from_payload(await bare())

                run = uuid.uuid4().hex[:8]
                for i in range(20):
                    await client.send_once(f"warm-{run}-{i}", send)
                started = time.perf_counter()
                for i in range(sends):
                    outcome = await client.send_once(f"key-{run}-{i}", send)
                    assert outcome.sent
                once_seconds = time.perf_counter() - started
    return bare_seconds / sends, once_seconds / sends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--keys", type=int, default=250, help="distinct keys per process")
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.keys, args.sends = 20, 30
    rows = []
    with tempfile.TemporaryDirectory(prefix="msgstatus-bench-") as scratch:
        import pgserver

        server = pgserver.get_server(Path(scratch) / "pg", cleanup_mode="stop")
        try:
            backends: list[tuple[str, Any]] = []
            for name in ("sqlite", "postgres"):

                def fresh(name: str = name) -> str:
                    if name == "sqlite":
                        return f"sqlite:///{Path(scratch) / uuid.uuid4().hex}.sqlite3"
                    db = f"bench_{uuid.uuid4().hex[:10]}"
                    server.psql(f"CREATE DATABASE {db};")
                    uri: str = server.get_uri(db)
                    return uri

                backends.append((name, fresh))
            for name, fresh in backends:
                claims, observes = fleet(fresh(), args.processes, args.keys)
                bare, once = anyio.run(_send_overhead, fresh(), args.sends)
                rows.append((name, claims, observes, bare * 1000, once * 1000, once / bare))
        finally:
            server.cleanup()
    print(
        f"ledger: {args.processes} processes x {args.keys} keys; send_once over {args.sends} "
        f"sends (Sendblue emulator, 0 ms latency), cpus={os.cpu_count()}"
    )
    print("| backend | claims/s | observes/s | bare send ms | send_once ms | send_once / bare |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, claims, observes, bare_ms, once_ms, ratio in rows:
        print(
            f"| {name} | {claims:,.0f} | {observes:,.0f} | {bare_ms:.2f} | {once_ms:.2f} | "
            f"{ratio:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
