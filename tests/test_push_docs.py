"""providers.md's push tables against the code."""

from __future__ import annotations

import re
from pathlib import Path

from msgstatus._providers.chime import CHIME_EVENT_TYPES

PROVIDERS_MD = (Path(__file__).resolve().parents[1] / "providers.md").read_text(encoding="utf-8")


def push_section() -> str:
    match = re.search(
        r"^## Push \(webhooks and events\)\n(.*?)(?=^## |\Z)", PROVIDERS_MD, re.M | re.S
    )
    assert match, "providers.md has no Push section"
    return match.group(1)


def test_the_chime_event_table_matches_the_code() -> None:
    rows: dict[str, str] = {}
    lines = push_section().splitlines()
    start = lines.index("| event type | normalized |")
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        raw, normalized = (cell.strip().strip("`") for cell in line.strip("|").split("|"))
        assert raw not in rows
        rows[raw] = normalized
    assert rows == {
        kind: "none" if status is None else status.value
        for kind, status in CHIME_EVENT_TYPES.items()
    }


def test_every_receiver_answer_is_documented() -> None:
    text = push_section()
    for answer in ("| 405 |", "| 401, empty body |", "| 400 ", "| 200 ", "| 500 "):
        assert answer in text
