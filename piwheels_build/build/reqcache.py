"""Reuse the build requirements fetched for one build in the next that asks for the same.

Most sdists declare the same build requirements (setuptools and wheel, or
nothing, which means those). Fetching them is a pip process of its own,
about half a second here, as long as building a small pure package
(docs/benchmarks.md, section 5). A fetch that succeeded and left only wheels
is kept, with the sha256 of each, in a directory of the builder's own that
no build can write to; the next build of the same interpreter asking for the
same requirements from the same upstream within ``max_age`` seconds gets
copies of those wheels instead of a fetch, each checked against its sha256.
build/buildenv.py uses it for both fetches of a build: the declared
requirements and those the backend's ``get_requires_for_build_wheel`` adds
(the key says which, and whether the fetch was wheels only).
A fetch that left anything else (an sdist, which the offline step would
build, i.e. run) is not kept. The cache lives as long as the builder process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20


class RequirementsCache:
    """Wheels of earlier successful fetches, by a key of strings (buildenv's: interpreter,
    sources, wheels only or not, declared or dynamic, the requirements)."""

    def __init__(self, root: Path, max_age: float = 600.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="piwheels-reqs-", dir=root))
        os.chmod(self.root, 0o700)
        self.max_age = max_age
        self._entries: dict[tuple[str, ...], tuple[float, Path, dict[str, str]]] = {}

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._entries.clear()

    def put(self, key: tuple[str, ...], wheelhouse: Path) -> bool:
        """Keep what a successful fetch left, if it is wheels only; True when kept."""
        try:
            found = sorted(wheelhouse.iterdir())
        except OSError:
            return False
        if not found or any(p.is_symlink() or not p.is_file() or p.suffix != ".whl"
                            for p in found):
            return False
        old = self._entries.pop(key, None)
        if old:
            shutil.rmtree(old[1], ignore_errors=True)
        dest = Path(tempfile.mkdtemp(dir=self.root))
        hashes: dict[str, str] = {}
        try:
            for src in found:
                hashes[src.name] = _copy(src, dest / src.name)
        except OSError:
            shutil.rmtree(dest, ignore_errors=True)
            return False
        self._entries[key] = (time.monotonic(), dest, hashes)
        return True

    def get(self, key: tuple[str, ...], wheelhouse: Path,
            give: Callable[[Path], None]) -> list[str] | None:
        """Copy the kept wheels for ``key`` into ``wheelhouse``; None when there are none.

        An entry older than ``max_age``, or whose copy does not match its
        sha256, is dropped and None returned (the build fetches as usual).
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        at, src, hashes = entry
        if time.monotonic() - at > self.max_age:
            self._drop(key)
            return None
        copied: list[Path] = []
        try:
            for name, digest in sorted(hashes.items()):
                target = wheelhouse / name
                got = _copy(src / name, target)
                copied.append(target)
                if got != digest:
                    raise OSError(f"{name} changed since it was fetched")
                give(target)
        except OSError:
            for target in copied:
                with contextlib.suppress(OSError):
                    target.unlink()
            self._drop(key)
            return None
        return sorted(hashes)

    def _drop(self, key: tuple[str, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry:
            shutil.rmtree(entry[1], ignore_errors=True)


def _copy(src: Path, dest: Path) -> str:
    """Copy a regular file (never through a symlink) to a new dest, return its sha256.

    Raises OSError without touching an existing dest; a dest it created and
    could not finish is removed.
    """
    h = hashlib.sha256()
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f_in:
        f_out = open(dest, "xb")  # closed below; removed if the copy fails
        try:
            with f_out:
                os.fchmod(f_out.fileno(), 0o644)
                while chunk := f_in.read(CHUNK):
                    h.update(chunk)
                    f_out.write(chunk)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise
    return h.hexdigest()
