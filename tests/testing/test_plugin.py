"""The pytest plugin and the contract suite as a user's project meets them: run in a fresh
pytester directory, with only what msgstatus installs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _readme_block(heading: str) -> str:
    section = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert section, heading
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, f"no python block under {heading}"
    return block.group(1)


def test_the_emulator_fixtures_work_in_a_fresh_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        from msgstatus import MessageStatus, StatusClient

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        @pytest.mark.anyio
        async def test_lookup(sendblue_emulator, chime_emulator):
            handle = sendblue_emulator.add_message(status="DELIVERED")
            async with StatusClient([sendblue_emulator.provider()]) as client:
                result = await client.get_status(handle)
            assert result.status is MessageStatus.DELIVERED
            assert chime_emulator.base_url.startswith("http://127.0.0.1:")
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_readme_provider_passes_the_contract_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_my_provider=_readme_block("Writing a provider"))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    # Seven contract tests on two event loops.
    result.assert_outcomes(passed=14)


def test_the_contract_suite_fails_a_provider_that_breaks_it(pytester: pytest.Pytester) -> None:
    broken = _readme_block("Writing a provider").replace(
        'if self._closed:\n            raise RuntimeError("the MemoProvider is closed")', "pass"
    )
    assert broken != _readme_block("Writing a provider")
    pytester.makepyfile(test_my_provider=broken)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12, failed=2)
    result.stdout.fnmatch_lines(["*test_contract_lookup_after_close_raises*"])
