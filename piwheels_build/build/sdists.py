"""Read an sdist's declared build requirements without running any of its code.

The builder fetches the declared requirements as wheels first (with network),
then makes the build environment and calls the backend with no network at
all (build/buildenv.py); so this reader must be safe on hostile archives: it
looks at a bounded number of members and a bounded file size.
"""

from __future__ import annotations

import re
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ..errors import PiwheelsError

# pip's own default for a project with no [build-system] table
LEGACY_REQUIRES = ["setuptools>=40.8.0", "wheel"]
# PEP 517's fallback backend for a project without one
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
_BACKEND = re.compile(r"[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?")
_MAX_MEMBERS = 20_000
_MAX_PYPROJECT = 1 << 20


class SdistError(PiwheelsError):
    """The sdist is unreadable or declares nonsense: the package's fault."""


def _read_pyproject(path: Path) -> bytes | None:
    name = path.name
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for i, info in enumerate(zf.infolist()):
                    if i > _MAX_MEMBERS:
                        break
                    parts = info.filename.split("/")
                    if len(parts) == 2 and parts[1] == "pyproject.toml":
                        if info.file_size > _MAX_PYPROJECT:
                            raise SdistError("pyproject.toml is too large")
                        return zf.read(info)
            return None
        with tarfile.open(path, "r:*") as tar:
            for i, member in enumerate(tar):
                if i > _MAX_MEMBERS:
                    break
                parts = member.name.lstrip("./").split("/")
                if len(parts) == 2 and parts[1] == "pyproject.toml" and member.isfile():
                    if member.size > _MAX_PYPROJECT:
                        raise SdistError("pyproject.toml is too large")
                    fh = tar.extractfile(member)
                    return fh.read() if fh else None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise SdistError(f"cannot read sdist {name}: {e}") from None
    return None


@dataclass(frozen=True)
class BuildSystem:
    """An sdist's ``[build-system]``: what to install, which backend to call.

    ``requires`` are PEP 508 strings (possibly empty); ``backend`` is
    ``module:object``; ``backend_path`` are directories relative to the source
    tree (an in-tree backend), empty when there are none.
    """

    requires: list[str]
    backend: str
    backend_path: list[str] = field(default_factory=list)


def build_system(path: Path) -> BuildSystem:
    """The sdist's build system, read without running anything.

    Without ``pyproject.toml``, a ``[build-system]`` table or its
    ``build-backend``, PEP 517's fallback: setuptools' legacy backend with
    ``setuptools>=40.8.0`` and ``wheel`` (pip's defaults) when ``requires`` is
    absent. ``wheel`` is added for setuptools, which older setuptools asks
    for while building. Raises SdistError (unreadable archive, invalid TOML,
    malformed ``requires``, ``build-backend`` or ``backend-path``).
    """
    raw = _read_pyproject(path)
    if raw is None:
        return BuildSystem(list(LEGACY_REQUIRES), LEGACY_BACKEND)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SdistError(f"pyproject.toml is not valid TOML: {e}") from None
    system = data.get("build-system")
    if not isinstance(system, dict) or "requires" not in system:
        return BuildSystem(list(LEGACY_REQUIRES), LEGACY_BACKEND)
    requires = system["requires"]
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise SdistError("build-system.requires must be a list of strings")
    for req in requires:
        try:
            Requirement(req)
        except InvalidRequirement as e:
            raise SdistError(f"build-system.requires: {e}") from None
    if any(Requirement(r).name.lower() == "setuptools" for r in requires) and \
            not any(Requirement(r).name.lower() == "wheel" for r in requires):
        requires = [*requires, "wheel"]
    backend = system.get("build-backend", LEGACY_BACKEND)
    if not isinstance(backend, str) or not _BACKEND.fullmatch(backend):
        raise SdistError(f"build-system.build-backend is not module:object: {backend!r}")
    backend_path = system.get("backend-path", [])
    if not isinstance(backend_path, list) or not all(
            isinstance(p, str) and p and not p.startswith("/") and ".." not in p.split("/")
            for p in backend_path):
        raise SdistError("build-system.backend-path must be relative paths inside the sdist")
    return BuildSystem(list(requires), backend, list(backend_path))


def build_requirements(path: Path) -> list[str]:
    """The sdist's declared build requirements (``build_system(path).requires``)."""
    return build_system(path).requires
