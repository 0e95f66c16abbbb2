"""providers.md is the user-facing truth: check it against the code's mapping tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from msgstatus import MessageStatus
from msgstatus._providers.chime import CHIME_STATUS_MAP
from msgstatus._providers.sendblue import SENDBLUE_STATUS_MAP

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
