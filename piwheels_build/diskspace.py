"""Free space of the store: the master's warning before it runs out, the builders' floor.

A full store fails every upload (each build an ``infrastructure`` failure, retried
with backoff until given up), and on a master whose store shares a disk with
PostgreSQL it stops the database too. So the index writer and ``piwheels status``
warn below ``store_free_warning``, and a builder does not start an upload that
would leave less than ``store_free_floor`` free (over sshfs, ``statvfs`` reports
the master's disk).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError


@dataclass(frozen=True)
class Space:
    """The file system holding ``path``: bytes ``free`` (for a non-root writer) of ``total``."""

    path: Path
    free: int
    total: int


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a package's first wheel has no directory)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def space(path: Path) -> Space:
    """Free and total bytes where ``path`` lives; raises OSError if it cannot be asked."""
    where = _existing(path)
    st = os.statvfs(where)
    return Space(where, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


def human(size: int) -> str:
    """``"3.2 GiB"``: binary units, as the configuration's sizes ("10G" is 10 GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def low_space_warning(www: Path, threshold: int) -> str | None:
    """One line when the store (``www/simple``) has less than ``threshold`` bytes free.

    None when there is enough, or when ``threshold`` is 0 (warning off). A store
    that cannot be asked (``statvfs`` fails) is a line too: it is worth a look.
    """
    if threshold <= 0:
        return None
    try:
        s = space(Path(www) / "simple")
    except OSError as e:
        return f"store: cannot read the free space of {www}: {e.strerror or e}"
    return _below(s, threshold)


def _below(s: Space, threshold: int) -> str | None:
    if threshold <= 0 or s.free >= threshold:
        return None
    return (f"store: only {human(s.free)} free of {human(s.total)} on {s.path}, below "
            f"store_free_warning ({human(threshold)}); free space or grow the disk before "
            "uploads fail")


def status(www: Path, threshold: int) -> dict:
    """The store's space for ``piwheels status --json``: ``path``, ``free_bytes``,
    ``total_bytes``, ``warning_bytes`` and ``warning`` (the line, or None)."""
    try:
        s = space(Path(www) / "simple")
    except OSError as e:
        return {"path": str(www), "free_bytes": None, "total_bytes": None,
                "warning_bytes": threshold,
                "warning": f"store: cannot read the free space of {www}: {e.strerror or e}"}
    return {"path": str(s.path), "free_bytes": s.free, "total_bytes": s.total,
            "warning_bytes": threshold, "warning": _below(s, threshold)}


def check_room(directory: Path, needed: int, floor: int) -> None:
    """Refuse an upload of ``needed`` bytes into ``directory`` that would leave less
    than ``floor`` bytes free; raises StoreError (one line). ``floor`` 0: no check.
    A file system that cannot be asked is let through: the write itself will tell."""
    if floor <= 0:
        return
    try:
        s = space(directory)
    except OSError:
        return
    if s.free - needed < floor:
        raise StoreError(
            f"store: {human(s.free)} free on {s.path}; storing {human(needed)} would leave "
            f"less than store_free_floor ({human(floor)}); not written, retried later")
