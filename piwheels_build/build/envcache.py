"""Reuse a build environment whose declared requirements an earlier build installed.

Installing setuptools and wheel into a fresh venv is a pip process of about a
second, as long as building a small pure package (docs/benchmarks.md,
section 5b). Right after that install, before anything of the package is
unpacked or run, the builder copies the venv into a directory of its own
(root's, mode 0700, beside the requirements cache; never mounted into a
sandbox): a template, keyed by the interpreter and the sha256 of every wheel
installed. The next build with the same key gets the template as hard links:
its files stay the builder's (a build may add or remove files in the venv's
directories, which are its own, but cannot change a template file), so a
build cannot poison the next one. Used only where builds run as another user
than the builder (``build_user``, the builder being root): a build running as
the builder's own user could change the template's files. A venv's scripts
name its path (``/tmp/build/env`` in every bubblewrap build, the build
directory's own without it); where a build's differs, the linked scripts are
replaced by copies naming the new one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path

from .reqcache import CHUNK


class EnvTemplates:
    """Pristine build environments by key; at most ``limit`` kept, the oldest dropped."""

    def __init__(self, root: Path, limit: int = 8) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="piwheels-envs-", dir=root))
        os.chmod(self.root, 0o700)
        self.limit = limit
        self._entries: OrderedDict[tuple[str, ...], tuple[Path, str]] = OrderedDict()

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._entries.clear()

    def get(self, key: tuple[str, ...], dest: Path, owner: tuple[int, int],
            path: str) -> bool:
        """Hard-link the template for ``key`` at ``dest`` (which must not exist), its
        directories owned by ``owner``, its scripts naming ``path`` (where the build
        sees ``dest``); False (and nothing at ``dest``) when there is none or the link
        fails."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        src, made_at = entry
        try:
            _run(["cp", "-a", "-l", "--", str(src), str(dest)])
            for d, _dirs, _files in os.walk(dest):
                os.chown(d, *owner)
            if path != made_at:
                _rename_in_scripts(dest / "bin", made_at, path, owner)
        except (OSError, subprocess.CalledProcessError):
            shutil.rmtree(dest, ignore_errors=True)
            self._drop(key)
            return False
        self._entries.move_to_end(key)
        return True

    def put(self, key: tuple[str, ...], env: Path, path: str) -> bool:
        """Copy the freshly installed ``env`` (seen by its build at ``path``) as the
        template for ``key`` (files owned by this process, read-only to others); True
        when kept."""
        dest = Path(tempfile.mkdtemp(dir=self.root)) / "env"
        try:
            _run(["cp", "-a", "--no-preserve=ownership", "--", str(env), str(dest)])
            for d, _dirs, files in os.walk(dest):
                for f in files:
                    p = os.path.join(d, f)
                    if not os.path.islink(p):
                        os.chmod(p, os.stat(p).st_mode & 0o755)
        except (OSError, subprocess.CalledProcessError):
            shutil.rmtree(dest.parent, ignore_errors=True)
            return False
        self._drop(key)
        self._entries[key] = (dest, path)
        while len(self._entries) > self.limit:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: tuple[str, ...]) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            shutil.rmtree(old[0].parent, ignore_errors=True)


def _rename_in_scripts(bindir: Path, old: str, new: str, owner: tuple[int, int]) -> None:
    """Replace each linked script whose first line names the venv at ``old`` by a copy
    of the build's own naming ``new`` (a link would change the template)."""
    prefix = f"#!{old}/".encode()
    for entry in os.scandir(bindir):
        if not entry.is_file(follow_symlinks=False):
            continue
        with open(entry.path, "rb") as fh:
            data = fh.read()
        if not data.startswith(prefix):
            continue
        mode = os.stat(entry.path).st_mode & 0o755
        os.unlink(entry.path)
        fd = os.open(entry.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(f"#!{new}/".encode() + data[len(prefix):])
        os.chown(entry.path, *owner)


def wheels_key(*directories: Path) -> tuple[str, ...]:
    """``name:sha256`` of every wheel in the directories, sorted: what an environment
    installed from them holds."""
    out = []
    for d in directories:
        for p in sorted(d.glob("*.whl")):
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
            out.append(f"{p.name}:{h.hexdigest()}")
    return tuple(sorted(out))


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
