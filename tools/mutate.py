"""A small scripted mutation tester (``nox -s mutate``).

mutmut and its kin rewrite the package in place or trampoline every function, which fights the
project's pytest plugin (it imports msgstatus before any test) and the subprocess tests. This
script is simpler: each mutant is one exact text substitution in one module of a fresh copy of
``src/``; the tests that cover that code run against the copy (``PYTHONPATH``), with ``-x``, and
the mutant is *killed* if they fail (or hang past the timeout). A mutant that survives fails the
run unless ``tools/mutants_allowed.txt`` lists it with the reason it is equivalent.

    python tools/mutate.py            # every mutant, then the score
    python tools/mutate.py --list     # names only
    python tools/mutate.py NAME...    # some of them

A mutant names its module; when the code it targets has moved (``old`` is not found exactly once
there), every module of the package is searched, so a refactoring that only moves code does not
break the list. A mutant whose ``old`` text is found nowhere is reported as stale and fails the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "msgstatus"
ALLOWED = Path(__file__).resolve().parent / "mutants_allowed.txt"
TIMEOUT = 300

NOT_SLOW = ["-k", "not 100000"]
STATUS = ["tests/test_status.py", "tests/test_status_table.py", "tests/test_client.py", *NOT_SLOW]
RETRY = ["tests/test_retry.py"]
CLIENT = ["tests/test_client.py", *NOT_SLOW]
DECISION = [
    "tests/test_client.py",
    "tests/test_status.py",
    "tests/test_resend_safety.py",
    "tests/test_dedup_properties.py",
    *NOT_SLOW,
]
# The resend-safety tests walk every raw status and error key through the emulators.
SENDBLUE = [
    "tests/providers/test_sendblue.py",
    "tests/test_docs.py",
    "tests/test_resend_safety.py",
    "tests/test_dedup_properties.py",
]
CHIME = ["tests/providers/test_chime.py", "tests/test_docs.py", "tests/test_dedup_properties.py"]


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str  # path under src/msgstatus
    old: str
    new: str
    tests: tuple[str, ...]


def m(name: str, module: str, old: str, new: str, tests: list[str]) -> Mutant:
    return Mutant(name, module, old, new, tuple(tests))


S, R, C, D, SB, CH = (
    "_status.py",
    "_retry.py",
    "_client.py",
    "_decision.py",
    "_providers/sendblue.py",
    "_providers/chime.py",
)

MUTANTS = [
    # -- the status vocabulary, ranks and merge (msgstatus._status) --------------------------
    m(
        "rank-failed-above-denied",
        S,
        "MessageStatus.FAILED: 3,\n    MessageStatus.DENIED: 4,",
        "MessageStatus.FAILED: 4,\n    MessageStatus.DENIED: 3,",
        STATUS,
    ),
    m(
        "rank-delivery-below-failure",
        S,
        "MessageStatus.DELIVERED: 5,",
        "MessageStatus.DELIVERED: 2.5,",
        STATUS,
    ),
    m(
        "final-sent-rank-is-sent",
        S,
        "_FINAL_SENT_RANK = (_RANK[MessageStatus.DENIED] + _RANK[MessageStatus.DELIVERED]) / 2",
        "_FINAL_SENT_RANK = _RANK[MessageStatus.SENT] + 0.5",
        STATUS,
    ),
    m(
        "final-sent-not-delivery",
        S,
        "return evidence_rank(status, is_final) >= _FINAL_SENT_RANK",
        "return evidence_rank(status, is_final) > _FINAL_SENT_RANK",
        STATUS,
    ),
    m(
        "rank-unknown-above-pending",
        S,
        "MessageStatus.UNKNOWN: 0,",
        "MessageStatus.UNKNOWN: 1.5,",
        STATUS,
    ),
    m(
        "rank-read-below-delivered",
        S,
        "MessageStatus.READ: 6,",
        "MessageStatus.READ: 4.8,",
        STATUS,
    ),
    m("rank-sent-above-read", S, "MessageStatus.SENT: 2,", "MessageStatus.SENT: 4.5,", STATUS),
    m(
        "status-merge-lower-wins",
        S,
        "return self if self.rank >= other.rank else other",
        "return self if self.rank <= other.rank else other",
        STATUS,
    ),
    m(
        "status-merge-tie",
        S,
        "return self if self.rank >= other.rank else other",
        "return self if self.rank > other.rank else other",
        STATUS,
    ),
    m(
        "terminal-without-denied",
        S,
        "return self in (MessageStatus.FAILED, MessageStatus.DENIED)",
        "return self in (MessageStatus.FAILED,)",
        STATUS,
    ),
    m(
        "result-merge-no-guard",
        S,
        '            raise ValueError("cannot merge observations of two different messages")',
        "            pass",
        STATUS,
    ),
    m(
        "result-merge-older-rank-wins",
        S,
        "winner, loser = (self, other) if mine > theirs else (other, self)",
        "winner, loser = (self, other) if mine < theirs else (other, self)",
        STATUS,
    ),
    m(
        "result-merge-conflict-dropped",
        S,
        "            return winner._with_conflict(loser)",
        "            return winner",
        STATUS,
    ),
    m(
        "result-merge-older-check-wins",
        S,
        "winner, loser = (self, other) if self.checked_at > other.checked_at else (other, self)",
        "winner, loser = (self, other) if self.checked_at < other.checked_at else (other, self)",
        STATUS,
    ),
    m(
        "checked-at-naive-accepted",
        S,
        'raise ValueError("checked_at must be timezone-aware")',
        "return value",
        STATUS,
    ),
    m(
        "table-no-strip",
        S,
        "self.mapping.get(raw.strip().upper())",
        "self.mapping.get(raw.upper())",
        STATUS,
    ),
    m(
        "table-no-upper",
        S,
        "self.mapping.get(raw.strip().upper())",
        "self.mapping.get(raw.strip())",
        STATUS,
    ),
    m(
        "table-none-is-pending",
        S,
        "if raw is None:\n            return MessageStatus.UNKNOWN",
        "if raw is None:\n            return MessageStatus.PENDING",
        STATUS,
    ),
    m("table-warn-every-time", S, "if raw in self._warned or len(", "if len(", STATUS),
    m("table-no-cap", S, " or len(self._warned) >= _MAX_WARNED_VALUES", "", STATUS),
    m(
        "table-cap-off-by-one",
        S,
        "len(self._warned) >= _MAX_WARNED_VALUES",
        "len(self._warned) > _MAX_WARNED_VALUES",
        STATUS,
    ),
    m("table-log-uncut", S, "raw[:200],", "raw,", STATUS),
    # -- retries (msgstatus._retry) -----------------------------------------------------------
    m(
        "number-nan-accepted",
        R,
        "if not math.isfinite(value) or value < 0:",
        "if value < 0:",
        RETRY,
    ),
    m(
        "number-zero-refused",
        R,
        "if not math.isfinite(value) or value < 0:",
        "if not math.isfinite(value) or value <= 0:",
        RETRY,
    ),
    m(
        "retry-after-past-date-negative",
        R,
        "seconds = max(when.timestamp() - (time.time() if now is None else now), 0.0)",
        "seconds = when.timestamp() - (time.time() if now is None else now)",
        RETRY,
    ),
    m("retry-after-uncapped", R, "return min(seconds, MAX_RETRY_AFTER)", "return seconds", RETRY),
    m(
        "retry-after-junk-raises",
        R,
        "except (TypeError, ValueError, IndexError):\n            return None",
        "except IndexError:\n            return None",
        RETRY,
    ),
    m("policy-zero-attempts", R, "if self.max_attempts < 1:", "if self.max_attempts < 0:", RETRY),
    m(
        "policy-infinite-backoff",
        R,
        "if not (math.isfinite(value) and value >= 0):",
        "if not value >= 0:",
        RETRY,
    ),
    m(
        "policy-negative-backoff",
        R,
        "if not (math.isfinite(value) and value >= 0):",
        "if not math.isfinite(value):",
        RETRY,
    ),
    m(
        "backoff-nan-retry-after",
        R,
        "if retry_after is not None and math.isfinite(retry_after):",
        "if retry_after is not None:",
        RETRY,
    ),
    m(
        "backoff-retry-after-uncapped",
        R,
        "return min(max(retry_after, 0.0), self.max_backoff)",
        "return max(retry_after, 0.0)",
        RETRY,
    ),
    m(
        "backoff-retry-after-negative",
        R,
        "return min(max(retry_after, 0.0), self.max_backoff)",
        "return min(retry_after, self.max_backoff)",
        RETRY,
    ),
    m(
        "backoff-exponent-off-by-one",
        R,
        "2.0 ** min(retry_number - 1, 62)",
        "2.0 ** min(retry_number, 62)",
        RETRY,
    ),
    m(
        "backoff-uncapped",
        R,
        "ceiling = min(self.max_backoff, self.initial_backoff",
        "ceiling = max(self.max_backoff, self.initial_backoff",
        RETRY,
    ),
    m("backoff-no-jitter", R, "return self.rng.uniform(0.0, ceiling)", "return ceiling", RETRY),
    m(
        "retry-non-retryable",
        R,
        "if not exc.retryable or retry_number + 1 >= policy.max_attempts:",
        "if retry_number + 1 >= policy.max_attempts:",
        RETRY,
    ),
    m(
        "retry-one-attempt-too-many",
        R,
        "if not exc.retryable or retry_number + 1 >= policy.max_attempts:",
        "if not exc.retryable or retry_number + 1 > policy.max_attempts:",
        RETRY,
    ),
    m(
        "retry-ignores-retry-after",
        R,
        "retry_after = exc.retry_after if isinstance(exc, RateLimitedError) else None",
        "retry_after = None",
        RETRY,
    ),
    # -- resend decisions -----------------------------------------------------------------------
    m(
        "decision-failed-blocked",
        D,
        "action = ResendAction.RESEND\n",
        "action = ResendAction.BLOCKED\n",
        DECISION,
    ),
    m(
        "decision-denied-resend",
        D,
        "action = ResendAction.BLOCKED\n",
        "action = ResendAction.RESEND\n",
        DECISION,
    ),
    m(
        "decision-delivery-not-skip",
        D,
        "        if result.shows_delivery:\n            action = ResendAction.SKIP",
        "        if False:\n            action = ResendAction.SKIP",
        DECISION,
    ),
    m(
        "decision-sent-not-final-skip",
        D,
        "        elif status is MessageStatus.SENT:\n            action = ResendAction.WAIT",
        "        elif status is MessageStatus.SENT:\n            action = ResendAction.SKIP",
        DECISION,
    ),
    m(
        "decision-conflict-not-in-reason",
        D,
        '                reason = f"{reason} ({result.detail})"',
        "                pass",
        DECISION,
    ),
    m(
        "decision-pending-unknown",
        C,
        "elif status is MessageStatus.PENDING:",
        "elif status is MessageStatus.UNKNOWN:",
        DECISION,
    ),
    m(
        "decision-reason-without-raw",
        D,
        'shown = f"provider status {result.provider_status!r}" if result.provider_status else ""',
        'shown = ""',
        DECISION,
    ),
    m(
        "decision-error-not-unknown",
        C,
        "        return cls(\n            action=ResendAction.UNKNOWN,",
        "        return cls(\n            action=ResendAction.WAIT,",
        DECISION,
    ),
    m(
        "decision-error-keeps-no-reason",
        C,
        'reason=f"no safe answer: the lookup failed with {type(error).__name__}: {error}",',
        'reason="no safe answer",',
        DECISION,
    ),
    m(
        "resend-decision-raises-lookup-errors",
        C,
        "        except MsgStatusError as exc:\n            return ResendDecision.from_error(exc)",
        "        except RateLimitedError as exc:\n            return ResendDecision.from_error(exc)",
        DECISION,
    ),
    # -- merge and cache (msgstatus._client) -----------------------------------------------------
    m(
        "merge-no-guard",
        C,
        " or (older.provider, older.handle) != (newer.provider, newer.handle)",
        "",
        CLIENT,
    ),
    m("merge-returns-older", C, "    return older.merge(newer)", "    return older", CLIENT),
    m("merge-returns-newer", C, "    return older.merge(newer)", "    return newer", CLIENT),
    m(
        "cache-pending-too",
        C,
        "        if result.is_final:\n            self._cache[key] = result",
        "        if True:\n            self._cache[key] = result",
        CLIENT,
    ),
    m(
        "cache-store-not-lru",
        C,
        "            self._cache[key] = result\n            self._cache.move_to_end(key)\n",
        "            self._cache[key] = result\n",
        CLIENT,
    ),
    m(
        "cache-hit-not-lru",
        C,
        "                self._cache.move_to_end((provider.name, key))\n",
        "",
        CLIENT,
    ),
    m(
        "cache-evicts-newest",
        C,
        "self._cache.popitem(last=False)",
        "self._cache.popitem(last=True)",
        CLIENT,
    ),
    m(
        "cache-one-too-few",
        C,
        "while len(self._cache) > self._cache_size:",
        "while len(self._cache) >= self._cache_size:",
        CLIENT,
    ),
    m(
        "cache-refresh-ignored",
        C,
        "if self._cache_final and not refresh:",
        "if self._cache_final:",
        CLIENT,
    ),
    m(
        "cache-refresh-not-merged",
        C,
        "result = fresh if cached is None else cached.merge(fresh)",
        "result = fresh",
        CLIENT,
    ),
    m("cache-negative-size", C, "if cache_size < 0:", "if cache_size < -1:", CLIENT),
    m(
        "cache-zero-size",
        C,
        "self._cache_final = cache_final and cache_size > 0",
        "self._cache_final = cache_final",
        CLIENT,
    ),
    # -- waiting ------------------------------------------------------------------------------
    m(
        "wait-interval-not-capped",
        C,
        "interval = min(poll_interval, max_interval)",
        "interval = poll_interval",
        CLIENT,
    ),
    m("wait-stale-error", C, "                    last_error = None\n", "", CLIENT),
    m("wait-ignores-retry-after", C, "wait = max(wait, exc.retry_after)", "wait = wait", CLIENT),
    m(
        "wait-retries-everything",
        C,
        "                    if not exc.retryable:\n                        raise\n",
        "",
        CLIENT,
    ),
    m(
        "wait-no-backoff",
        C,
        "interval = min(interval * _BACKOFF_FACTOR, max_interval)",
        "interval = min(interval, max_interval)",
        CLIENT,
    ),
    m(
        "wait-backoff-uncapped",
        C,
        "interval = min(interval * _BACKOFF_FACTOR, max_interval)",
        "interval = interval * _BACKOFF_FACTOR",
        CLIENT,
    ),
    m(
        "wait-not-merged",
        C,
        "last_result = _merged(last_result, result)",
        "last_result = result",
        CLIENT,
    ),
    m(
        "wait-infinite-timeout",
        C,
        "if not (math.isfinite(value) and value > 0):",
        "if not value > 0:",
        CLIENT,
    ),
    m("batch-concurrency-zero", C, "if concurrency < 1:", "if concurrency < 0:", CLIENT),
    # -- provider tables ----------------------------------------------------------------------
    m(
        "sendblue-received-sent",
        SB,
        '"RECEIVED": MessageStatus.DELIVERED,',
        '"RECEIVED": MessageStatus.SENT,',
        SENDBLUE,
    ),
    m(
        "sendblue-success-delivered",
        SB,
        '"SUCCESS": MessageStatus.SENT,',
        '"SUCCESS": MessageStatus.DELIVERED,',
        SENDBLUE,
    ),
    m("sendblue-accepted-dropped", SB, '    "ACCEPTED": MessageStatus.PENDING,\n', "", SENDBLUE),
    m(
        "sendblue-declined-failed",
        SB,
        '"DECLINED": MessageStatus.DENIED,',
        '"DECLINED": MessageStatus.FAILED,',
        SENDBLUE,
    ),
    m(
        "sendblue-error-denied",
        SB,
        '"ERROR": MessageStatus.FAILED,',
        '"ERROR": MessageStatus.DENIED,',
        SENDBLUE,
    ),
    m(
        "sendblue-read-delivered",
        SB,
        '"READ": MessageStatus.READ,',
        '"READ": MessageStatus.DELIVERED,',
        SENDBLUE,
    ),
    m(
        "sendblue-final-without-denied",
        SB,
        "{MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED, MessageStatus.DENIED}",
        "{MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED}",
        SENDBLUE,
    ),
    m(
        "sendblue-final-with-sent",
        SB,
        "{MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED, MessageStatus.DENIED}",
        "{MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED, "
        "MessageStatus.DENIED}",
        SENDBLUE,
    ),
    m(
        "sendblue-refusal-ignored",
        SB,
        "    if refusal is not None:\n        status = refusal.status",
        "    if refusal is not None:\n        pass",
        SENDBLUE,
    ),
    m(
        "sendblue-unknown-error-key-ignored",
        SB,
        "        unknown_keys.lookup(message.error_key)\n        status = MessageStatus.UNKNOWN",
        "        unknown_keys.lookup(message.error_key)",
        SENDBLUE,
    ),
    m(
        "chime-sent-pending",
        CH,
        '"SENT": MessageStatus.SENT,',
        '"SENT": MessageStatus.PENDING,',
        CHIME,
    ),
    m(
        "chime-denied-failed",
        CH,
        '"DENIED": MessageStatus.DENIED,',
        '"DENIED": MessageStatus.FAILED,',
        CHIME,
    ),
    m("chime-failed-dropped", CH, '    "FAILED": MessageStatus.FAILED,\n', "", CHIME),
    m(
        "chime-final-without-sent",
        CH,
        "{MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.DENIED}",
        "{MessageStatus.FAILED, MessageStatus.DENIED}",
        CHIME,
    ),
    m(
        "chime-final-with-pending",
        CH,
        "{MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.DENIED}",
        "{MessageStatus.PENDING, MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.DENIED}",
        CHIME,
    ),
]


def allowed() -> dict[str, str]:
    """``name: reason`` lines of the allow-list (``#`` starts a comment)."""
    reasons: dict[str, str] = {}
    if ALLOWED.exists():
        for line in ALLOWED.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, reason = line.partition(":")
                reasons[name.strip()] = reason.strip()
    return reasons


def locate(mutant: Mutant, src: Path) -> Path | None:
    """The module of ``src`` whose text holds ``mutant.old`` exactly once: its own module first,
    else any module of the package (the code may have moved)."""
    own = src / mutant.module
    if own.exists() and own.read_text(encoding="utf-8").count(mutant.old) == 1:
        return own
    found = [
        path
        for path in sorted(src.rglob("*.py"))
        if path.read_text(encoding="utf-8").count(mutant.old) == 1
    ]
    return found[0] if len(found) == 1 else None


def run_tests(src_root: Path, tests: tuple[str, ...]) -> tuple[int, float]:
    env = dict(os.environ, PYTHONPATH=str(src_root), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return -1, time.monotonic() - started
    return done.returncode, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    args = parser.parse_args()
    names = {mutant.name for mutant in MUTANTS}
    assert len(names) == len(MUTANTS), "two mutants share a name"
    if args.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:40} {mutant.module}")
        return 0
    unknown = set(args.names) - names
    if unknown:
        parser.error(f"no such mutant: {', '.join(sorted(unknown))}")
    chosen = [mutant for mutant in MUTANTS if not args.names or mutant.name in args.names]
    reasons = allowed()
    stale_allowed = set(reasons) - names
    with tempfile.TemporaryDirectory(prefix="msgstatus-mutate-") as tmp:
        work = Path(tmp) / "src"
        ignore = shutil.ignore_patterns("__pycache__")
        if not args.no_baseline:
            shutil.copytree(PACKAGE, work / "msgstatus", ignore=ignore)
            for tests in sorted({mutant.tests for mutant in chosen}):
                code, _ = run_tests(work, tests)
                if code != 0:
                    print(f"baseline failed (exit {code}): pytest {' '.join(tests)}")
                    return 2
            shutil.rmtree(work)
        killed: list[str] = []
        survived: list[str] = []
        excused: list[str] = []
        stale: list[str] = []
        for number, mutant in enumerate(chosen, 1):
            shutil.copytree(PACKAGE, work / "msgstatus", ignore=ignore)
            try:
                target = locate(mutant, work / "msgstatus")
                if target is None:
                    stale.append(mutant.name)
                    print(f"[{number}/{len(chosen)}] {mutant.name}: STALE (text not found once)")
                    continue
                text = target.read_text(encoding="utf-8")
                target.write_text(text.replace(mutant.old, mutant.new, 1), encoding="utf-8")
                code, seconds = run_tests(work, mutant.tests)
            finally:
                shutil.rmtree(work)
            where = target.relative_to(work / "msgstatus")
            if code != 0:
                killed.append(mutant.name)
                verdict = "killed" if code > 0 else "killed (timeout)"
            elif mutant.name in reasons:
                excused.append(mutant.name)
                verdict = f"survived, allowed: {reasons[mutant.name]}"
            else:
                survived.append(mutant.name)
                verdict = "SURVIVED"
            print(f"[{number}/{len(chosen)}] {mutant.name} ({where}, {seconds:.0f} s): {verdict}")
    total = len(chosen) - len(stale)
    scored = total - len(excused)
    score = 100.0 * len(killed) / scored if scored else 100.0
    print()
    print(
        f"mutation score: {len(killed)}/{scored} killed ({score:.1f}%); {len(excused)} allowed "
        f"as equivalent; {len(chosen)} mutants in all"
    )
    for label, group in (("survived", survived), ("stale", stale)):
        if group:
            print(f"{label}: {', '.join(group)}")
    if stale_allowed:
        print(f"allow-list names no mutant: {', '.join(sorted(stale_allowed))}")
    return 1 if survived or stale or stale_allowed else 0


if __name__ == "__main__":
    sys.exit(main())
