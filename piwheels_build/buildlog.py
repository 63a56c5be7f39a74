"""Build output kept within a cap: the head and the tail, and what was cut."""

from __future__ import annotations

import gzip
from pathlib import Path


def capped(path: Path, limit: int) -> tuple[bytes, int, bool]:
    """(kept text, bytes printed, truncated?) of a log file, at most ``limit`` bytes kept."""
    size = path.stat().st_size if path.exists() else 0
    with path.open("rb") if size else _empty() as fh:
        if size <= limit:
            return fh.read(), size, False
        half = limit // 2
        head = fh.read(half)
        fh.seek(size - half)
        tail = fh.read()
    note = f"\n\n[... {size - 2 * half:,} bytes of output cut by piwheels ...]\n\n".encode()
    return head + note + tail, size, True


class _empty:
    def __enter__(self):
        import io

        return io.BytesIO()

    def __exit__(self, *exc) -> None:
        return None


def capped_bytes(text: bytes, limit: int) -> tuple[bytes, int, bool]:
    """Like capped() for output already in memory."""
    if len(text) <= limit:
        return text, len(text), False
    half = limit // 2
    note = f"\n\n[... {len(text) - 2 * half:,} bytes of output cut by piwheels ...]\n\n"
    return text[:half] + note.encode() + text[-half:], len(text), True


def compress(text: bytes) -> bytes:
    return gzip.compress(text, compresslevel=6, mtime=0)
