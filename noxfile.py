"""Sessions: tests (asyncio and trio), lint, typecheck, bench."""

from __future__ import annotations

import nox

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
def bench(session: nox.Session) -> None:
    """Benchmarks against the official SDKs and bare clients (see BENCHMARKS.md); ``-- --quick``
    for a short smoke run."""
    session.install("-e", ".[bench]")
    session.run("python", "bench/run.py", *session.posargs)


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
