"""pytest plugin (entry point ``msgstatus``): fixtures that start the loopback emulators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from msgstatus.testing._chime import ChimeEmulator
    from msgstatus.testing._sendblue import SendblueEmulator

# Emulators are imported inside the fixtures: pytest loads this plugin in every test run of every
# project that installs msgstatus, before coverage starts, and most runs use no emulator.


@pytest.fixture
def sendblue_emulator() -> Iterator[SendblueEmulator]:
    """A started :class:`~msgstatus.testing.SendblueEmulator` (credentials ``test-key`` /
    ``test-secret``), stopped after the test; ``sendblue_emulator.provider()`` talks to it."""
    from msgstatus.testing._sendblue import SendblueEmulator

    with SendblueEmulator() as emulator:
        yield emulator


@pytest.fixture
def chime_emulator() -> Iterator[ChimeEmulator]:
    """A started :class:`~msgstatus.testing.ChimeEmulator` (credentials ``AKIDEMULATOR`` /
    ``emulator-secret``, region ``us-east-1``), stopped after the test;
    ``chime_emulator.provider(bearer=...)`` and ``chime_emulator.client()`` talk to it."""
    from msgstatus.testing._chime import ChimeEmulator

    with ChimeEmulator() as emulator:
        yield emulator
