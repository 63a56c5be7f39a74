"""Files that appear complete or not at all: the one atomic-write helper.

The store (wheels, over sshfs on builders) and the index writer (pages) both
write through ``atomic_write``: a hidden temporary name beside the target,
then a rename (replace) or a hard link (never replace). A reader (nginx, pip)
sees the old file, the new file or no file, never a part. Temporary names
start with a dot and contain ``.tmp-``, which is how leftovers are recognised.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20  # bytes per read when hashing or copying
TEMP_MARK = ".tmp-"


def temp_name(path: Path) -> Path:
    """A hidden, unique name beside ``path`` (``.NAME.tmp-XXXXXXXXXXXX``)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(6)}")


def _publish_exclusive(tmp: Path, final: Path) -> None:
    """Link tmp to final unless final exists (FileExistsError).

    A hard link is atomic and never replaces; where links are not supported
    (some sshfs servers) fall back to a rename after a check.
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(final):
            raise FileExistsError(final) from None
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb", *, exclusive: bool = False,
                 durable: bool = False) -> Iterator[IO[Any]]:
    """Yield an open file that appears at ``path`` when the block ends without error.

    ``mode`` is ``"wb"`` or ``"w"`` (UTF-8). The parent directory is made if
    missing; the file is world-readable (0644) whatever the umask, for the web
    server. ``exclusive`` publishes only if nothing is at ``path`` yet and
    raises FileExistsError otherwise (published wheels are never replaced);
    by default an existing file is replaced. ``durable`` fsyncs the file
    before and its directory after publishing (callers that write many files
    fsync them in one go instead: ``fsync_paths`` or ``sync_filesystem``).
    On any error the target is untouched and the temporary file is removed
    (unless the file system has stopped answering: a store whose mount is gone),
    and that error is raised.
    """
    tmp = temp_name(path)
    enc = None if "b" in mode else "utf-8"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:  # the first file of a package: make its directory
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        with os.fdopen(fd, mode, encoding=enc) as f:
            os.fchmod(f.fileno(), 0o644)
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if exclusive:
            _publish_exclusive(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        # The error that stopped the write is the one to report: a store whose mount
        # is gone fails this unlink too (EIO), and the index writer's sweep removes
        # the hidden leftover later (docs/reliability.md, the store's mount gone).
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(FileNotFoundError):  # after a link: the temporary name
        os.unlink(tmp)
    if durable:
        fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    """``data`` at ``path``, atomically (see ``atomic_write``)."""
    with atomic_write(path, durable=durable) as f:
        f.write(data)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Like ``write_bytes``, but leave an identical file (and its mtime) alone.

    Returns True when the file was written.
    """
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return False
    write_bytes(path, data)
    return True


def symlink_atomic(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` (a relative name), replacing an older link atomically."""
    tmp = temp_name(link)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def unlink(path: Path) -> bool:
    """Remove a file; False when it was not there."""
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in CHUNK-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make a rename durable; best effort (sshfs and some filesystems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_paths(paths: Iterable[Path]) -> None:
    """fsync each file, then each directory holding one (so renames and unlinks last)."""
    dirs = set()
    for path in paths:
        dirs.add(path.parent)
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in dirs:
        fsync_dir(d)


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the file system holding ``path`` (one ``syncfs``).

    Cheaper than an fsync per file when a batch wrote thousands; it also waits
    for everyone else's writes, so small batches use ``fsync_paths``.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            libc.syncfs(fd)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        os.sync()
