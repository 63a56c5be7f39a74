"""Find the upstream index the way pip itself would, so mirrors are respected.

No index host name is written in this project: when nothing is configured we
ask pip for its built-in default.
"""

from __future__ import annotations

import os
import subprocess
import sys

# Later entries win, as in pip: global, then user, then site, then environment.
_KEYS = ("global.index-url", "download.index-url", "wheel.index-url", "install.index-url")


def _from_pip_config() -> str | None:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = None
    for line in out.splitlines():
        key, _, value = line.partition("=")
        key = key.strip()
        if key in _KEYS or key == ":env:.index-url":
            found = value.strip().strip("'\"")
    return found


def _pip_default() -> str:
    from pip._internal.models.index import PyPI  # the only place the default lives

    return PyPI.simple_url


def default_upstream() -> str:
    """The simple index URL pip is configured with (env, config files, built-in default)."""
    url = os.environ.get("PIP_INDEX_URL") or _from_pip_config() or _pip_default()
    return url.rstrip("/") + "/"
