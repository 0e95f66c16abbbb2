"""Sessions: tests (asyncio and trio), lint, typecheck, coverage, mutate, bench."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite; every async test runs on asyncio and on trio."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src")


@nox.session
def coverage(session: nox.Session) -> None:
    """True coverage of the whole suite: coverage starts before pytest loads the msgstatus plugin,
    the CLI subprocesses are measured, branches count. Fails under the floor in pyproject.toml
    ([tool.coverage.report] fail_under) for the library, lines and branches together and branches
    alone; ``msgstatus.testing`` is reported beside it without a floor. Installs ``.[dev]``:
    tests/test_typing.py needs mypy (and the boto3 stubs) and is skipped without it."""
    session.install("-e", ".[dev]")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
    session.run("coverage", "combine", "-q")
    # msgstatus.testing first, without a floor (an --omit that matches nothing replaces the one
    # in pyproject.toml).
    session.run(
        "coverage", "report", "--include=*/msgstatus/testing/*", "--omit=__none__", "--fail-under=0"
    )
    session.run("coverage", "json", "-q", "-o", "coverage.json", "--fail-under=0")
    session.run("coverage", "report")
    config = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))
    floor = float(config["tool"]["coverage"]["report"]["fail_under"])
    totals = json.loads(Path("coverage.json").read_text(encoding="utf-8"))["totals"]
    lines = 100.0 * totals["covered_lines"] / max(totals["num_statements"], 1)
    branches = 100.0 * totals["covered_branches"] / max(totals["num_branches"], 1)
    session.log(
        f"library coverage: lines {lines:.1f}% ({totals['covered_lines']}/"
        f"{totals['num_statements']}), branches {branches:.1f}% ({totals['covered_branches']}/"
        f"{totals['num_branches']}); floor {floor:g}%"
    )
    if branches < floor:
        session.error(f"branch coverage {branches:.1f}% is under the floor of {floor:g}%")


@nox.session
def mutate(session: nox.Session) -> None:
    """Mutation testing of the decision, status, retry, merge/cache and provider-table code
    (tools/mutate.py; ``-- --list`` shows the mutants, ``-- NAME...`` runs some)."""
    session.install("-e", ".[test]")
    session.run("python", "tools/mutate.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the official SDKs and bare clients (see BENCHMARKS.md); ``-- --quick``
    for a short smoke run."""
    session.install("-e", ".[bench]")
    session.run("python", "bench/run.py", *session.posargs)
    # The send ledger: claims/s and observes/s with 8 processes per backend, send_once overhead.
    session.install("-e", ".[test]")
    session.run("python", "bench/ledger.py", *[a for a in session.posargs if a == "--quick"])


@nox.session
def fleet(session: nox.Session) -> None:
    """The ledger's fleet test at full scale: 8 worker processes x 1,000 keys, on SQLite and
    PostgreSQL (pgserver), against the Sendblue and the Chime emulator (``-- --keys 200`` etc.)."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "tests/ledger/_fleet_harness.py",
        "--processes",
        "8",
        "--keys",
        "1000",
        *session.posargs,
        env={"PYTHONPATH": "src"},
    )
