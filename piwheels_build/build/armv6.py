"""May a ``linux_armv7l`` wheel also be published as ``linux_armv6l``?

Only when the code inside runs on a Raspberry Pi 1 / Zero (ARM1176JZF-S:
ARMv6KZ, VFPv2, no NEON, no Thumb-2). Raspberry Pi OS's compiler targets that
CPU, Debian's armhf compiler targets ARMv7 + VFPv3-D16, and an ARMv7 wheel
renamed ``armv6l`` dies with "Illegal instruction" on a Pi Zero. Every ARM ELF
file says what it needs in its build attributes (the ``.ARM.attributes``
section, "aeabi" file attributes; ARM IHI 0045, *Addenda to, and Errata in,
the ABI for the Arm Architecture*), read here with pyelftools, never by running
``readelf``. A wheel with no ELF file in it (a platform wheel that only
bundles data or scripts) may be aliased.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import ARMAttributesSection

from .elfdeps import elf_members

# Tag_CPU_arch values an ARMv6KZ core runs (IHI 0045): v4, v4T, v5T, v5TE, v5TEJ,
# v6, v6KZ, v6K. Not v6T2 (Thumb-2), v7 and later, nor the M profile's v6-M/v6S-M.
_ARMV6_CPU_ARCHS = {1: "v4", 2: "v4T", 3: "v5T", 4: "v5TE", 5: "v5TEJ", 6: "v6", 7: "v6KZ",
                    9: "v6K"}
_CPU_ARCH_NAMES = {0: "pre-v4", 8: "v6T2", 10: "v7", 11: "v6-M", 12: "v6S-M", 13: "v7E-M",
                   14: "v8-A", 15: "v8-R", 16: "v8-M.baseline", 17: "v8-M.mainline",
                   18: "v8.1-A", 19: "v8.2-A", 20: "v8.3-A", 21: "v8.1-M.mainline", 22: "v9-A"}
# Tag_FP_arch: none, VFPv1, VFPv2 (the Pi 1's VFP11). VFPv3 and later fault.
_FP_NAMES = {0: "none", 1: "VFPv1", 2: "VFPv2", 3: "VFPv3", 4: "VFPv3-D16", 5: "VFPv4",
             6: "VFPv4-D16", 7: "ARMv8 FP", 8: "ARMv8 FP-D16"}
_ARMV6_FP = {0, 1, 2}
_PROFILE_M = ord("M")


@dataclass(frozen=True)
class ArmAttributes:
    """The file attributes of one ARM ELF file that decide where it runs.

    ``cpu_arch`` is None when the file declares none (Tag_CPU_arch absent)."""

    cpu_arch: int | None
    profile: int = 0
    fp_arch: int = 0
    simd_arch: int = 0
    thumb_use: int = 0

    def armv6_refusal(self) -> str | None:
        """Why this file would not run on an ARMv6 Pi, or None if it would."""
        if self.cpu_arch is None:
            return "declares no CPU architecture"
        if self.cpu_arch not in _ARMV6_CPU_ARCHS:
            name = _CPU_ARCH_NAMES.get(self.cpu_arch, f"architecture {self.cpu_arch}")
            return f"is {name} code"
        if self.profile == _PROFILE_M:
            return "is M-profile code"
        if self.fp_arch not in _ARMV6_FP:
            return f"uses {_FP_NAMES.get(self.fp_arch, f'FP architecture {self.fp_arch}')}"
        if self.simd_arch:
            return "uses NEON"
        if self.thumb_use == 2:
            return "uses Thumb-2"
        return None


def arm_attributes(stream: IO[bytes]) -> ArmAttributes | None:
    """The aeabi file attributes of a 32-bit ARM ELF file; None if it is not one.

    ``stream`` must be seekable. Raises ``ELFError`` for a damaged ELF file."""
    elf = ELFFile(stream)
    if elf["e_machine"] != "EM_ARM":
        return None
    found: dict[str, int] = {}
    for section in elf.iter_sections():
        if not isinstance(section, ARMAttributesSection):
            continue
        for sub in section.iter_subsections():
            if sub.header["vendor_name"] != "aeabi":
                continue
            for subsub in sub.iter_subsubsections():
                if subsub.header.tag != "TAG_FILE":
                    continue  # section/symbol scopes narrow, never widen, the file's
                for attr in subsub.iter_attributes():
                    if isinstance(attr.value, int):
                        found[attr.tag] = attr.value
    return ArmAttributes(cpu_arch=found.get("TAG_CPU_ARCH"),
                         profile=found.get("TAG_CPU_ARCH_PROFILE", 0),
                         fp_arch=found.get("TAG_FP_ARCH", 0),
                         simd_arch=found.get("TAG_ADVANCED_SIMD_ARCH", 0),
                         thumb_use=found.get("TAG_THUMB_ISA_USE", 0))


def _refusals(wheel: Path) -> Iterator[str]:
    for name, stream in elf_members(wheel):
        try:
            attrs = arm_attributes(stream)
        except (ELFError, ValueError, KeyError) as e:  # pyelftools' errors on a damaged file
            yield f"{name} is not a readable ELF file ({e})"
            continue
        if attrs is None:
            yield f"{name} is not 32-bit ARM code"
            continue
        why = attrs.armv6_refusal()
        if why:
            yield f"{name} {why}"


def armv6_refusal(wheel: Path) -> str | None:
    """Why the wheel must not be published as ``linux_armv6l``, or None when it may.

    It may when every ELF file in it is ARMv6 code (see the module's docstring)
    or when it holds no ELF file. The reason names the first file refused, e.g.
    ``"pkg/_ext.so is v7 code"``. Raises ``OSError`` or ``zipfile.BadZipFile``
    for an unreadable wheel."""
    return next(_refusals(wheel), None)
