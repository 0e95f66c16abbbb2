"""The ``msgstatus`` command: get, check, watch and demo, on the public API only."""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import Any, TextIO, cast

import anyio

from msgstatus import (
    InvalidHandleError,
    Ledger,
    MessageStatusProvider,
    MsgStatusError,
    ResendAction,
    ResendDecision,
    StatusClient,
    StatusResult,
    UnknownProviderError,
    open_ledger,
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

exit codes: 0 success; 1 a lookup failed (get, watch) or a message did not become final
  (watch); 2 bad usage or input: a malformed handle, a provider that is not configured, a file
  that is empty, binary or unreadable.

Try it without credentials: run 'msgstatus emulate' in one terminal and paste the export lines
it prints into another.

ledger (check --ledger, ledger show, reconcile, listen): --ledger URL, else $MSGSTATUS_LEDGER_URL,
  else sqlite:///msgstatus-ledger.sqlite3 in the current directory; postgresql://... needs
  msgstatus[postgres]. listen needs msgstatus[server] and reads its webhook secret from
  MSGSTATUS_SENDBLUE_WEBHOOK_SECRET (or --secret).
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
    """The providers the environment configures (each through its own ``from_env()``); the
    others are simply not registered. Raises UsageError for configuration a provider refuses."""
    from msgstatus import AuthenticationError, ChimeProvider, SendblueProvider

    providers: list[MessageStatusProvider] = []
    # Not configured: its handles fail with a message naming the variables to set.
    with contextlib.suppress(AuthenticationError):
        providers.append(SendblueProvider.from_env())
    if _aws_region_configured(env):
        try:
            providers.append(ChimeProvider.from_env())
        except InvalidHandleError as exc:
            raise UsageError(exc.message) from None
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
    """``text`` cut to ``width`` in the middle: the end of a handle is what tells two apart
    (a Chime handle's message id comes after its long channel ARN)."""
    if len(text) <= width:
        return text
    head = (width - 3) // 3
    return text[:head] + "..." + text[len(text) - (width - 3 - head) :]


def _input_error(error: BaseException) -> bool:
    """A malformed handle or an unconfigured provider: bad input (exit 2), not a failed lookup."""
    return isinstance(error, (InvalidHandleError, UnknownProviderError))


def _handle_cell(text: str, full: bool) -> str:
    return text if full else _short(text)


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


def _result_row(result: StatusResult, full: bool = False) -> tuple[str, ...]:
    return (
        result.provider,
        _handle_cell(result.handle, full),
        result.status.value,
        result.provider_status or "-",
        "yes" if result.is_final else "no",
        result.detail or "",
    )


_DECISION_HEADER = ("ACTION", "STATUS", "HANDLE", "REASON")
# Column widths of decisions streamed from stdin (no look-ahead to size them).
_STREAM_WIDTHS = (7, 9, _MAX_HANDLE_COLUMN, 0)


def _decision_row(handle: str, decision: ResendDecision, full: bool = False) -> tuple[str, ...]:
    status = decision.result.status.value if decision.result else "-"
    return (decision.action.value, status, _handle_cell(handle, full), decision.reason)


def _error_type(outcome: object) -> str | None:
    return type(outcome).__name__ if isinstance(outcome, BaseException) else None


def decision_row_json(handle: str, decision: ResendDecision, error_type: str | None) -> str:
    """One ``check --json`` row: ``handle`` (as read), ``action``, ``reason``, ``error_type``
    (the error's class name when the lookup failed, else null) and ``result`` (a StatusResult
    object, or null)."""
    import json

    row = {
        "handle": handle,
        "action": decision.action.value,
        "reason": decision.reason,
        "error_type": error_type,
        "result": decision.result.model_dump(mode="json") if decision.result else None,
    }
    return json.dumps(row)


def result_row_json(handle: str, outcome: StatusResult | MsgStatusError) -> str:
    """One ``get --json`` row: ``handle`` (as given), ``result`` (a StatusResult object, or
    null), ``error_type`` and ``error`` (the error's class name and message, or null)."""
    import json

    row: dict[str, object]
    if isinstance(outcome, MsgStatusError):
        row = {
            "handle": handle,
            "result": None,
            "error_type": type(outcome).__name__,
            "error": _explain(outcome).partition(": ")[2],
        }
    else:
        row = {
            "handle": handle,
            "result": outcome.model_dump(mode="json"),
            "error_type": None,
            "error": None,
        }
    return json.dumps(row)


# -- get -------------------------------------------------------------------------------------


async def _get(client: StatusClient, handles: Sequence[str], as_json: bool, out: TextIO) -> int:
    outcomes = await client.get_statuses(handles)
    full = not out.isatty()
    rows: list[tuple[str, ...]] = [_RESULT_HEADER]
    failed = bad_input = 0
    for handle, outcome in zip(handles, outcomes, strict=True):
        if isinstance(outcome, MsgStatusError):
            failed += 1
            bad_input += _input_error(outcome)
            print(f"msgstatus: {_short(handle, 80)}: {_explain(outcome)}", file=sys.stderr)
            log.debug("lookup of %r failed", handle, exc_info=outcome)
        if as_json:
            # One row per input handle, in input order, failures included.
            out.write(result_row_json(handle, outcome) + "\n")
        elif not isinstance(outcome, MsgStatusError):
            rows.append(_result_row(outcome, full))
    if not as_json and len(rows) > 1:
        _table(rows, out)
    return 2 if bad_input else 1 if failed else 0


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
    full = not out.isatty()
    bad_input = 0
    # Decisions are printed as lookups complete, so memory stays flat for any input size.
    async with client.iter_statuses(handles, concurrency=concurrency) as stream:
        async for handle, outcome in stream:
            decision = ResendDecision.from_outcome(outcome)
            counts[decision.action] += 1
            bad_input += _input_error(outcome) if isinstance(outcome, BaseException) else 0
            progress.step()
            handle_text = str(handle)
            if as_json:
                out.write(decision_row_json(handle_text, decision, _error_type(outcome)) + "\n")
                if total is None:
                    out.flush()  # stdin: each answer shows while the input is still open
            elif total is None:
                # stdin: a row per answer as it comes, in columns as wide as the longest value
                # can be (actions, statuses) or as tables shorten it (handles).
                row = _decision_row(handle_text, decision, full)
                if header_due:
                    _table([_DECISION_HEADER, row], out, widths=_STREAM_WIDTHS)
                    header_due = False
                else:
                    _table([row], out, widths=_STREAM_WIDTHS)
                out.flush()
            else:
                rows.append(_decision_row(handle_text, decision, full))
                if len(rows) >= 200:
                    _table(rows, out)
                    rows = [_DECISION_HEADER]
    progress.close()
    if total is None and not counts:
        raise UsageError("standard input: no handles (the input is empty)")
    if not as_json and len(rows) > 1:
        _table(rows, out)
    summary = ", ".join(f"{action.value} {counts[action]}" for action in ResendAction)
    # The summary is for the person at the terminal: on stderr when stdout is a file or a pipe.
    to_stderr = as_json or not out.isatty()
    print(f"{sum(counts.values())} handles: {summary}", file=sys.stderr if to_stderr else out)
    if bad_input:
        print(
            f"msgstatus: {bad_input} handles are malformed or name a provider that is not "
            "configured",
            file=sys.stderr,
        )
        return 2
    return 0


def _binary(path: str) -> UsageError:
    return UsageError(f"{path}: a binary file or not UTF-8 text, so not a file of handles")


class _CheckedLines:
    """A text stream read line by line, as ``read_handles`` reads it, refusing binary or
    non-UTF-8 input with the same UsageError a file gets, at the line where it shows."""

    name = "standard input"

    def __init__(self, stream: TextIO) -> None:
        import io

        buffer = getattr(stream, "buffer", None)
        self._stream: TextIO = (
            io.TextIOWrapper(buffer, encoding="utf-8-sig", errors="strict", newline="")
            if buffer is not None
            else stream
        )
        self.handles = 0

    def readline(self) -> str:
        try:
            line = self._stream.readline()
        except UnicodeDecodeError:
            raise _binary(self.name) from None
        if "\x00" in line:
            raise _binary(self.name)
        return line

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line

    def close(self) -> None:
        """Standard input stays open: it is not ours."""


def _open_handles(path: str) -> tuple[TextIO, int | None]:
    """The handle source and its number of handles (a CSV header and comments not counted).
    Raises UsageError naming the file when it cannot be read, is binary or holds no handles."""

    if path == "-":
        # Standard input is streamed, never held: each line is checked as it is read (binary or
        # not UTF-8 ends the run with exit 2), and an input with no handles is refused at its
        # end (_check). No total: stdin cannot be read twice.
        return cast("TextIO", _CheckedLines(sys.stdin)), None
    try:
        with open(path, "rb") as probe:
            if b"\x00" in probe.read(8192):
                raise _binary(path)
        with open(path, encoding="utf-8-sig", newline="") as counting:
            total = sum(1 for _ in read_handles(counting))
        source = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by _run
    except UnicodeDecodeError:
        raise _binary(path) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    if total == 0:
        source.close()
        raise UsageError(f"{path}: no handles (the file is empty)")
    return source, total


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
    failed: dict[str, MsgStatusError],
) -> None:
    last_seen: tuple[str, str | None] | None = None
    last_error = ""
    wait = interval
    while True:
        try:
            result = await client.get_status(handle)
        except MsgStatusError as exc:
            if not exc.retryable:
                # Said at once, and not again as "not final" at the end.
                print(f"msgstatus: {_short(handle, 80)}: {_explain(exc)}", file=sys.stderr)
                failed[handle] = exc
                return
            if str(exc) != last_error:
                shown = _handle_cell(handle, not out.isatty())
                print(f"{_now()}  {shown}  (retrying: {exc.message})", file=out)
                last_error = str(exc)
        else:
            seen = (result.status.value, result.provider_status)
            if seen != last_seen:
                raw = f" ({result.provider_status})" if result.provider_status else ""
                mark = "  final" if result.is_final else ""
                detail = f"  {result.detail}" if result.detail else ""
                print(
                    f"{_now()}  {result.provider:<8}  "
                    f"{_handle_cell(result.handle, not out.isatty())}  "
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
    failed: dict[str, MsgStatusError] = {}
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
                        failed=failed,
                    )
                )
    pending = [h for h, done in final.items() if not done and h not in failed]
    for handle in pending:
        print(f"msgstatus: {_short(handle, 80)}: not final after {seconds:g} s", file=sys.stderr)
    if any(_input_error(error) for error in failed.values()):
        return 2
    return 1 if pending or failed else 0


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
    # --debug is accepted after the subcommand too; SUPPRESS keeps an absent one from undoing a
    # --debug given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="tracebacks and debug logging",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    get = _provider_command(sub, common, "get", help="look up the status of handles")
    get.add_argument("handles", nargs="+", metavar="HANDLE")
    get.add_argument("--json", action="store_true", help="one StatusResult JSON object per line")

    check = _provider_command(
        sub,
        common,
        "check",
        help="decide for each handle whether it may be resent",
        description="Read handles (one per line, or CSV with a 'handle' column) and print the "
        "resend decision for each as its lookup completes, then a count per action.",
    )
    check.add_argument("file", metavar="FILE|-", help="file of handles, or - for stdin")
    check.add_argument("--json", action="store_true", help="one ResendDecision JSON per line")
    check.add_argument(
        "--concurrency", type=_positive(int), default=32, help="lookups at once (default 32)"
    )
    _add_ledger_option(check, optional=True)

    watch = _provider_command(
        sub, common, "watch", help="follow handles until their status is final"
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
        parents=[common],
        help="run the library against the built-in loopback emulators (no credentials)",
    )
    _add_emulate_parser(sub, common)
    _add_ledger_commands(sub, common)
    return parser


def _provider_command(
    sub: Any, common: argparse.ArgumentParser, name: str, **options: str
) -> argparse.ArgumentParser:
    """A subcommand that looks messages up: its help ends with the provider configuration."""
    command: argparse.ArgumentParser = sub.add_parser(
        name,
        parents=[common],
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **options,
    )
    return command


def _add_emulate_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    emulate = sub.add_parser(
        "emulate",
        parents=[common],
        help="serve both emulators on loopback with seeded messages, for get, check and watch",
        description="Start the Sendblue and Chime emulators on 127.0.0.1, seed messages in each "
        "lifecycle, print the export lines that point the CLI and the library at them, and serve "
        "until interrupted (Ctrl-C).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    emulate.add_argument(
        "--sendblue-port", type=int, default=0, help="port of the Sendblue emulator (default any)"
    )
    emulate.add_argument(
        "--chime-port", type=int, default=0, help="port of the Chime emulator (default any)"
    )
    emulate.add_argument(
        "--messages",
        type=_positive(int),
        default=None,
        help="seed this many messages in all, spread over the lifecycles (default: one each)",
    )
    emulate.add_argument(
        "--write-handles",
        metavar="FILE",
        help="write the seeded handles to FILE as CSV (handle,lifecycle), for 'msgstatus check'",
    )


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "demo":
        from msgstatus._demo import run_demo

        return await run_demo(out)
    if args.command in _LEDGER_COMMANDS:
        return await _run_ledger_command(args, out)
    source: TextIO | None = None
    total: int | None = None
    if args.command == "check":
        source, total = _open_handles(args.file)
    try:
        async with StatusClient(providers_from_env(os.environ), ledger=_ledger_of(args)) as client:
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


def _emulate(args: argparse.Namespace, out: TextIO) -> int:
    # Synchronous: the emulators serve from their own threads, and Ctrl-C ends the wait.
    from msgstatus._emulate import run_emulate

    try:
        return run_emulate(
            out,
            sendblue_port=args.sendblue_port,
            chime_port=args.chime_port,
            messages=args.messages,
            handles_file=args.write_handles,
        )
    except OSError as exc:
        raise UsageError(f"cannot serve or write: {exc.strerror or exc}") from exc


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
    if args.command == "listen":
        return _listen(args, out)
    try:
        if args.command == "emulate":
            return _emulate(args, out)
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
        return 2 if _input_error(exc) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        out.flush()


# -- the send ledger and push: ledger show, reconcile, listen -----------------------------------

#: The CLI's ledger when neither --ledger nor $MSGSTATUS_LEDGER_URL names one.
DEFAULT_LEDGER_URL = "sqlite:///msgstatus-ledger.sqlite3"
#: Where ``listen`` reads the Sendblue webhook secret from unless --secret is given.
SECRET_ENV = "MSGSTATUS_SENDBLUE_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
_LEDGER_COMMANDS = frozenset({"ledger", "reconcile"})


def _ledger_url(given: str | None) -> str:
    from msgstatus._ledger import LEDGER_URL_ENV

    return given or os.environ.get(LEDGER_URL_ENV) or DEFAULT_LEDGER_URL


def _ledger_of(args: argparse.Namespace) -> Ledger | None:
    """The ledger ``check --ledger`` records into, or None without the option."""
    given = getattr(args, "ledger", None)
    if given is None:
        return None
    return open_ledger(_ledger_url(given or None))


def _add_ledger_option(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    if optional:
        parser.add_argument(
            "--ledger",
            nargs="?",
            const="",
            default=None,
            metavar="URL",
            help="record every result in the send ledger (URL optional: $MSGSTATUS_LEDGER_URL "
            f"or {DEFAULT_LEDGER_URL})",
        )
    else:
        parser.add_argument(
            "--ledger",
            metavar="URL",
            default=None,
            help=f"the send ledger (default $MSGSTATUS_LEDGER_URL or {DEFAULT_LEDGER_URL})",
        )


def _add_ledger_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    ledger = sub.add_parser("ledger", parents=[common], help="read the send ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", metavar="COMMAND", required=True)
    show = ledger_sub.add_parser(
        "show", parents=[common], help="what the ledger holds for a key, and its decision"
    )
    show.add_argument("key", metavar="KEY")
    show.add_argument("--json", action="store_true", help="the entry as one JSON object")
    _add_ledger_option(show, optional=False)

    reconcile = _provider_command(
        sub,
        common,
        "reconcile",
        help="look up the ledger's in-flight attempts and record what they are now",
    )
    reconcile.add_argument(
        "--limit", type=_positive(int), default=100, help="attempts to look up (default 100)"
    )
    _add_ledger_option(reconcile, optional=False)

    listen = sub.add_parser(
        "listen",
        parents=[common],
        help="receive Sendblue status callbacks and outbound webhooks into the ledger",
        description="Serve the Sendblue webhook receiver (uvicorn; pip install "
        "'msgstatus[server]') and record each status it receives in the ledger, one line per "
        "result. Point status_callback (or an 'outbound' account webhook) at it. SIGTERM or "
        "Ctrl-C stops it gracefully: requests in flight are finished first.",
    )
    _add_ledger_option(listen, optional=False)
    listen.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    listen.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    listen.add_argument(
        "--secret",
        default=None,
        help=f"the webhook secret Sendblue sends as sb-signing-secret (default ${SECRET_ENV}; "
        "prefer the variable: arguments are visible to other users in the process list)",
    )
    listen.add_argument(
        "--no-secret",
        action="store_true",
        help="accept webhooks without checking sb-signing-secret (only behind your own auth)",
    )


async def _run_ledger_command(args: argparse.Namespace, out: TextIO) -> int:
    ledger = open_ledger(_ledger_url(args.ledger))
    if args.command == "ledger":
        try:
            return await _ledger_show(ledger, args.key, as_json=args.json, out=out)
        finally:
            await ledger.aclose()
    async with StatusClient(providers_from_env(os.environ), ledger=ledger) as client:
        return await _reconcile(client, limit=args.limit, out=out)


async def _ledger_show(ledger: Ledger, key: str, *, as_json: bool, out: TextIO) -> int:
    entry = await ledger.entry(key)
    if entry is None:
        print(f"msgstatus: the ledger has nothing for {key!r}", file=sys.stderr)
        return 1
    if as_json:
        out.write(entry.model_dump_json() + "\n")
        return 0
    decision = entry.decision
    out.write(f"key       {entry.key}\n")
    out.write(f"decision  {decision.action.value}: {decision.reason}\n")
    rows: list[tuple[str, ...]] = [("ATTEMPT", "STATE", "STATUS", "FINAL", "HANDLE", "NOTE")]
    for attempt in entry.attempts:
        observation = attempt.observation
        note = attempt.lookup_error or (observation.detail if observation else None) or ""
        if attempt.state == "claimed":
            lease = "expired" if attempt.expired else "until " + attempt.lease_until.isoformat()
            note = f"lease {lease}" + (f"; {note}" if note else "")
        rows.append(
            (
                str(attempt.attempt),
                attempt.state,
                observation.status.value if observation else "-",
                ("yes" if observation.is_final else "no") if observation else "-",
                _short(attempt.handle or "-"),
                note,
            )
        )
    _table(rows, out)
    return 0


async def _reconcile(client: StatusClient, *, limit: int, out: TextIO) -> int:
    outcomes = await client.reconcile(limit=limit)
    rows: list[tuple[str, ...]] = [_RESULT_HEADER]
    failed = 0
    for handle, outcome in outcomes:
        if isinstance(outcome, MsgStatusError):
            failed += 1
            print(f"msgstatus: {_short(handle, 80)}: {_explain(outcome)}", file=sys.stderr)
        else:
            rows.append(_result_row(outcome))
    if len(rows) > 1:
        _table(rows, out)
    print(f"{len(outcomes)} in flight looked up, {failed} failed", file=out)
    return 0


def _listen(args: argparse.Namespace, out: TextIO) -> int:
    from msgstatus._serve import ListenApp, bind, serve

    secret = args.secret if args.secret is not None else os.environ.get(SECRET_ENV) or None
    if secret is None and not args.no_secret:
        print(
            f"msgstatus: listen needs the webhook secret: set {SECRET_ENV} (or --secret), or "
            "pass --no-secret to accept unauthenticated webhooks",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.port <= 65535:
        print("msgstatus: --port must be 0-65535", file=sys.stderr)
        return 2
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        print("msgstatus: listen needs uvicorn: pip install 'msgstatus[server]'", file=sys.stderr)
        return 2
    try:
        ledger = open_ledger(_ledger_url(args.ledger))
        app = ListenApp(ledger, secret=None if args.no_secret else secret, out=out)
        sock = bind(args.host, args.port)
    except (ValueError, OSError) as exc:
        print(f"msgstatus: {exc}", file=sys.stderr)
        return 2
    # uvicorn handles SIGTERM (a graceful shutdown), then restores the handler it found and
    # raises the signal again: this one makes that a normal exit (0) instead of death by signal.
    import signal

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with sock:
            serve(app, sock, out=out)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
