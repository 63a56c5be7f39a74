"""The wheel store: ``www/simple/<package>/<file>``, written atomically, never overwritten.

Builders reach the store through sshfs, so every write goes to a hidden
temporary name in the target directory and is linked or renamed into place:
a reader (nginx, pip) sees either no file or the whole file, never a part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .diskspace import check_room
from .errors import StoreError
from .fsutil import CHUNK, atomic_write, fsync_dir, sha256_file, symlink_atomic, write_bytes
from .names import normalize


def _unsafe(name: str) -> bool:
    """True for a name that could leave its directory, hide as a temp file or not fit."""
    return (not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name
            or len(name.encode("utf-8", "surrogateescape")) > 255)


def _check_name(filename: str) -> None:
    """Refuse names that could leave the package directory or hide as temp files."""
    if _unsafe(filename):
        raise StoreError(f"store: refusing file name {filename[:100]!r}")


def _same_bytes(path: Path, digest: str) -> bool:
    """True if path (or what its symlink points to) holds exactly these bytes."""
    try:
        return sha256_file(path) == digest
    except FileNotFoundError:
        return False  # a dangling alias: nothing worth keeping


def _copy(src: Path, f: IO[bytes]) -> tuple[str, int]:
    """Copy src into the open file f; the SHA-256 and the size of what was written."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as s:
        while chunk := s.read(CHUNK):
            h.update(chunk)
            f.write(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _check_published(final: Path, size: int) -> None:
    """The file just published has the size written, or it goes (it is not recorded yet).

    One stat, not a second read of the whole wheel over sshfs: a store that lost
    part of an upload (a mount detached and reattached under the write) shows as
    a short file, and is never recorded.
    """
    got = os.stat(final).st_size
    if got != size:
        with contextlib.suppress(OSError):
            os.unlink(final)
        raise StoreError(f"store: {final.name} has {got} bytes after the upload, not {size}; "
                         "removed, the build is retried")


class Store:
    """Wheels and their PEP 658 metadata under ``www/simple/``."""

    def __init__(self, www: Path) -> None:
        self.www = Path(www)
        self.root = self.www / "simple"

    def path(self, package: str, filename: str) -> Path:
        """Where a file of a package lives: ``www/simple/<normalized>/<filename>``."""
        _check_name(filename)
        pkg = normalize(package)
        if _unsafe(pkg):  # "/etc" would make the join absolute; "a/b" a nested directory
            raise StoreError(f"store: refusing package name {package[:100]!r}")
        return self.root / pkg / filename

    def put(self, package: str, filename: str, src: Path, *,
            may_replace: Callable[[str], bool] | None = None, floor: int = 0) -> Path:
        """Publish src as filename; identical bytes are a no-op, different bytes need consent.

        ``may_replace(filename)`` is asked only when a file with other bytes is
        already there (the caller answers "not recorded in the database", i.e. a
        leftover of a build that never finished). Nothing is written when a new
        file would leave less than ``floor`` bytes free (``store_free_floor``).
        Raises StoreError (one line) then, and when the file cannot be written (a
        full disk, a store whose mount is gone) or the published file does not have
        the size written; nothing partial is visible.
        """
        final = self.path(package, filename)
        try:
            if floor and not os.path.lexists(final):  # a retry of a stored wheel needs none
                check_room(final.parent, Path(src).stat().st_size, floor)
            try:
                with atomic_write(final, exclusive=True, durable=True) as f:
                    digest, size = _copy(Path(src), f)
            except FileExistsError:
                if _same_bytes(final, digest):
                    return final
                if may_replace is None or not may_replace(final.name):
                    raise StoreError(
                        f"store: {final.name} already exists with different contents; "
                        "published files are never overwritten"
                    ) from None
                with atomic_write(final, durable=True) as f:
                    digest, size = _copy(Path(src), f)
            _check_published(final, size)
        except OSError as e:
            raise StoreError(f"store: cannot write {final}: {e.strerror or e}") from None
        return final

    def put_metadata(self, package: str, wheel_filename: str, metadata: bytes) -> str:
        """Write the wheel's PEP 658 ``.metadata`` file and return its SHA-256."""
        final = self.path(package, wheel_filename + ".metadata")
        digest = hashlib.sha256(metadata).hexdigest()
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_file() and not final.is_symlink() and sha256_file(final) == digest:
                return digest
            write_bytes(final, metadata, durable=True)
        except OSError as e:
            raise StoreError(f"store: cannot write {final}: {e.strerror or e}") from None
        return digest

    def alias(self, package: str, filename: str, alias_filename: str) -> bool:
        """Publish alias_filename as a relative symlink to filename (and its metadata).

        False, and nothing changed, when a real file already has the alias name:
        a real wheel for that platform always beats an alias.
        """
        target = self.path(package, filename)
        link = self.path(package, alias_filename)
        if not target.is_file() or target.is_symlink():
            raise StoreError(f"store: cannot alias {filename}: it is not a stored wheel")
        try:
            if not self._symlink(link, filename):
                return False
            meta = target.with_name(filename + ".metadata")
            if meta.is_file() and not meta.is_symlink():
                self._symlink(link.with_name(alias_filename + ".metadata"), meta.name)
        except OSError as e:
            raise StoreError(f"store: cannot alias {link}: {e.strerror or e}") from None
        return True

    def _symlink(self, link: Path, target_name: str) -> bool:
        """Atomically point link at target_name (same directory) unless link is a real file."""
        if os.path.lexists(link) and not link.is_symlink():
            return False
        if link.is_symlink() and os.readlink(link) == target_name:
            return True
        symlink_atomic(link, target_name)
        return True

    @staticmethod
    def alias_names(filename: str, platform_aliases: dict[str, list[str]]) -> list[str]:
        """File names under which a wheel is also published (linux_armv7l -> linux_armv6l).

        One alias per alias platform; for a compressed tag set (``a.b``) the
        aliases of every tag count, minus tags the wheel already has.
        """
        if not filename.endswith(".whl"):
            return []
        parts = filename[:-4].split("-")
        if len(parts) not in (5, 6):
            return []
        tags = parts[-1].split(".")
        names: list[str] = []
        for tag in tags:
            for alias in platform_aliases.get(tag, []):
                name = "-".join([*parts[:-1], alias]) + ".whl"
                if alias not in tags and name not in names:
                    names.append(name)
        return names

    def remove(self, package: str, filename: str) -> list[str]:
        """Delete a wheel, its metadata and the aliases pointing at them (admin rebuilds)."""
        target = self.path(package, filename)
        doomed = {filename, filename + ".metadata"}
        removed = []
        try:
            entries = list(os.scandir(target.parent))
        except FileNotFoundError:
            return []
        for entry in entries:
            points_here = entry.is_symlink() and os.readlink(entry.path) in doomed
            if entry.name in doomed or points_here:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
        fsync_dir(target.parent)
        return sorted(removed)

    def disk_usage(self) -> int:
        """Bytes used by stored wheels (aliases are symlinks and cost nothing)."""
        total = 0
        try:
            packages = os.scandir(self.root)
        except FileNotFoundError:
            return 0
        with packages:
            for pkg in packages:
                if not pkg.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(pkg.path) as files:
                    for f in files:
                        if f.name.endswith(".whl") and f.is_file(follow_symlinks=False):
                            total += f.stat(follow_symlinks=False).st_size
        return total

