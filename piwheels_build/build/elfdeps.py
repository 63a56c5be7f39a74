"""Which system libraries a wheel links, and which Debian packages provide them.

We parse the ELF dynamic section ourselves (never run ``ldd``, which can
execute the binary) and ask dpkg which package owns each library found in
the standard library directories, so project pages can say what to
``apt install``.
"""

from __future__ import annotations

import struct
import subprocess
import zipfile
from functools import lru_cache
from pathlib import Path

_DT_NEEDED, _DT_STRTAB, _SHT_DYNAMIC, _SHT_STRTAB = 1, 5, 6, 3
# Always present on any Debian system: not worth telling a user to install.
_BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "libc6-dev"}
_LIB_DIRS = ("/lib/{arch}", "/usr/lib/{arch}", "/lib", "/usr/lib", "/usr/local/lib")


def needed(data: bytes) -> list[str]:
    """DT_NEEDED entries of an ELF image (32/64-bit, either byte order); [] if not ELF."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return []
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    try:
        if is64:
            shoff, = struct.unpack_from(end + "Q", data, 0x28)
            shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        else:
            shoff, = struct.unpack_from(end + "I", data, 0x20)
            shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        sections = []
        for i in range(min(shnum, 4096)):
            base = shoff + i * shentsize
            if is64:
                _n, stype, _f, _a, off, size, link = struct.unpack_from(end + "IIQQQQI", data, base)
            else:
                _n, stype, _f, _a, off, size, link = struct.unpack_from(end + "IIIIIII", data, base)
            sections.append((stype, off, size, link))
        names = []
        for stype, off, size, link in sections:
            if stype != _SHT_DYNAMIC or link >= len(sections):
                continue
            _st, str_off, str_size, _l = sections[link]
            strtab = data[str_off:str_off + str_size]
            fmt, step = (end + "qQ", 16) if is64 else (end + "iI", 8)
            for pos in range(off, off + size, step):
                tag, val = struct.unpack_from(fmt, data, pos)
                if tag == 0:
                    break
                if tag == _DT_NEEDED and val < len(strtab):
                    names.append(strtab[val:strtab.index(b"\0", val)].decode("utf-8", "replace"))
        return names
    except (struct.error, ValueError):
        return []


def wheel_libraries(wheel: Path, max_bytes: int = 256 << 20) -> list[str]:
    """Sonames the ELF files in a wheel need, minus the ones the wheel ships itself."""
    wanted: set[str] = set()
    shipped: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if info.file_size > max_bytes or info.is_dir():
                continue
            with zf.open(info) as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            shipped.add(base)
            wanted.update(needed(zf.read(info)))
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
