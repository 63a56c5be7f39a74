"""Small tools of the fault tests (tests/faults/): polling with a deadline, a slow package."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from helpers.fixture_packages import pure

DEADLINE = 240.0  # only so that a broken farm fails instead of hanging


def wait_for(what: str, check: Callable[[], object], deadline: float = DEADLINE) -> object:
    """Poll ``check`` until it returns something true; fail after a generous deadline."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def slow_pure(name: str, seconds: float) -> dict[str, str]:
    """A pure package whose build takes about ``seconds`` (setup.py sleeps; setuptools
    runs it to ask for requirements and again to build: half the time each)."""
    return {**pure(name, name),
            "setup.py": f"import time\ntime.sleep({seconds / 2})\n"
                        "from setuptools import setup\nsetup()\n"}
