"""The public face: every name in ``__all__`` resolves, says it is msgstatus's, and nothing
private leaks into it."""

from __future__ import annotations

import importlib.metadata

import msgstatus
import msgstatus.errors
import msgstatus.testing


def test_every_exported_name_resolves_and_is_msgstatus_s() -> None:
    for name in msgstatus.__all__:
        value = getattr(msgstatus, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__ == "msgstatus", name


def test_the_exports_are_sorted_unique_and_public() -> None:
    names = msgstatus.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    assert not any(name.startswith("_") for name in names)


def test_the_batch_types_are_exported() -> None:
    for name in ("Handle", "Outcome", "StatusStream", "HandleError"):
        assert name in msgstatus.__all__


def test_every_error_is_exported_from_both_places() -> None:
    for name in msgstatus.errors.__all__:
        error = getattr(msgstatus.errors, name)
        assert issubclass(error, msgstatus.MsgStatusError)
        assert getattr(msgstatus, name) is error


def test_testing_exports_resolve() -> None:
    for name in msgstatus.testing.__all__:
        assert getattr(msgstatus.testing, name) is not None


def test_version_comes_from_the_package_metadata() -> None:
    assert msgstatus.__version__ == importlib.metadata.version("msgstatus")
