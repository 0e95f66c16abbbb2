"""Test helpers: loopback emulators of the providers' APIs, for this project's tests and yours."""

from msgstatus.testing._chime import ChimeEmulator, ChimeEventFeed, ChimeState
from msgstatus.testing._sendblue import SendblueEmulator, SendblueState
from msgstatus.testing._server import Fault, ManualClock

__all__ = [
    "ChimeEmulator",
    "ChimeEventFeed",
    "ChimeState",
    "Fault",
    "ManualClock",
    "SendblueEmulator",
    "SendblueState",
]
