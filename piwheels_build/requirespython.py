"""Requires-Python (PEP 345/440 specifiers) as the queue reads it: a mask of excluded
Python 3 minor versions.

Sync computes, per version, which Python 3.N (N = 0..62) its sdist's Requires-Python
rules out, as a bit mask (bit N set: no 3.N.x release satisfies it); the queue's SQL
reads the mask (``python_excludes``, migration 0008) and never parses a specifier.
A minor is excluded only when no patch release of it satisfies the specifier, so the
farm never skips a build pip would have run; Pythons other than 3.x are never excluded.
An invalid specifier excludes nothing, as pip ignores it.
"""

from __future__ import annotations

import functools

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

#: Bits of a mask: bit N is Python 3.N (a bigint in SQL has 63 usable bits).
MINORS = 63


def parse(spec: str | None) -> SpecifierSet | None:
    """The specifier set, or None for no constraint (None, empty, blank).

    Raises ``packaging.specifiers.InvalidSpecifier`` when it is not valid PEP 440.
    """
    if spec is None or not spec.strip():
        return None
    return SpecifierSet(spec)


def is_valid(spec: str | None) -> bool:
    """Whether ``spec`` is empty or a valid specifier set (an invalid one is ignored)."""
    try:
        parse(spec)
    except InvalidSpecifier:
        return False
    return True


def _candidates(specs: SpecifierSet, minor: int) -> set[int]:
    """Patch levels of 3.``minor`` where the specifier's answer can change: 0, and either
    side of every version the specifier names within that minor."""
    out = {0}
    for s in specs:
        try:
            release = Version(s.version.rstrip(".*")).release
        except InvalidVersion:   # '===' takes any string: try its patch if it has one
            continue
        if release[:2] == (3, minor):
            p = release[2] if len(release) > 2 else 0
            out |= {max(p - 1, 0), p, p + 1}
    return out


@functools.lru_cache(maxsize=65536)
def excluded_mask(spec: str | None) -> int:
    """Bit N set when no Python 3.N.x satisfies ``spec``; 0 for none, empty or invalid.

    A 64-bit-safe int (bits 0..62) for ``versions.python_excluded``. Cached: the
    upstream has far fewer distinct specifiers than versions.
    """
    try:
        specs = parse(spec)
    except InvalidSpecifier:
        return 0
    if specs is None:
        return 0
    mask = 0
    for minor in range(MINORS):
        if not any(specs.contains(f"3.{minor}.{p}", prereleases=True)
                   for p in sorted(_candidates(specs, minor))):
            mask |= 1 << minor
    return mask


def excludes(mask: int | None, major: int, minor: int) -> bool:
    """Whether the mask rules out Python ``major.minor`` (the SQL ``python_excludes``)."""
    return bool(mask) and major == 3 and 0 <= minor < MINORS and bool(mask >> minor & 1)


def admits(spec: str | None, version: tuple[int, ...]) -> bool:
    """Whether an interpreter of this exact version (``(3, 8, 10)``) satisfies ``spec``,
    as pip checks it; True for no constraint or an invalid one."""
    try:
        specs = parse(spec)
    except InvalidSpecifier:
        return True
    return specs is None or specs.contains(".".join(map(str, version)), prereleases=True)
