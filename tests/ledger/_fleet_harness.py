"""A fleet of worker processes sending every key once through one ledger, against an emulator.

Used by ``test_fleet.py`` (small) and ``nox -s fleet`` (``python tests/ledger/_fleet_harness.py
--processes 8 --keys 1000``). Each worker process tries ``send_once`` for every key in its own
random order, pass after pass, until each key's answer is SKIP, BLOCKED or UNKNOWN; 30% of the
keys' first sends end ERROR (FAILED), 10% of status lookups fault, and each send kills its
worker with 2% probability (``os._exit``: half right after the claim, half right after the send
but before ``sent()``); a supervisor starts a fresh worker for a dead one. A reconciler process
polls the in-flight attempts until none is left. Sends are then counted from the emulator's own
store of sent messages.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from msgstatus import ResendAction, StatusClient, StatusResult
from msgstatus._ledger import open_ledger
from msgstatus._ledger._send import reconcile, send_once
from msgstatus._retry import RetryPolicy
from msgstatus.testing import ChimeEmulator, Fault, SendblueEmulator
from msgstatus.testing._server import Request, Response

DIED = 77
LEASE = 2.0
MAX_ATTEMPTS = 3
FAIL_SHARE = 0.30
LOOKUP_FAULTS = 0.10
DEATH_SHARE = 0.02

OK_SENDBLUE = [(0.0, "QUEUED"), (0.2, "SENT"), (0.4, "DELIVERED")]
ERROR_SENDBLUE = [(0.0, "QUEUED"), (0.3, "ERROR")]
OK_CHIME = [(0.0, "PENDING"), (0.2, "SENT")]
ERROR_CHIME = [(0.0, "PENDING"), (0.3, "FAILED")]


def key_name(index: int) -> str:
    return f"fleet-key-{index:05d}"


def number_of(key: str) -> str:
    return "+1555" + key[-5:].rjust(7, "0")


class _FaultyLookups:
    """Mixin: 10% of status lookups answer a 5xx (sends are never faulted)."""

    lookup_path = ""
    _rng: random.Random
    _rng_lock: threading.Lock

    def _lookup_fault(self, request: Request) -> Fault | None:
        if request.method != "GET" or self.lookup_path not in request.path:
            return None
        with self._rng_lock:
            if self._rng.random() < LOOKUP_FAULTS:
                return self._rng.choice([Fault.SERVER_ERROR_503, Fault.SERVER_ERROR_500])
        return None


class FleetSendblue(_FaultyLookups, SendblueEmulator):
    """The Sendblue emulator with the fleet's script: a failing key's first send ends ERROR."""

    lookup_path = "/api/status"

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self._rng = random.Random(13)
        self._rng_lock = threading.Lock()
        self.failing = failing
        self.sends_to: Counter[str] = Counter()

    async def handle(self, request: Request) -> Response:
        fault = self._lookup_fault(request)
        if fault is not None:
            return self.render_fault(fault, request)
        if request.method == "POST" and request.path == "/api/send-message":
            # No await between the script and the send: the emulator's loop runs them as one.
            number = str(json.loads(request.body).get("number"))
            self.sends_to[number] += 1
            first = self.sends_to[number] == 1
            steps = ERROR_SENDBLUE if first and number in self.failing else OK_SENDBLUE
            self.script_recipient(number, steps)
        return await super().handle(request)

    def send_log(self) -> dict[str, list[str]]:
        """Key -> raw status of each message the emulator holds for it, in send order."""
        log: dict[str, list[str]] = {}
        for handle in self.handles:
            payload = self.payload(handle)
            log.setdefault(str(payload["content"]), []).append(str(payload["status"]))
        return log


class FleetChime(_FaultyLookups, ChimeEmulator):
    """The Chime emulator with the fleet's script; ClientRequestToken de-duplicates sends."""

    lookup_path = "/messages/"

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self._rng = random.Random(13)
        self._rng_lock = threading.Lock()
        self.failing = failing
        self.first_seen: set[str] = set()
        self.set_channel_flow(self.channel_arn(), self._flow)

    def _flow(self, content: str) -> list[tuple[float, str]]:
        # Called once per new message (a repeated ClientRequestToken never gets here).
        first = content not in self.first_seen
        self.first_seen.add(content)
        return ERROR_CHIME if first and number_of(content) in self.failing else OK_CHIME

    async def handle(self, request: Request) -> Response:
        fault = self._lookup_fault(request)
        if fault is not None:
            return self.render_fault(fault, request)
        return await super().handle(request)

    def send_log(self) -> dict[str, list[str]]:
        log: dict[str, list[str]] = {}
        for channel_arn, message_id in self.messages:
            message = self._messages[(channel_arn, message_id)]
            payload = self.status_payload(channel_arn, message_id) or {}
            status = str(payload.get("Status", {}).get("Value", "GONE"))
            log.setdefault(message.content, []).append(status)
        return log


@dataclass
class Config:
    provider: str
    ledger_url: str
    base_url: str
    keys: list[str]
    reclaim_expired: bool
    deadline: float
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _sendblue_parts(config: Config) -> tuple[Any, Callable[[str, str], Any]]:
    import httpx

    from msgstatus import SendblueProvider

    provider = SendblueProvider(
        "test-key",
        "test-secret",
        base_url=config.base_url,
        retry=RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05),
    )
    http = httpx.AsyncClient(base_url=config.base_url, timeout=10)

    async def send(key: str, token: str) -> StatusResult:
        response = await http.post(
            "/api/send-message",
            json={"number": number_of(key), "content": key},
            headers={"sb-api-key-id": "test-key", "sb-api-secret-key": "test-secret"},
        )
        response.raise_for_status()
        return provider.result_from_payload(response.json())

    return provider, send


def _chime_parts(config: Config) -> tuple[Any, Callable[[str, str], Any]]:
    import boto3
    import botocore.config

    from msgstatus import ChimeProvider

    session = boto3.session.Session(
        aws_access_key_id="AKIDEMULATOR",
        aws_secret_access_key="emulator-secret",
        region_name="us-east-1",
    )
    provider = ChimeProvider(
        session=session,
        region_name="us-east-1",
        endpoint_url=config.base_url,
        bearer=config.extra["bearer"],
        retry=RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05),
    )
    client = session.client(
        "chime-sdk-messaging",
        endpoint_url=config.base_url,
        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )

    async def send(key: str, token: str) -> StatusResult:
        def call() -> Any:
            return client.send_channel_message(
                ChannelArn=config.extra["channel"],
                Content=key,
                Type="STANDARD",
                Persistence="PERSISTENT",
                ClientRequestToken=token,
                ChimeBearer=config.extra["bearer"],
            )

        response = await anyio.to_thread.run_sync(call)
        return provider.result_from_payload(response, bearer=config.extra["bearer"])

    return provider, send


def _parts(config: Config) -> tuple[Any, Callable[[str, str], Any]]:
    return _sendblue_parts(config) if config.provider == "sendblue" else _chime_parts(config)


async def _worker(config: Config) -> None:
    rng = random.Random(config.seed)
    ledger = open_ledger(config.ledger_url)
    provider, raw_send = _parts(config)
    pending = list(config.keys)
    rng.shuffle(pending)
    async with StatusClient([provider]):
        while pending and time.time() < config.deadline:
            still: list[str] = []
            for key in pending:

                async def send(token: str, key: str = key) -> StatusResult:
                    roll = rng.random()
                    if roll < DEATH_SHARE / 2:
                        os._exit(DIED)  # right after the claim
                    result = await raw_send(key, token)
                    if roll > 1 - DEATH_SHARE / 2:
                        os._exit(DIED)  # right after the send, before sent()
                    return result  # type: ignore[no-any-return]

                try:
                    outcome = await send_once(
                        ledger,
                        key,
                        send,
                        lease=LEASE,
                        max_attempts=MAX_ATTEMPTS,
                        reclaim_expired=config.reclaim_expired,
                    )
                except Exception:
                    still.append(key)  # ambiguous now: the next pass reads the ledger's answer
                    continue
                if outcome.decision.action not in (
                    ResendAction.SKIP,
                    ResendAction.BLOCKED,
                    ResendAction.UNKNOWN,
                ):
                    still.append(key)
            pending = still
            if pending:
                await anyio.sleep(0.05)
    await ledger.aclose()


def worker_main(config: Config, backend: str) -> None:
    anyio.run(_worker, config, backend=backend)


async def _reconciler(config: Config, stop: Any) -> None:
    ledger = open_ledger(config.ledger_url)
    provider, _ = _parts(config)
    async with StatusClient([provider]) as client:
        while time.time() < config.deadline:
            checked = await reconcile(ledger, client, limit=200)
            if not checked:
                if stop.is_set():
                    break
                await anyio.sleep(0.05)
    await ledger.aclose()


def reconciler_main(config: Config, stop: Any) -> None:
    anyio.run(_reconciler, config, stop)


@dataclass
class Report:
    keys: int
    sends: int
    duplicates: list[str]
    over_limit: list[str]
    unsettled: dict[str, str]
    actions: Counter[str]
    deaths: int
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.keys} keys, {self.sends} sends, {len(self.duplicates)} keys with more than "
            f"one non-failed send, {len(self.over_limit)} over max_attempts, "
            f"{len(self.unsettled)} unsettled; final actions {dict(self.actions)}; "
            f"{self.deaths} workers died; {self.seconds:.1f} s"
        )


def run_fleet(
    *,
    provider: str,
    ledger_url: str,
    processes: int,
    keys: int,
    timeout: float = 50.0,
    seed: int = 1,
) -> Report:
    """Run one fleet and count what the emulator received."""
    started = time.monotonic()
    names = [key_name(i) for i in range(keys)]
    rng = random.Random(seed)
    failing = {number_of(k) for k in names if rng.random() < FAIL_SHARE}
    emulator: FleetSendblue | FleetChime
    emulator = FleetSendblue(failing) if provider == "sendblue" else FleetChime(failing)
    context = multiprocessing.get_context("spawn")
    with emulator:
        extra: dict[str, Any] = {}
        if isinstance(emulator, FleetChime):
            extra = {"channel": emulator.channel_arn(), "bearer": emulator.user_arn()}
        config = Config(
            provider=provider,
            ledger_url=ledger_url,
            base_url=emulator.base_url,
            keys=names,
            reclaim_expired=provider == "chime",
            deadline=time.time() + timeout,
            extra=extra,
        )
        stop = context.Event()
        reconciler = context.Process(target=reconciler_main, args=(config, stop))
        reconciler.start()
        workers: list[Any] = []
        deaths = 0
        spawned = 0

        def spawn() -> Any:
            nonlocal spawned
            spawned += 1
            config.seed = seed * 1000 + spawned
            process = context.Process(
                target=worker_main,
                args=(config, "trio" if spawned % 2 else "asyncio"),
            )
            process.start()
            return process

        workers = [spawn() for _ in range(processes)]
        while workers:
            time.sleep(0.05)
            alive = []
            for process in workers:
                if process.exitcode is None:
                    alive.append(process)
                elif process.exitcode == DIED and time.time() < config.deadline:
                    deaths += 1
                    alive.append(spawn())
                elif process.exitcode not in (0, DIED):
                    raise RuntimeError(f"a worker failed with exit code {process.exitcode}")
            workers = alive
        stop.set()
        reconciler.join(timeout=max(1.0, config.deadline - time.time() + 5))
        if reconciler.exitcode != 0:
            reconciler.kill()
            raise RuntimeError(f"the reconciler ended with {reconciler.exitcode}")
        log = emulator.send_log()

    failed = {"ERROR", "FAILED"}
    duplicates = [k for k, statuses in log.items() if sum(s not in failed for s in statuses) > 1]
    over_limit = [k for k, statuses in log.items() if len(statuses) > MAX_ATTEMPTS]

    async def final_actions() -> tuple[Counter[str], dict[str, str]]:
        ledger = open_ledger(ledger_url)
        actions: Counter[str] = Counter()
        unsettled: dict[str, str] = {}
        for key in names:
            decision = await ledger.decision(key, max_attempts=MAX_ATTEMPTS)
            actions[decision.action.value] += 1
            if (
                decision.action
                not in (
                    ResendAction.SKIP,
                    ResendAction.BLOCKED,
                    ResendAction.UNKNOWN,
                )
                or not decision.reason
            ):
                unsettled[key] = f"{decision.action}: {decision.reason}"
        await ledger.aclose()
        return actions, unsettled

    actions, unsettled = anyio.run(final_actions)
    return Report(
        keys=keys,
        sends=sum(len(s) for s in log.values()),
        duplicates=duplicates,
        over_limit=over_limit,
        unsettled=unsettled,
        actions=actions,
        deaths=deaths,
        seconds=time.monotonic() - started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--ledger", action="append", help="ledger URLs (default: SQLite + pgserver)"
    )
    parser.add_argument("--provider", action="append", choices=["sendblue", "chime"])
    args = parser.parse_args(argv)
    import tempfile

    ok = True
    with tempfile.TemporaryDirectory(prefix="msgstatus-fleet-") as tmp:
        server = None
        urls = args.ledger
        if not urls:
            import pgserver

            server = pgserver.get_server(os.path.join(tmp, "pg"), cleanup_mode="stop")
            urls = ["sqlite", "postgres"]
        try:
            for provider in args.provider or ["sendblue", "chime"]:
                for url in urls:
                    if url == "sqlite":
                        url = f"sqlite:///{tmp}/{provider}.sqlite3"
                    elif url == "postgres":
                        assert server is not None
                        name = f"fleet_{provider}"
                        server.psql(f"CREATE DATABASE {name};")
                        url = server.get_uri(name)
                    report = run_fleet(
                        provider=provider,
                        ledger_url=url,
                        processes=args.processes,
                        keys=args.keys,
                        timeout=args.timeout,
                    )
                    backend = url.split(":", 1)[0]
                    print(f"{provider} on {backend}: {report.summary()}", flush=True)
                    ok = ok and not (report.duplicates or report.over_limit or report.unsettled)
        finally:
            if server is not None:
                server.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
