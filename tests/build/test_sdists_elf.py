"""Reading build requirements without running code; ELF dependencies without ldd."""

import glob
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers.farm import sdist

from piwheels_build.build import elfdeps
from piwheels_build.build.sdists import LEGACY_REQUIRES, SdistError, build_requirements


def _write(tmp_path, name, files):
    fn, data = sdist(name, "1.0", files)
    p = tmp_path / fn
    p.write_bytes(data)
    return p


def test_declared_requirements_with_wheel_added(tmp_path):
    p = _write(tmp_path, "a", {})
    assert build_requirements(p) == ["setuptools>=61", "wheel"]
    p = _write(tmp_path, "b", {"pyproject.toml": '[build-system]\nrequires = ["hatchling"]\n'})
    assert build_requirements(p) == ["hatchling"]


def test_legacy_default_without_build_system(tmp_path):
    p = _write(tmp_path, "c", {"pyproject.toml": "[tool.black]\nline-length = 1\n"})
    assert build_requirements(p) == LEGACY_REQUIRES
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("d-1.0/setup.py")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"#\n"))
    (tmp_path / "d-1.0.tar.gz").write_bytes(buf.getvalue())
    assert build_requirements(tmp_path / "d-1.0.tar.gz") == LEGACY_REQUIRES


def test_zip_sdist(tmp_path):
    p = tmp_path / "e-1.0.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("e-1.0/pyproject.toml", '[build-system]\nrequires = ["flit_core>=3"]\n')
    assert build_requirements(p) == ["flit_core>=3"]


@pytest.mark.parametrize("text, words", [
    ('[build-system]\nrequires = "setuptools"\n', "must be a list"),
    ('[build-system]\nrequires = ["not a requirement!!"]\n', "build-system.requires"),
    ("[build-system\n", "not valid TOML"),
])
def test_nonsense_is_the_packages_fault(tmp_path, text, words):
    p = _write(tmp_path, "f", {"pyproject.toml": text})
    with pytest.raises(SdistError, match=words):
        build_requirements(p)


def test_not_an_archive(tmp_path):
    p = tmp_path / "g-1.0.tar.gz"
    p.write_bytes(b"garbage")
    with pytest.raises(SdistError, match="cannot read sdist"):
        build_requirements(p)


def _system_extension() -> Path:
    found = glob.glob("/usr/lib/python3*/lib-dynload/_ssl.*.so")
    if not found:
        pytest.skip("no Debian python3 _ssl extension on this machine")
    return Path(found[0])


def test_needed_reads_the_dynamic_section():
    assert any(n.startswith("libssl.so") for n in elfdeps.needed(_system_extension().read_bytes()))
    assert elfdeps.needed(b"not an elf file at all" * 10) == []


def test_wheel_dependencies_name_debian_packages(tmp_path):
    so = _system_extension()
    wheel = tmp_path / "x-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"x/{so.name}", so.read_bytes())
        zf.writestr("x/libbundled.so.1", b"\x7fELF" + b"\0" * 60)  # shipped: not a dependency
    deps = elfdeps.dependencies(wheel)
    libs = {d["dependency"] for d in deps if d["tool"] == "lib"}
    apt = {d["dependency"] for d in deps if d["tool"] == "apt"}
    assert any(lib.startswith("libssl.so") for lib in libs)
    assert any(pkg.startswith("libssl") for pkg in apt)
    assert "libc6" not in apt
