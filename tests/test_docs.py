"""providers.md is the user-facing truth: check it against the code's mapping tables."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from msgstatus import MessageStatus, ResendAction, ResendDecision, StatusResult
from msgstatus._decision import Refusal, RefusalKind
from msgstatus._providers.chime import CHIME_ERROR_CODES, CHIME_STATUS_MAP
from msgstatus._providers.sendblue import (
    SENDBLUE_ERROR_CODES,
    SENDBLUE_ERROR_KEYS,
    SENDBLUE_HTTP_ERRORS,
    SENDBLUE_STATUS_MAP,
)

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS_MD = (ROOT / "providers.md").read_text(encoding="utf-8")


def section(markdown: str, heading: str) -> str:
    """The text under a ``## heading`` up to the next heading of the same level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"providers.md has no section '## {heading}'"
    return match.group(1)


def mapping_table(text: str) -> dict[str, str]:
    """Rows of the first ``| raw value | normalized |`` table in ``text``."""
    rows: dict[str, str] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("| raw value | normalized |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-", " "}:
                continue
            assert cells[0] not in rows, f"{cells[0]} is listed twice"
            rows[cells[0]] = cells[1]
    assert rows, "no mapping table found"
    return rows


@pytest.mark.parametrize(
    ("heading", "table"),
    [("Sendblue", SENDBLUE_STATUS_MAP), ("Amazon Chime SDK Messaging", CHIME_STATUS_MAP)],
)
def test_mapping_table_in_doc_matches_code(heading: str, table: dict[str, MessageStatus]) -> None:
    documented = mapping_table(section(PROVIDERS_MD, heading))
    assert documented == {raw: status.value for raw, status in table.items()}


def test_every_normalized_status_is_documented() -> None:
    vocabulary = section(PROVIDERS_MD, "Normalized status (`MessageStatus`)")
    for status in MessageStatus:
        assert f"| `{status.value}` |" in vocabulary


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme_lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    fence = readme_lines.index("```sh")
    test_line = readme_lines[fence + 2]
    command = test_line.split("#", 1)[0].strip()
    assert "pytest" in command
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [line for line in ci_lines if line and not line.startswith(("#", "set ", "cd "))]
    assert commands == [command]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows (cells without backticks) of the table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("`", "") for c in line.strip("|").split("|")])
    assert rows, f"no rows under {header!r}"
    return rows


def _observation(status: MessageStatus, final: bool) -> StatusResult:
    return StatusResult(provider="p", handle="p:1", status=status, is_final=final)


def test_the_evidence_rule_table_matches_the_merge() -> None:
    rows = table_rows(
        section(PROVIDERS_MD, "Normalized status (`MessageStatus`)"), "| rank | observation |"
    )
    observations = []
    for rank, observation, action in rows:
        name, _, qualifier = observation.partition(",")
        final = "not final" not in qualifier and name not in ("PENDING", "UNKNOWN")
        result = _observation(MessageStatus(name.strip()), final)
        assert ResendDecision.from_result(result).action.value == action, observation
        observations.append((int(rank), result))
    assert [rank for rank, _ in observations] == sorted(
        (rank for rank, _ in observations), reverse=True
    )
    assert len(observations) == 8
    # Each row beats every row below it, in either order of arrival.
    for i, (_, higher) in enumerate(observations):
        for _, lower in observations[i + 1 :]:
            assert higher.merge(lower).status is higher.status
            assert lower.merge(higher).status is higher.status


def test_the_resend_table_matches_the_decision() -> None:
    rows = table_rows(section(PROVIDERS_MD, "May I resend? (`ResendAction`)"), "| action |")
    assert [row[0] for row in rows] == [action.value for action in ResendAction]
    for action, when, _ in rows:
        named = [
            MessageStatus(w)
            for w in re.findall(r"\b[A-Z]+\b", when)
            if w in MessageStatus.__members__
        ]
        assert named, action
        for status in named:
            final = status not in (MessageStatus.PENDING, MessageStatus.UNKNOWN)
            if status is MessageStatus.SENT:
                final = action == "SKIP"
            decision = ResendDecision.from_result(_observation(status, final))
            assert decision.action.value == action, (action, status)


_KINDS = {
    "quota window: not sent": RefusalKind.QUOTA_WINDOW,
    "permanent refusal": RefusalKind.PERMANENT,
}
_WINDOWS = {"1 hour": timedelta(hours=1), "1 day": timedelta(days=1), "unknown": None, "—": None}


@pytest.mark.parametrize(
    ("header", "table"),
    [("| error_key |", SENDBLUE_ERROR_KEYS), ("| error_code |", SENDBLUE_ERROR_CODES)],
)
def test_the_refusal_tables_match_the_code(header: str, table: dict[str, Refusal]) -> None:
    rows = table_rows(section(PROVIDERS_MD, "Sendblue"), header)
    documented = {row[0]: row[1:] for row in rows}
    assert set(documented) == set(table)
    for key, (kind, normalized, action, window) in documented.items():
        refusal = table[key]
        assert _KINDS[kind] is refusal.kind, key
        assert refusal.status.value == normalized, key
        assert _WINDOWS[window] == refusal.window, key
        decision = ResendDecision.from_result(_observation(refusal.status, True))
        assert decision.action.value == action, key


def _error_rows(heading: str, header: str) -> list[tuple[str, str]]:
    rows = table_rows(section(PROVIDERS_MD, heading).split("### Errors", 1)[1], header)
    return [(row[0], row[1]) for row in rows]


def test_the_chime_error_table_matches_the_code() -> None:
    rows = _error_rows("Amazon Chime SDK Messaging", "| Chime answers")
    for code, rule in CHIME_ERROR_CODES.items():
        matching = [error for answers, error in rows if re.search(rf"\b{code}\b", answers)]
        assert matching, f"{code} is not in providers.md"
        assert matching[0].split(";")[0].strip() == rule.error.__name__, code


def test_the_sendblue_error_table_matches_the_code() -> None:
    rows = _error_rows("Sendblue", "| Sendblue answers")
    for status, rule in SENDBLUE_HTTP_ERRORS.items():
        matching = [error for answers, error in rows if re.search(rf"\b{status}\b", answers)]
        assert matching, f"HTTP {status} is not in providers.md"
        assert matching[0].split(",")[0].split(" ")[0] == rule.error.__name__, status


# -- every Python block in README.md and providers.md runs as written -------------------------

_FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _python_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for name in ("README.md", "providers.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((name, line, match.group(1)))
    return blocks


BLOCKS = _python_blocks()


def test_the_docs_have_the_python_blocks_this_suite_runs() -> None:
    # A fence the regex misses would silently escape the test below.
    for name in ("README.md", "providers.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert text.count("```python") == sum(1 for block in BLOCKS if block[0] == name)
    assert len(BLOCKS) >= 7


@pytest.fixture(scope="module")
def docs_env() -> Iterator[dict[str, str]]:
    """The environment a reader's shell would have after `msgstatus emulate`'s exports: the
    blocks that read configuration (``from_env()``) run against the emulators."""
    from msgstatus._emulate import exports
    from msgstatus.testing import ChimeEmulator, SendblueEmulator

    keep = ("PATH", "HOME", "SYSTEMROOT", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONIOENCODING="utf-8",
    )
    with SendblueEmulator() as sendblue, ChimeEmulator() as chime:
        for line in exports(sendblue, chime, chime.user_arn("docs")):
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                env[name] = shlex.split(value)[0]
        yield env


@pytest.mark.parametrize(
    ("name", "line", "code"), BLOCKS, ids=[f"{name}:{line}" for name, line, _ in BLOCKS]
)
def test_python_block_runs(
    name: str, line: int, code: str, tmp_path: Path, docs_env: dict[str, str]
) -> None:
    if "def test_" in code:
        # A pytest file for the reader's own project: run it with pytest, as they would; the
        # msgstatus plugin's fixtures come from its entry point.
        (tmp_path / "test_from_docs.py").write_text(code, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_from_docs.py"],
            cwd=tmp_path,
            env=docs_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{name}:{line}\n{done.stdout}\n{done.stderr}"
        summary = done.stdout.strip().splitlines()[-1]
        tests = code.count("\nasync def test_") + code.count("\ndef test_")
        assert f"{2 * tests} passed" in summary, summary  # each on asyncio and trio
        assert "skipped" not in summary
    else:
        (tmp_path / "example.py").write_text(code, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-W", "error::RuntimeWarning", "example.py"],
            cwd=tmp_path,
            env=docs_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{name}:{line}\n{done.stdout}\n{done.stderr}"


def _documented_call(text: str, name: str) -> str:
    match = re.search(rf"`{re.escape(name)}\((.*?)\)`", text, re.S)
    assert match, f"providers.md does not document {name}(...)"
    return " ".join(match.group(1).split())


@pytest.mark.parametrize("name", ["RetryPolicy", "SendblueEmulator", "ChimeEmulator"])
def test_documented_constructors_match_the_code(name: str) -> None:
    import inspect

    import msgstatus
    import msgstatus.testing

    cls = getattr(msgstatus, name, None) or getattr(msgstatus.testing, name)
    documented = _documented_call(PROVIDERS_MD, name)
    parameters = [p for p in inspect.signature(cls).parameters.values() if p.name != "rng"]
    for parameter in parameters:
        if parameter.default is inspect.Parameter.empty:
            assert parameter.name in documented, (name, parameter.name)
        else:
            shown = repr(parameter.default).replace("'", '"')
            assert f"{parameter.name}={shown}" in documented, (name, parameter.name)


def test_readme_opens_with_exactly_the_two_setup_commands() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    fence = lines.index("```sh")
    block = lines[fence + 1 : lines.index("```", fence + 1)]
    assert len(block) == 2
    assert "msgstatus demo" in block[0]
    assert "pytest" in block[1]
