"""Who downloaded: pip's and uv's User-Agent, as the five dimensions the farm counts.

pip sends ``pip/VERSION {json}`` (pip/_internal/network/session.py, ``user_agent()``):
the JSON has ``installer`` {name, version}, ``python`` (the full version),
``implementation`` {name, version}, ``distro`` {name, version, id, libc}, ``system``
{name, release}, ``cpu`` and more; uv sends ``uv/VERSION {json}`` with the same keys
(uv's linehaul data, made to match pip's). Anything else is installer "other", with
the other dimensions "unknown". No library reads these better: they are one JSON
object after a space.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

DIMENSIONS = ("installer", "python", "implementation", "platform", "distro")
UNKNOWN = "unknown"
INSTALLERS = ("pip", "uv")
_MAX = 64  # characters of a value kept: a User-Agent is the client's to make up


def _text(value: Any) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = " ".join(str(value).split())[:_MAX]
        if text and text.isprintable():
            return text
    return ""


def _get(data: Any, *keys: str) -> str:
    for key in keys:
        if not isinstance(data, dict):
            return ""
        data = data.get(key)
    return _text(data)


@lru_cache(maxsize=4096)  # a farm's clients send few distinct User-Agents
def dimensions(user_agent: str) -> tuple[str, str, str, str, str]:
    """(installer, python, implementation, platform, distro) of a User-Agent, e.g.
    ("pip 24.0", "3.11", "CPython", "Linux armv7l", "Raspbian GNU/Linux 12"); each
    "unknown" when it does not say, installer "other" for a client that is neither
    pip nor uv."""
    name, _, rest = user_agent.partition(" ")
    tool, _, version = name.partition("/")
    if tool not in INSTALLERS or not rest.lstrip().startswith("{"):
        return ("other" if tool not in INSTALLERS else f"{tool} {_text(version) or UNKNOWN}",
                UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)
    try:
        data = json.loads(rest)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." a client made up
        data = {}
    if not isinstance(data, dict):
        data = {}
    installer = f"{tool} {_get(data, 'installer', 'version') or _text(version) or UNKNOWN}"
    python = ".".join(_get(data, "python").split(".")[:2]) or UNKNOWN
    implementation = _get(data, "implementation", "name") or UNKNOWN
    platform = " ".join(p for p in (_get(data, "system", "name"), _get(data, "cpu")) if p)
    distro = " ".join(p for p in (_get(data, "distro", "name"), _get(data, "distro", "version"))
                      if p)
    return installer, python, implementation, platform or UNKNOWN, distro or UNKNOWN
