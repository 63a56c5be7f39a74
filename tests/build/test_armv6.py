"""The armv6l alias is allowed only for ARMv6 code, judged from real ARM ELF files.

The fixtures in tests/fixtures/elf/ were made by Debian's cross compilers from
add.c with tests/fixtures/elf/make.sh (the commands are there)."""

import zipfile
from pathlib import Path

import pytest

from piwheels_build.build.armv6 import ArmAttributes, arm_attributes, armv6_refusal
from piwheels_build.build.elfdeps import elf_members

ELF = Path(__file__).resolve().parents[1] / "fixtures" / "elf"


def _wheel(tmp_path, members: dict[str, bytes]) -> Path:
    wheel = tmp_path / "x-1.0-cp311-cp311-linux_armv7l.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("x-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: x\nVersion: 1.0\n")
        for name, data in members.items():
            zf.writestr(name, data)
    return wheel


def _so(name: str) -> bytes:
    return (ELF / name).read_bytes()


def test_attributes_read_from_real_files():
    with open(ELF / "armv6.so", "rb") as f:
        assert arm_attributes(f) == ArmAttributes(cpu_arch=6, fp_arch=2, thumb_use=1)
    with open(ELF / "armv7.so", "rb") as f:
        v7 = arm_attributes(f)
    assert (v7.cpu_arch, v7.profile, v7.fp_arch) == (10, ord("A"), 4)
    with open(ELF / "aarch64.so", "rb") as f:
        assert arm_attributes(f) is None  # not 32-bit ARM


def test_armv6_code_may_be_aliased(tmp_path):
    assert armv6_refusal(_wheel(tmp_path, {"x/_ext.so": _so("armv6.so")})) is None


@pytest.mark.parametrize(("fixture", "why"), [
    ("armv7.so", "x/_ext.so is v7 code"),
    # -march=armv6 objects linked with Debian's ARMv7 startup files make a v7 library
    ("armv6-startfiles.so", "x/_ext.so is v7 code"),
    ("armv6-neon.so", "x/_ext.so uses VFPv3"),
    ("aarch64.so", "x/_ext.so is not 32-bit ARM code"),
])
def test_other_code_is_refused_with_the_reason(tmp_path, fixture, why):
    assert armv6_refusal(_wheel(tmp_path, {"x/_ext.so": _so(fixture)})) == why


def test_one_v7_file_among_v6_ones_refuses_the_wheel(tmp_path):
    wheel = _wheel(tmp_path, {"x/a.so": _so("armv6.so"), "x/libs/libb.so.1": _so("armv7.so"),
                              "x/c.so": _so("armv6.so")})
    assert armv6_refusal(wheel) == "x/libs/libb.so.1 is v7 code"


def test_a_wheel_without_elf_files_may_be_aliased(tmp_path):
    wheel = _wheel(tmp_path, {"x/__init__.py": b"VALUE = 1\n", "x/data.bin": b"\0" * 100})
    assert armv6_refusal(wheel) is None


def test_a_damaged_elf_file_is_refused(tmp_path):
    cut = _so("armv6.so")[:200]
    why = armv6_refusal(_wheel(tmp_path, {"x/_ext.so": cut}))
    assert why is not None and why.startswith("x/_ext.so ")


@pytest.mark.parametrize(("attrs", "why"), [
    (ArmAttributes(cpu_arch=None), "declares no CPU architecture"),
    (ArmAttributes(cpu_arch=8), "is v6T2 code"),
    (ArmAttributes(cpu_arch=11, profile=ord("M")), "is v6-M code"),
    (ArmAttributes(cpu_arch=7, profile=ord("M")), "is M-profile code"),
    (ArmAttributes(cpu_arch=6, fp_arch=2, simd_arch=1), "uses NEON"),
    (ArmAttributes(cpu_arch=6, thumb_use=2), "uses Thumb-2"),
    (ArmAttributes(cpu_arch=9, fp_arch=2), None),  # v6K: the Pi 1's ARMv6KZ runs it
    (ArmAttributes(cpu_arch=5, fp_arch=0), None),
])
def test_the_rules(attrs, why):
    assert attrs.armv6_refusal() == why


def test_elf_members_streams_are_seekable(tmp_path):
    wheel = _wheel(tmp_path, {"x/a.so": _so("armv7.so"), "x/b.py": b"#"})
    seen = []
    for name, stream in elf_members(wheel):
        stream.seek(0, 2)
        seen.append((name, stream.tell()))
    assert seen == [("x/a.so", len(_so("armv7.so")))]
