"""Requires-Python end to end: real sync from a fake upstream on 127.0.0.1, real builds
with two real interpreters, the real index writer and `piwheels status`. No build is
spent on a Python a release rules out, and nothing of it shows as failed."""

from __future__ import annotations

import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers.farm import Farm, query, sdist, show_failures
from helpers.fixture_packages import pure
from helpers.upstream_server import FakeUpstream

from piwheels_build.build import pkginfo
from piwheels_build.build.interpreters import discover

FIXTURE_WHEELS = os.environ.get("PIWHEELS_FIXTURE_WHEELS", "")


# ------------------------------------------------------------------ PKG-INFO reader

def _tar(path: Path, members: dict[str, bytes]) -> Path:
    import io
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_pkginfo_requires_python_from_tar_and_zip(tmp_path):
    meta = b"Metadata-Version: 2.1\nName: a\nVersion: 1\nRequires-Python:  >=3.10 \n\nbody"
    assert pkginfo.requires_python(_tar(tmp_path / "a-1.tar.gz", {"a-1/PKG-INFO": meta})) \
        == ">=3.10"
    with zipfile.ZipFile(tmp_path / "a-1.zip", "w") as zf:
        zf.writestr("a-1/PKG-INFO", meta)
    assert pkginfo.requires_python(tmp_path / "a-1.zip") == ">=3.10"


def test_pkginfo_without_requires_python_or_unreadable_is_none(tmp_path):
    plain = b"Metadata-Version: 2.1\nName: a\nVersion: 1\n"
    assert pkginfo.requires_python(_tar(tmp_path / "a.tar.gz", {"a-1/PKG-INFO": plain})) is None
    # only the top level's PKG-INFO counts (a vendored package's is not the sdist's)
    nested = b"Metadata-Version: 2.1\nRequires-Python: >=3.99\n"
    assert pkginfo.requires_python(
        _tar(tmp_path / "b.tar.gz", {"b-1/vendor/x/PKG-INFO": nested})) is None
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    assert pkginfo.requires_python(tmp_path / "broken.tar.gz") is None
    big = b"Requires-Python: >=3.99\n" + b"x" * (2 << 20)
    assert pkginfo.requires_python(_tar(tmp_path / "c.tar.gz", {"c-1/PKG-INFO": big})) is None


# ------------------------------------------------------------------ a real farm

@pytest.fixture(scope="module")
def wave(tmp_path_factory, pg_cluster):
    found = discover((3, 10))   # the fixture setuptools needs 3.10
    if len(found) < 2:
        pytest.skip("needs two CPython interpreters (3.10+) with pip on this machine")
    lo, hi = found[0], found[1]
    wheels = sorted(Path(FIXTURE_WHEELS).glob("*.whl")) if FIXTURE_WHEELS else []
    if not any(w.name.startswith("setuptools-") for w in wheels):
        pytest.fail("no setuptools wheel for the test upstream: run the tests with "
                    "scripts/test.sh, which fetches it into .cache/fixture-wheels")
    tmp = tmp_path_factory.mktemp("rp")
    pg_cluster.createdb("requires_python")
    dsn = pg_cluster.dsn("requires_python")
    not_lo = f">={hi.version[0]}.{hi.version[1]}"   # rules out lo's Python, admits hi's
    with FakeUpstream() as up:
        for whl in wheels:
            up.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
        # The upstream says it (data-requires-python / JSON requires-python).
        fn, data = sdist("uponly", "1.0", pure("uponly", "uponly"))
        up.add_file("uponly", fn, data, requires_python=not_lo)
        # Only the sdist's PKG-INFO says it.
        fn, data = sdist("pkgonly", "1.0", {
            **pure("pkgonly", "pkgonly"),
            "PKG-INFO": f"Metadata-Version: 2.1\nName: pkgonly\nVersion: 1.0\n"
                        f"Requires-Python: {not_lo}\n",
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\n'
                              'build-backend = "setuptools.build_meta"\n\n'
                              '[project]\nname = "pkgonly"\nversion = "1.0"\n'
                              f'requires-python = "{not_lo}"\n'})
        up.add_file("pkgonly", fn, data)
        fn, data = sdist("anyver", "1.0", pure("anyver", "anyver"))
        up.add_file("anyver", fn, data)
        farm = Farm(tmp, dsn, up.url, [lo, hi])
        farm.run("initdb")
        farm.run("sync", "uponly", "pkgonly", "anyver")
        build = farm.run("build")
        show_failures(dsn)
        farm.run("index", "--full")
        status = farm.run("status")
        yield {"farm": farm, "dsn": dsn, "lo": lo, "hi": hi, "build": build,
               "status": status.stdout}


def builds(wave, package):
    return sorted(query(wave["dsn"], "SELECT target, status FROM builds WHERE package = %s",
                        package))


def cells(wave, package):
    data = json.loads((wave["farm"].www / "project" / package / "index.json").read_text())
    return {c["target"]: c for c in data["versions"][0]["targets"]}


@pytest.mark.slow
def test_upstream_requires_python_spends_no_build_on_the_excluded_python(wave):
    lo, hi = wave["lo"].target, wave["hi"].target
    assert builds(wave, "uponly") == [(hi, "success")]
    c = cells(wave, "uponly")
    assert c[lo]["status"] == "not-for-python" and c[hi]["status"] == "built"


@pytest.mark.slow
def test_pkg_info_requires_python_is_recorded_not_for_python_and_not_retried(wave):
    lo, hi = wave["lo"].target, wave["hi"].target
    assert builds(wave, "pkgonly") == sorted([(lo, "not-for-python"), (hi, "success")])
    assert query(wave["dsn"], "SELECT count(*) FROM queue")[0][0] == 0
    c = cells(wave, "pkgonly")
    assert c[lo]["status"] == "not-for-python" and c[lo]["build"]["log"]
    log = (wave["farm"].www / "project" / "pkgonly" / c[lo]["build"]["log"]).read_text()
    assert "PKG-INFO says Requires-Python" in log
    page = (wave["farm"].www / "project" / "pkgonly" / "index.html").read_text()
    assert f"not for Python {wave['lo'].version[0]}.{wave['lo'].version[1]}" in page


@pytest.mark.slow
def test_nothing_failed_and_status_counts_it_apart(wave):
    assert builds(wave, "anyver") == [(wave["lo"].target, "success")]
    assert query(wave["dsn"], "SELECT count(*) FROM builds WHERE status <> 'success'"
                 " AND status <> 'not-for-python'")[0][0] == 0
    assert "1 not-for-python" in wave["status"]
    assert f"not for their Python (Requires-Python, not queued): {wave['lo'].target} 1 " \
        "versions" in wave["status"]


def test_pkginfo_of_a_damaged_zip_member_is_none(tmp_path):
    meta = b"Metadata-Version: 2.1\nRequires-Python: >=3.99\n" * 50
    path = tmp_path / "d-1.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d-1/PKG-INFO", meta)
    data = bytearray(path.read_bytes())
    start = data.index(b"d-1/PKG-INFO") + len("d-1/PKG-INFO")
    data[start + 5:start + 25] = b"\xff" * 20       # inside the compressed stream
    path.write_bytes(bytes(data))
    assert pkginfo.requires_python(path) is None


def test_pkginfo_is_looked_for_in_a_bounded_part_of_the_stream(tmp_path, monkeypatch):
    meta = b"Metadata-Version: 2.1\nRequires-Python: >=3.99\n"
    path = _tar(tmp_path / "e-1.tar.gz", {"e-1/big.bin": b"\0" * 200_000,
                                          "e-1/PKG-INFO": meta})
    assert pkginfo.requires_python(path) == ">=3.99"
    monkeypatch.setattr(pkginfo, "MAX_SCAN", 100_000)   # a bomb before it: not read
    assert pkginfo.requires_python(path) is None
