"""Every browser test needs the playwright-core harness, Debian's Chromium and ffmpeg: fail early, clearly."""

from __future__ import annotations

import shutil

import pytest

from tests.harness.players import HarnessError, check_harness


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    try:
        check_harness()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is missing: run scripts/test.sh", pytrace=False)
