"""Which system libraries a wheel links, and which Debian packages provide them.

The ELF files' dynamic sections are read with pyelftools (never ``ldd``, which
can execute the binary) and dpkg is asked which package owns each library
found in the standard library directories, so project pages can say what to
``apt install``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import IO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

# Always present on any Debian system: not worth telling a user to install.
_BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "libc6-dev"}
_LIB_DIRS = ("/lib/{arch}", "/usr/lib/{arch}", "/lib", "/usr/lib", "/usr/local/lib")
MAX_MEMBER = 256 << 20  # bytes: a larger member is not read (no real extension is that big)
_SPOOL = 16 << 20  # bytes of a member kept in memory before spilling to a temporary file


def needed_in(stream: IO[bytes]) -> list[str]:
    """DT_NEEDED entries of a seekable ELF file (any class, byte order or machine);
    [] if it is not ELF, has no dynamic section or is damaged."""
    try:
        elf = ELFFile(stream)
        return [tag.needed for section in elf.iter_sections()
                if isinstance(section, DynamicSection)
                for tag in section.iter_tags("DT_NEEDED")]
    except (ELFError, ValueError, KeyError, UnicodeDecodeError):
        return []  # pyelftools' ways of saying "damaged"; nothing to report then


def needed(data: bytes) -> list[str]:
    """DT_NEEDED entries of an ELF image held in memory; [] if not ELF."""
    if data[:4] != b"\x7fELF":
        return []
    return needed_in(BytesIO(data))


def elf_members(wheel: Path, max_bytes: int = MAX_MEMBER) -> Iterator[tuple[str, IO[bytes]]]:
    """(member name, seekable stream) for each ELF file in a wheel (zip).

    Members over ``max_bytes`` are skipped. Each stream is valid until the next
    item is taken. Raises ``OSError`` or ``zipfile.BadZipFile`` for an
    unreadable wheel."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.file_size > max_bytes or info.is_dir():
                continue
            with zf.open(info) as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            # pyelftools seeks; a zip member stream cannot.
            with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as spool, \
                    zf.open(info) as fh:
                shutil.copyfileobj(fh, spool)
                spool.seek(0)
                yield info.filename, spool


def wheel_libraries(wheel: Path, max_bytes: int = MAX_MEMBER) -> list[str]:
    """Sonames the ELF files in a wheel need, minus the ones the wheel ships itself."""
    wanted: set[str] = set()
    shipped: set[str] = set()
    for name, stream in elf_members(wheel, max_bytes):
        shipped.add(name.rsplit("/", 1)[-1])
        wanted.update(needed_in(stream))
    return sorted(n for n in wanted if n not in shipped and not n.startswith("libpython"))


@lru_cache(maxsize=1)
def _multiarch() -> str:
    try:
        return subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        import sysconfig

        return sysconfig.get_config_var("MULTIARCH") or ""


@lru_cache(maxsize=4096)
def debian_package(soname: str) -> str | None:
    """The Debian package that owns a library, or None if not found or not Debian."""
    for pattern in _LIB_DIRS:
        path = Path(pattern.format(arch=_multiarch())) / soname
        if not path.exists():
            continue
        for candidate in (str(path), str(path.resolve())):
            try:
                out = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True,
                                     text=True, timeout=10)
            except (OSError, subprocess.SubprocessError):
                return None
            if out.returncode == 0 and ":" in out.stdout:
                return out.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def dependencies(wheel: Path) -> list[dict[str, str]]:
    """finish_build() dependency records: every library ('lib') and its package ('apt')."""
    deps = []
    for soname in wheel_libraries(wheel):
        deps.append({"tool": "lib", "dependency": soname})
        pkg = debian_package(soname)
        if pkg and pkg not in _BASE_PACKAGES:
            deps.append({"tool": "apt", "dependency": pkg})
    return deps
