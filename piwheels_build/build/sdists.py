"""Read an sdist's declared build requirements without running any of its code.

The offline build mode fetches these into a wheelhouse first (with network),
then builds with no network at all; so this reader must be safe on hostile
archives: it looks at a bounded number of members and a bounded file size.
"""

from __future__ import annotations

import tarfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ..errors import PiwheelsError

# pip's own default for a project with no [build-system] table
LEGACY_REQUIRES = ["setuptools>=40.8.0", "wheel"]
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


def build_requirements(path: Path) -> list[str]:
    """The sdist's [build-system] requires (pip's legacy default when absent), plus wheel
    for setuptools, which older setuptools asks for while building."""
    raw = _read_pyproject(path)
    if raw is None:
        return list(LEGACY_REQUIRES)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SdistError(f"pyproject.toml is not valid TOML: {e}") from None
    system = data.get("build-system")
    if not isinstance(system, dict) or "requires" not in system:
        return list(LEGACY_REQUIRES)
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
    return requires
