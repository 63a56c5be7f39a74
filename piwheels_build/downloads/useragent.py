"""Who downloaded: a User-Agent as the five dimensions the farm counts.

pip sends ``pip/VERSION {json}`` (pip/_internal/network/session.py, ``user_agent()``):
``installer`` {name, version}, ``python`` (the full version), ``implementation`` {name,
version}, ``distro`` {name, version, id, libc}, ``system`` {name, release}, ``cpu``
and more; uv sends ``uv/VERSION {json}`` with the same keys. They are read by
**linehaul**, PyPI's own parser of its download logs' User-Agents (the same JSON for
pip >= 6 and uv >= 0.1.22, plus the formats of older pip, setuptools, pdm, conda,
bandersnatch, Artifactory, ...; browsers, curl and wget as "Browser"): a client it
does not know is installer "other", the other dimensions "unknown".
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from linehaul.ua import parser as linehaul

DIMENSIONS = ("installer", "python", "implementation", "platform", "distro")
UNKNOWN = "unknown"
_MAX = 64  # characters of a value kept: a User-Agent is the client's to make up
_PYTHON = re.compile(r"^(\d{1,2})\.(\d{1,3})(?:\D|$)")


def _text(value: Any) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = " ".join(str(value).split())[:_MAX]
        if text and text.isprintable():
            return text
    return ""


def _join(*parts: Any) -> str:
    return " ".join(p for p in map(_text, parts) if p)


@lru_cache(maxsize=16384)  # User-Agents repeat (distinct ones: one per client machine)
def dimensions(user_agent: str) -> tuple[str, str, str, str, str]:
    """(installer, python, implementation, platform, distro) of a User-Agent, e.g.
    ("pip 24.0", "3.11", "CPython", "Linux armv7l", "Raspbian GNU/Linux 12"); each
    "unknown" when it does not say; installer "other" for a client linehaul does not
    know."""
    try:
        ua = linehaul.parse(user_agent)
    except Exception:  # noqa: BLE001 -- UnknownUserAgentError, and cattrs' errors on
        ua = None      # JSON a client made up (a list for a version, ...)
    if ua is None or ua.installer is None or not _text(ua.installer.name):
        installer = "other"
    else:
        installer = _join(ua.installer.name, ua.installer.version)
    if ua is None:
        return installer, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN
    m = _PYTHON.match(ua.python) if isinstance(ua.python, str) else None
    python = f"{int(m[1])}.{int(m[2])}" if m else UNKNOWN
    implementation = _text(ua.implementation.name) if ua.implementation else ""
    platform = _join(ua.system.name if ua.system else None, ua.cpu)
    distro = _join(ua.distro.name, ua.distro.version) if ua.distro else ""
    return (installer, python, implementation or UNKNOWN, platform or UNKNOWN,
            distro or UNKNOWN)
