"""Package-name and tag helpers shared by sync, queue, store and index."""

from __future__ import annotations

import re

_NORMALIZE = re.compile(r"[-_.]+")
_VALID = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_ABI = re.compile(r"^(?P<impl>[a-z]+)(?P<major>\d)(?P<minor>\d+)(?P<flags>[a-z]*)$")


def normalize(name: str) -> str:
    """PEP 503 normalized form: the key every table and URL uses."""
    return _NORMALIZE.sub("-", name).lower()


def is_valid_name(name: str) -> bool:
    """True for names PEP 508 allows (what the upstream can list)."""
    return bool(_VALID.match(name))


def abi_version(tag: str) -> tuple[int, int] | None:
    """(major, minor) of a tag like ``cp311`` or ``cp37m``, compared as numbers."""
    m = _ABI.match(tag)
    if not m:
        return None
    return int(m["major"]), int(m["minor"])
