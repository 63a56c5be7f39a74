"""The Requires-Python of an sdist's own PKG-INFO, read without running any of its code.

The upstream's Requires-Python (``data-requires-python``) is what sync queues by;
an sdist whose upstream entry gives none may still declare one in PKG-INFO. The
builder reads it before building: bounded (members looked at, PKG-INFO size), safe
on hostile archives, never raising for a bad one (no constraint read: the build
goes on and fails or succeeds on its own).
"""

from __future__ import annotations

import email.parser
import tarfile
import zipfile
from pathlib import Path

_MAX_MEMBERS = 20_000
_MAX_PKG_INFO = 1 << 20   # bytes: a PKG-INFO is headers plus a description
# Bytes of a tar's decompressed stream read looking for it: this runs outside the
# sandbox's caps, so a compression bomb must not cost more than a big real sdist.
MAX_SCAN = 512 << 20


def _read(path: Path) -> bytes | None:
    """The top-level ``<name>-<version>/PKG-INFO`` of a .tar.* or .zip sdist, or None."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for i, info in enumerate(zf.infolist()):
                if i > _MAX_MEMBERS:
                    return None
                parts = info.filename.split("/")
                if len(parts) == 2 and parts[1] == "PKG-INFO" and not info.is_dir():
                    return zf.read(info) if info.file_size <= _MAX_PKG_INFO else None
        return None
    with tarfile.open(path, "r:*") as tar:
        for i, member in enumerate(tar):
            if i > _MAX_MEMBERS or member.offset_data > MAX_SCAN:
                return None
            parts = member.name.lstrip("./").split("/")
            if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                if member.size > _MAX_PKG_INFO:
                    return None
                fh = tar.extractfile(member)
                return fh.read() if fh else None
    return None


def requires_python(path: Path) -> str | None:
    """The sdist's PKG-INFO ``Requires-Python`` (stripped), or None: absent, empty, or
    the archive or PKG-INFO unreadable."""
    try:
        raw = _read(path)
    except Exception:  # a hostile or damaged archive (bad CRC, unknown
        # compression, encryption, truncated xz...) has no Requires-Python we can read;
        # the build goes on and reports the archive itself
        return None
    if raw is None:
        return None
    headers = email.parser.BytesHeaderParser().parsebytes(raw)
    value = headers.get("Requires-Python")
    return str(value).strip() or None if value is not None else None
