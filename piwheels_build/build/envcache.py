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
build cannot poison the next one. Used with bubblewrap only, where the venv
has the same path in every build (``/tmp/build/env``: its scripts name it).
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
        self._entries: OrderedDict[tuple[str, ...], Path] = OrderedDict()

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._entries.clear()

    def get(self, key: tuple[str, ...], dest: Path, owner: tuple[int, int] | None) -> bool:
        """Hard-link the template for ``key`` at ``dest`` (which must not exist), its
        directories owned by ``owner``; False (and nothing at ``dest``) when there is
        none or the link fails."""
        src = self._entries.get(key)
        if src is None:
            return False
        try:
            _run(["cp", "-a", "-l", "--", str(src), str(dest)])
            if owner:
                for d, _dirs, _files in os.walk(dest):
                    os.chown(d, *owner)
        except (OSError, subprocess.CalledProcessError):
            shutil.rmtree(dest, ignore_errors=True)
            self._drop(key)
            return False
        self._entries.move_to_end(key)
        return True

    def put(self, key: tuple[str, ...], env: Path) -> bool:
        """Copy the freshly installed ``env`` as the template for ``key`` (files owned
        by this process, read-only to others); True when kept."""
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
        self._entries[key] = dest
        while len(self._entries) > self.limit:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: tuple[str, ...]) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)


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
