"""The ``msgstatus`` command: get, check, watch and demo, on the public API only."""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import TextIO

import anyio

from msgstatus import (
    MessageStatusProvider,
    MsgStatusError,
    ResendAction,
    ResendDecision,
    StatusClient,
    StatusResult,
    UnknownProviderError,
)

__all__ = ["main"]

ENVIRONMENT_HELP = """\
configuration (environment):
  Sendblue   SENDBLUE_API_KEY, SENDBLUE_API_SECRET, optional SENDBLUE_BASE_URL
  Chime      the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
             AWS_REGION or AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_CHIME_SDK_MESSAGING) plus
             MSGSTATUS_CHIME_BEARER, the default bearer (sender) ARN for handles without one
  A provider without configuration is not registered: its handles fail with a message naming
  the variables to set. Secrets are never printed, also not with --debug.

exit codes: 0 success; 1 a lookup failed (get) or a message did not become final (watch);
  2 bad usage or input.
"""

#: What to set to register a provider, for the message about an unregistered one.
_SETUP_HINTS: Mapping[str, str] = {
    "sendblue": "set SENDBLUE_API_KEY and SENDBLUE_API_SECRET (and SENDBLUE_BASE_URL if needed)",
    "chime": (
        "set AWS credentials and a region (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, "
        "or AWS_PROFILE) and MSGSTATUS_CHIME_BEARER for handles without a bearer"
    ),
}

# Handles longer than this are shortened in tables (JSON output always has them whole).
_MAX_HANDLE_COLUMN = 48
_PROGRESS_THRESHOLD = 5

log = logging.getLogger("msgstatus.cli")


class UsageError(Exception):
    """Bad input on the command line or in a handle file: exit code 2."""


# -- configuration ---------------------------------------------------------------------------


def providers_from_env(env: Mapping[str, str]) -> list[MessageStatusProvider]:
    """The providers the environment configures; the others are simply not registered."""
    from msgstatus import ChimeProvider, SendblueProvider

    providers: list[MessageStatusProvider] = []
    if env.get("SENDBLUE_API_KEY") and env.get("SENDBLUE_API_SECRET"):
        providers.append(SendblueProvider.from_env())
    if _aws_region_configured(env):
        providers.append(ChimeProvider(bearer=env.get("MSGSTATUS_CHIME_BEARER") or None))
    return providers


def _aws_region_configured(env: Mapping[str, str]) -> bool:
    # A region is what boto3 cannot do without; credentials are only resolved at the first
    # lookup, so that a missing one is reported there as an AuthenticationError.
    if env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
        return True
    if not (env.get("AWS_PROFILE") or env.get("AWS_CONFIG_FILE") or _default_aws_config()):
        return False
    import boto3

    try:
        return boto3.session.Session().region_name is not None
    except Exception:  # a broken profile is reported as "not configured"
        return False


def _default_aws_config() -> bool:
    return os.path.exists(os.path.expanduser("~/.aws/config"))


def _explain(error: MsgStatusError) -> str:
    """One line for stderr; for an unregistered provider, what to set."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, UnknownProviderError) and error.handle:
        prefix = error.handle.partition(":")[0]
        hint = _SETUP_HINTS.get(prefix)
        if hint:
            text += f"; {prefix} is not configured: {hint}"
    return text


# -- output ----------------------------------------------------------------------------------


def _short(text: str, width: int = _MAX_HANDLE_COLUMN) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(
    rows: Sequence[Sequence[str]], out: TextIO, *, widths: Sequence[int] | None = None
) -> None:
    if widths is None:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        out.write("\n")


_RESULT_HEADER = ("PROVIDER", "HANDLE", "STATUS", "RAW", "FINAL", "DETAIL")


def _result_row(result: StatusResult) -> tuple[str, ...]:
    return (
        result.provider,
        _short(result.handle),
        result.status.value,
        result.provider_status or "-",
        "yes" if result.is_final else "no",
        result.detail or "",
    )


_DECISION_HEADER = ("ACTION", "STATUS", "HANDLE", "REASON")
# Column widths of decisions streamed from stdin (no look-ahead to size them).
_STREAM_WIDTHS = (7, 9, _MAX_HANDLE_COLUMN, 0)


def _decision_row(handle: str, decision: ResendDecision) -> tuple[str, ...]:
    status = decision.result.status.value if decision.result else "-"
    return (decision.action.value, status, _short(handle), decision.reason)


def _decision_json(handle: str, decision: ResendDecision) -> str:
    return decision.model_dump_json() if decision.result else _with_handle(handle, decision)


def _with_handle(handle: str, decision: ResendDecision) -> str:
    # A failed lookup has no result to carry the handle: add it so each line stands alone.
    import json

    data = decision.model_dump(mode="json")
    data["handle"] = handle
    return json.dumps(data)


# -- get -------------------------------------------------------------------------------------


async def _get(client: StatusClient, handles: Sequence[str], as_json: bool, out: TextIO) -> int:
    outcomes = await client.get_statuses(handles)
    rows: list[tuple[str, ...]] = [_RESULT_HEADER]
    failed = 0
    for handle, outcome in zip(handles, outcomes, strict=True):
        if isinstance(outcome, MsgStatusError):
            failed += 1
            print(f"msgstatus: {_short(handle, 80)}: {_explain(outcome)}", file=sys.stderr)
            log.debug("lookup of %r failed", handle, exc_info=outcome)
        elif as_json:
            out.write(outcome.model_dump_json() + "\n")
        else:
            rows.append(_result_row(outcome))
    if not as_json and len(rows) > 1:
        _table(rows, out)
    return 1 if failed else 0


# -- check -----------------------------------------------------------------------------------


def read_handles(stream: TextIO) -> Iterator[str]:
    """Handles from a file: one per line (blank lines and ``#`` comments skipped), or CSV whose
    header row has a ``handle`` column.

    Lazy: one line is read per handle asked for, so memory stays flat whatever the input's
    size, and a handle from stdin is looked up as soon as its line arrives (the client advances
    this generator in a worker thread, so a wait for the next line never blocks the lookups).
    """
    first = stream.readline()
    if not first:
        return
    header = next(csv.reader([first]))
    if len(header) > 1 or header[:1] == ["handle"]:
        names = [name.strip().lower() for name in header]
        if "handle" not in names:
            raise UsageError("the CSV header has no 'handle' column")
        column = names.index("handle")
        for line_number, row in enumerate(csv.reader(stream), start=2):
            if not row:
                continue
            if len(row) <= column:
                raise UsageError(f"line {line_number} has no handle column")
            yield row[column].strip()
        return
    line = first
    while line:
        text = line.strip()
        if text and not text.startswith("#"):
            yield text
        # Read only once this handle is taken: on stdin the next line may not exist yet.
        line = stream.readline()


class _Progress:
    """A one-line counter on stderr, only when stderr is a terminal."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled and (total is None or total > _PROGRESS_THRESHOLD)

    def step(self) -> None:
        self.done += 1
        if self.enabled and (self.done % 25 == 0 or self.done == self.total):
            of = f"/{self.total}" if self.total else ""
            width = 30
            bar = ""
            if self.total:
                filled = int(width * self.done / self.total)
                bar = "[" + "#" * filled + "." * (width - filled) + "] "
            sys.stderr.write(f"\r{bar}{self.done}{of} checked")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")


async def _check(
    client: StatusClient,
    handles: Iterator[str],
    total: int | None,
    *,
    as_json: bool,
    concurrency: int,
    out: TextIO,
) -> int:
    counts: Counter[ResendAction] = Counter()
    rows: list[tuple[str, ...]] = [_DECISION_HEADER]
    progress = _Progress(total, sys.stderr.isatty())
    header_due = True
    # Decisions are printed as lookups complete, so memory stays flat for any input size.
    async with client.iter_statuses(handles, concurrency=concurrency) as stream:
        async for handle, outcome in stream:
            decision = ResendDecision.from_outcome(outcome)
            counts[decision.action] += 1
            progress.step()
            handle_text = str(handle)
            if as_json:
                out.write(_decision_json(handle_text, decision) + "\n")
                if total is None:
                    out.flush()  # stdin: each answer shows while the input is still open
            elif total is None:
                # stdin: a row per answer as it comes, in columns as wide as the longest value
                # can be (actions, statuses) or as tables shorten it (handles).
                row = _decision_row(handle_text, decision)
                if header_due:
                    _table([_DECISION_HEADER, row], out, widths=_STREAM_WIDTHS)
                    header_due = False
                else:
                    _table([row], out, widths=_STREAM_WIDTHS)
                out.flush()
            else:
                rows.append(_decision_row(handle_text, decision))
                if len(rows) >= 200:
                    _table(rows, out)
                    rows = [_DECISION_HEADER]
    progress.close()
    if not as_json and len(rows) > 1:
        _table(rows, out)
    summary = ", ".join(f"{action.value} {counts[action]}" for action in ResendAction)
    print(f"{sum(counts.values())} handles: {summary}", file=sys.stderr if as_json else out)
    return 0


def _open_handles(path: str) -> tuple[TextIO, int | None]:
    if path == "-":
        return sys.stdin, None
    try:
        with open(path, encoding="utf-8") as counting:
            total = sum(1 for line in counting if line.strip())
        return open(path, encoding="utf-8", newline=""), total
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


# -- watch -----------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%H:%M:%S.%f")[:-3]


async def _watch_one(
    client: StatusClient,
    handle: str,
    *,
    deadline: float,
    interval: float,
    out: TextIO,
    final: dict[str, bool],
) -> None:
    last_seen: tuple[str, str | None] | None = None
    last_error = ""
    wait = interval
    while True:
        try:
            result = await client.get_status(handle)
        except MsgStatusError as exc:
            if not exc.retryable:
                print(f"msgstatus: {_short(handle, 80)}: {_explain(exc)}", file=sys.stderr)
                return
            if str(exc) != last_error:
                print(f"{_now()}  {_short(handle)}  (retrying: {exc.message})", file=out)
                last_error = str(exc)
        else:
            seen = (result.status.value, result.provider_status)
            if seen != last_seen:
                raw = f" ({result.provider_status})" if result.provider_status else ""
                mark = "  final" if result.is_final else ""
                detail = f"  {result.detail}" if result.detail else ""
                print(
                    f"{_now()}  {result.provider:<8}  {_short(result.handle)}  "
                    f"{result.status.value}{raw}{mark}{detail}",
                    file=out,
                    flush=True,
                )
                last_seen = seen
            if result.is_final:
                final[handle] = True
                return
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            return
        await anyio.sleep(min(wait, remaining))
        wait = min(wait * 1.5, 5.0)


async def _watch(
    client: StatusClient, handles: Sequence[str], *, seconds: float, interval: float, out: TextIO
) -> int:
    final = dict.fromkeys(handles, False)
    deadline = anyio.current_time() + seconds
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for handle in dict.fromkeys(handles):
                tg.start_soon(
                    partial(
                        _watch_one,
                        client,
                        handle,
                        deadline=deadline,
                        interval=interval,
                        out=out,
                        final=final,
                    )
                )
    pending = [h for h, done in final.items() if not done]
    for handle in pending:
        print(f"msgstatus: {_short(handle, 80)}: not final after {seconds:g} s", file=sys.stderr)
    return 1 if pending else 0


# -- the command line ------------------------------------------------------------------------


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msgstatus",
        description="Ask messaging providers what happened to a message, and whether it may be "
        "sent again. Handles are '<provider>:<native handle>', e.g. sendblue:msg_abc123.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    get = sub.add_parser(
        "get",
        help="look up the status of handles",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("handles", nargs="+", metavar="HANDLE")
    get.add_argument("--json", action="store_true", help="one StatusResult JSON object per line")

    check = sub.add_parser(
        "check",
        help="decide for each handle whether it may be resent",
        description="Read handles (one per line, or CSV with a 'handle' column) and print the "
        "resend decision for each as its lookup completes, then a count per action.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE|-", help="file of handles, or - for stdin")
    check.add_argument("--json", action="store_true", help="one ResendDecision JSON per line")
    check.add_argument(
        "--concurrency", type=_positive(int), default=32, help="lookups at once (default 32)"
    )

    watch = sub.add_parser(
        "watch",
        help="follow handles until their status is final",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch.add_argument("handles", nargs="+", metavar="HANDLE")
    watch.add_argument(
        "--timeout", type=_positive(float), default=300.0, help="seconds (default 300)"
    )
    watch.add_argument(
        "--interval", type=_positive(float), default=1.0, help="first poll interval (default 1)"
    )

    sub.add_parser(
        "demo",
        help="run the library against the built-in loopback emulators (no credentials)",
    )
    return parser


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "demo":
        from msgstatus._demo import run_demo

        return await run_demo(out)
    source: TextIO | None = None
    total: int | None = None
    if args.command == "check":
        source, total = _open_handles(args.file)
    try:
        async with StatusClient(providers_from_env(os.environ)) as client:
            if args.command == "get":
                return await _get(client, args.handles, args.json, out)
            if args.command == "watch":
                return await _watch(
                    client, args.handles, seconds=args.timeout, interval=args.interval, out=out
                )
            assert source is not None
            return await _check(
                client,
                read_handles(source),
                total,
                as_json=args.json,
                concurrency=args.concurrency,
                out=out,
            )
    finally:
        if source is not None and source is not sys.stdin:
            source.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``msgstatus`` and ``python -m msgstatus``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.debug:
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("msgstatus").setLevel(logging.DEBUG)
    out = sys.stdout
    try:
        return anyio.run(_run, args, out)
    except (UsageError, ValueError) as exc:
        # ValueError: configuration the providers refuse (e.g. a plain-http SENDBLUE_BASE_URL).
        if args.debug:
            traceback.print_exc()
        print(f"msgstatus: {exc}", file=sys.stderr)
        return 2
    except MsgStatusError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"msgstatus: {_explain(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        out.flush()
