"""Build output kept within a cap: the head and the tail, and what was cut."""

from __future__ import annotations

import gzip


def cut_note(cut: int) -> bytes:
    """The line put where output was dropped, so a reader knows the log is not whole."""
    return f"\n\n[... {cut:,} bytes of output cut by piwheels ...]\n\n".encode()


def capped_bytes(text: bytes, limit: int) -> tuple[bytes, int, bool]:
    """(kept text, bytes printed, truncated?) with at most ``limit`` bytes kept."""
    if len(text) <= limit:
        return text, len(text), False
    half = limit // 2
    return text[:half] + cut_note(len(text) - 2 * half) + text[-half:], len(text), True


def compress(text: bytes) -> bytes:
    return gzip.compress(text, compresslevel=6, mtime=0)
