"""The whole pipeline on one machine, as a user runs it: sync from a local
upstream index, build with two real interpreters, write the index, then
install with real pip (and uv) from it."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers.farm import Farm, clean_env, query, sdist, show_failures
from helpers.fixture_packages import abi3_extension, c_extension, platform_data, pure
from helpers.upstream_server import FakeUpstream

from piwheels_build.build.interpreters import discover
from piwheels_build.serve import make_server

pytestmark = pytest.mark.slow

FIXTURE_WHEELS = os.environ.get("PIWHEELS_FIXTURE_WHEELS", "")


@pytest.fixture(scope="module")
def pythons():
    found = [i for i in discover((3, 9))]
    if len(found) < 2:
        pytest.skip("needs two CPython interpreters (3.9+) with pip on this machine")
    return found[-2:]


@pytest.fixture(scope="module")
def setuptools_wheel() -> Path:
    wheels = sorted(Path(FIXTURE_WHEELS).glob("setuptools-*.whl")) if FIXTURE_WHEELS else []
    if not wheels or not list(Path(FIXTURE_WHEELS).glob("wheel-*.whl")):
        pytest.fail("no setuptools wheel for the test upstream: run the tests with "
                    "scripts/test.sh, which fetches it into .cache/fixture-wheels")
    return wheels[-1]


@pytest.fixture(scope="module")
def wave(tmp_path_factory, pg_cluster, pythons, setuptools_wheel):
    """One build wave over the fixture packages, shared by the checks below."""
    tmp = tmp_path_factory.mktemp("e2e")
    pg_cluster.createdb("e2e")
    dsn = pg_cluster.dsn("e2e")
    up = FakeUpstream()
    up.start()
    for whl in sorted(setuptools_wheel.parent.glob("*.whl")):  # setuptools, wheel
        up.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
    for name, version, files in [
        ("purepkg", "1.0", pure("purepkg", "purepkg")),
        ("purepkg", "2.0rc1", pure("purepkg", "purepkg")),
        ("Foo_Bar.baz", "1.0", pure("Foo_Bar.baz", "foo_bar_baz")),
        ("cext", "1.0", c_extension("cext")),
        ("limited", "1.0", abi3_extension("limited")),
        ("platdata", "1.0", platform_data("platdata")),
        ("yankme", "1.0", pure("yankme", "yankme")),
        ("yankme", "1.1", pure("yankme", "yankme")),
        ("gone", "1.0", pure("gone", "gone")),
    ]:
        fn, data = sdist(name, version, files)
        up.add_file(name, fn, data)
    up.yank(("yankme", "1.1"))
    up.add_file("binonly", "binonly-1.0-py3-none-any.whl", b"not built by us")
    farm = Farm(tmp, dsn, up.url, pythons)
    farm.run("initdb")
    farm.run("sync")
    build = farm.run("build")
    show_failures(dsn)
    farm.run("index", "--full")
    server = make_server(farm.www, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    index_url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    yield {"farm": farm, "dsn": dsn, "up": up, "index": index_url, "tmp": tmp,
           "build": build, "pythons": pythons}
    server.shutdown()
    up.stop()


def test_pure_wheel_built_once(wave):
    rows = query(wave["dsn"], "SELECT f.filename, b.target FROM files f JOIN builds b "
                  "USING (build_id) WHERE f.package = 'purepkg' AND f.version = '1.0'")
    assert len(rows) == 1 and rows[0][0] == "purepkg-1.0-py3-none-any.whl"
    builds = query(wave["dsn"], "SELECT count(*) FROM builds WHERE package = 'purepkg' "
                    "AND version = '1.0'")
    assert builds[0][0] == 1


def test_c_extension_built_for_both_abis(wave):
    abis = {p.abi_tag for p in wave["pythons"]}
    rows = query(wave["dsn"], "SELECT abi_tag FROM files WHERE package = 'cext'")
    assert {r[0] for r in rows} == abis
    built = query(wave["dsn"], "SELECT target FROM builds WHERE package = 'cext'"
                  " AND status = 'success'")
    assert sorted(r[0] for r in built) == sorted(p.target for p in wave["pythons"])
    for abi in abis:
        wheel = wave["farm"].www / "simple" / "cext" / \
            f"cext-1.0-{abi}-{abi}-{wave['pythons'][0].platform_tag}.whl"
        assert wheel.is_file() and Path(f"{wheel}.metadata").is_file()


def test_abi3_wheel_covers_newer_abi(wave):
    rows = query(wave["dsn"], "SELECT python_tag, abi_tag FROM files "
                  "WHERE package = 'limited' AND alias_of IS NULL")
    assert rows == [("cp39", "abi3")]
    assert query(wave["dsn"], "SELECT count(*) FROM builds WHERE package = 'limited'")[0][0] == 1


def test_skips_recorded(wave):
    rows = dict(query(wave["dsn"], "SELECT package || ' ' || version, skip_reason FROM versions"
                       " WHERE skip_reason IS NOT NULL"))
    assert rows == {"binonly 1.0": "binary-only", "yankme 1.1": "yanked",
                    "setuptools 84.2.1": "binary-only", "wheel 0.45.1": "binary-only"}


def test_requirements_recorded_as_dependencies(wave):
    rows = query(wave["dsn"], "SELECT DISTINCT tool, dependency FROM dependencies d "
                  "JOIN files f USING (filename) WHERE f.package = 'cext'")
    assert rows == [("pip", "six>=1.0")]


def test_build_requirements_fetched_once_per_interpreter(wave):
    """Builds of one interpreter asking for the same build requirements reuse the first
    fetch (the pip process it saves costs as much as building a small pure package)."""
    rows = query(wave["dsn"], "SELECT b.target, l.log FROM builds b JOIN build_logs l"
                 " USING (build_id) WHERE b.status = 'success' ORDER BY b.build_id")
    per_target: dict[str, list[str]] = {}
    for target, log in rows:
        per_target.setdefault(target, []).append(gzip.decompress(bytes(log)).decode())
    assert set(per_target) <= {p.target for p in wave["pythons"]}
    for target, logs in per_target.items():
        fetched = sum("== fetch build requirements" in t for t in logs)
        reused = sum("the wheels fetched for an earlier build, sha256 checked" in t
                     for t in logs)
        assert fetched >= 1 and fetched + reused == len(logs), target
    busiest = max(per_target.values(), key=len)
    assert len(busiest) >= 3
    assert sum("fetched for an earlier build" in t for t in busiest) >= 1


def test_platform_alias_published_with_same_hash(wave):
    """A platform wheel with no ELF file in it is also published as linux_armv6l (the
    farm's helper maps this machine's platform to armv6l): a symlink, same hash."""
    plat = wave["pythons"][0].platform_tag
    rows = query(wave["dsn"], "SELECT filename, alias_of, sha256 FROM files "
                  "WHERE package = 'platdata' ORDER BY filename")
    real = {f: h for f, a, h in rows if a is None}
    aliases = [(f, a, h) for f, a, h in rows if a is not None]
    assert len(real) == 2 and all(plat in f for f in real)
    assert len(aliases) == 2
    for alias, target, sha in aliases:
        assert alias == target.replace(plat, "linux_armv6l") and sha == real[target]
        link = wave["farm"].www / "simple" / "platdata" / alias
        assert link.is_symlink() and link.resolve().name == target
    index = json.loads((wave["farm"].www / "simple" / "platdata" / "index.json").read_text())
    listed = {f["filename"]: f["hashes"]["sha256"] for f in index["files"]}
    assert all(listed[a] == h for a, _, h in aliases)


def test_no_armv6l_alias_for_code_that_is_not_armv6(wave):
    """cext's extension is this machine's code, not ARMv6 code: no alias, and the
    build's log says why."""
    rows = query(wave["dsn"], "SELECT filename FROM files WHERE package = 'cext'"
                 " AND alias_of IS NOT NULL")
    assert rows == []
    assert not list((wave["farm"].www / "simple" / "cext").glob("*armv6l*"))
    logs = query(wave["dsn"], "SELECT l.log FROM builds b JOIN build_logs l USING (build_id)"
                 " WHERE b.package = 'cext' AND b.status = 'success'")
    assert len(logs) == 2
    for (log,) in logs:
        text = gzip.decompress(bytes(log)).decode()
        assert "linux_armv6l.whl: cext/_speed" in text
        assert "is not 32-bit ARM code, which an ARMv6 Raspberry Pi (Pi 1, Zero) cannot run" \
            in text
    # and its project page says so beside each wheel (files.alias_note, migration 0010)
    page = json.loads((wave["farm"].www / "project" / "cext" / "index.json").read_text())
    notes = [f["alias_note"] for v in page["versions"] for f in v["files"]]
    assert len(notes) == 2
    assert all(n.startswith("not published as ") and "cext/_speed" in n for n in notes), notes
    html = (wave["farm"].www / "project" / "cext" / "index.html").read_text()
    assert "not published as" in html and "ARMv6 Raspberry Pi" in html


def test_odd_name_normalized(wave):
    page = wave["farm"].www / "simple" / "foo-bar-baz" / "index.json"
    data = json.loads(page.read_text())
    assert [f["filename"] for f in data["files"]] == ["foo_bar_baz-1.0-py3-none-any.whl"]


def test_index_json_attributes(wave):
    data = json.loads((wave["farm"].www / "simple" / "cext" / "index.json").read_text())
    assert data["meta"]["api-version"].startswith("1.")
    assert data["versions"] == ["1.0"]
    for f in data["files"]:
        on_disk = wave["farm"].www / "simple" / "cext" / f["url"]
        assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == f["hashes"]["sha256"]
        assert f["requires-python"] == ">=3.8"
        assert f["size"] == on_disk.stat().st_size
        assert f["core-metadata"]["sha256"]


def _venv(python: str, where: Path) -> Path:
    subprocess.run([python, "-m", "venv", str(where)], check=True, capture_output=True,
                   env=clean_env())
    return where / "bin" / "python"


@pytest.mark.parametrize("which", [0, 1])
def test_pip_installs_from_the_farm(wave, which):
    interp = wave["pythons"][which]
    py = _venv(interp.path, wave["tmp"] / f"venv{which}")
    report = wave["tmp"] / f"report{which}.json"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-cache-dir", "--only-binary", ":all:",
         "--no-deps", "--index-url", wave["index"], "--report", str(report),
         "cext", "limited", "purepkg", "Foo_Bar.baz"],
        capture_output=True, text=True, env=clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    urls = [i["download_info"]["url"] for i in json.loads(report.read_text())["install"]]
    assert urls and all(u.startswith(wave["index"]) for u in urls)
    assert any(u.endswith("purepkg-1.0-py3-none-any.whl") for u in urls)  # not the rc
    out = subprocess.run([str(py), "-c", "import cext, limited, purepkg, foo_bar_baz;"
                          "print(cext.add(2, 3), limited.add(4, 5), purepkg.VALUE)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5", "9", "42"]


def test_debian_bookworm_pip_reads_the_json_index(wave, tmp_path):
    """pip 22.3-23.0 (bookworm's 23.0.1) crashes on a JSON "dist-info-metadata" (PEP 714)."""
    system = Path("/usr/bin/python3")
    probe = subprocess.run([str(system), "-m", "pip", "--version"], capture_output=True,
                           text=True, env=clean_env())
    if probe.returncode != 0:
        pytest.skip("no system pip on this machine")
    proc = subprocess.run(
        [str(system), "-m", "pip", "download", "--no-cache-dir", "--no-deps", "--only-binary",
         ":all:", "-d", str(tmp_path), "--index-url", wave["index"], "purepkg"],
        capture_output=True, text=True, env=clean_env())
    assert proc.returncode == 0, probe.stdout + proc.stdout + proc.stderr
    assert (tmp_path / "purepkg-1.0-py3-none-any.whl").exists()


def test_pip_pre_release_needs_pre(wave):
    py = _venv(wave["pythons"][0].path, wave["tmp"] / "venvpre")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-cache-dir", "--no-deps",
                    "--pre", "--index-url", wave["index"], "purepkg"], check=True,
                   env=clean_env(), capture_output=True)
    out = subprocess.run([str(py), "-m", "pip", "show", "purepkg"], capture_output=True,
                         text=True, env=clean_env())
    assert "Version: 2.0rc1" in out.stdout


def test_uv_installs_from_the_farm(wave):
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed")
    venv = wave["tmp"] / "uvvenv"
    env = clean_env(UV_CACHE_DIR=str(wave["tmp"] / "uvcache"))
    subprocess.run([uv, "venv", "-q", "--python", wave["pythons"][1].path, str(venv)],
                   check=True, env=env, capture_output=True)
    proc = subprocess.run([uv, "pip", "install", "--python", str(venv / "bin" / "python"),
                           "--no-deps", "--index-url", wave["index"], "cext", "limited"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import cext, limited; print(cext.add(1, 1) + limited.add(1, 1))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4"


def test_yank_and_delete_after_build_reach_the_index(wave):
    up, farm = wave["up"], wave["farm"]
    up.yank(("yankme", "1.0"), reason="broken")
    up.remove_file("gone-1.0.tar.gz")
    up.remove_project("gone")
    farm.run("sync")
    farm.run("index")
    data = json.loads((farm.www / "simple" / "yankme" / "index.json").read_text())
    assert [f["yanked"] for f in data["files"]] == ["broken"]
    assert 'data-yanked="broken"' in (farm.www / "simple" / "yankme" / "index.html").read_text()
    assert not (farm.www / "simple" / "gone" / "index.json").exists()
    root = json.loads((farm.www / "simple" / "index.json").read_text())
    assert "gone" not in {p["name"] for p in root["projects"]}
