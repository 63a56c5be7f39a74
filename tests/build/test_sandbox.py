"""A wave over hostile packages: afterwards the builder's home, /tmp, the
store and the process table are inspected, and each build's recorded status
and log."""

from __future__ import annotations

import ast
import gzip
import hashlib
import os
import pwd
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import helpers.hostile_packages as hp
import pytest
from helpers.farm import Farm, query, sdist, show_failures
from helpers.upstream_server import FakeUpstream

from piwheels_build.build.interpreters import discover

pytestmark = pytest.mark.slow
FIXTURE_WHEELS = os.environ.get("PIWHEELS_FIXTURE_WHEELS", "")


def _fingerprint(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, pg_cluster):
    found = discover((3, 9))
    wheels = sorted(Path(FIXTURE_WHEELS).glob("*.whl")) if FIXTURE_WHEELS else []
    if not found or not wheels:
        pytest.fail("needs a CPython 3.9+ with pip and the fixture wheels (scripts/test.sh)")
    tmp = tmp_path_factory.mktemp("hostile")
    marker = uuid.uuid4().hex[:12]
    sleep_arg = str(900000 + int(marker[:5], 16) % 99999)
    pg_cluster.createdb("hostile")
    dsn = pg_cluster.dsn("hostile")
    up = FakeUpstream()
    up.start()
    for whl in wheels:
        up.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
    farm = Farm(tmp, dsn, up.url, found[-1:], build_timeout=300, build_memory="1G",
                build_disk="150M", log_limit="64K", sandbox="auto")
    probe = {"config": str(farm.config), "store": str(farm.www),
             "database": str(pg_cluster.run), "root": "/root"}
    packages = [hp.home_writer(probe), hp.home_checker(), hp.git_cloner(up.url + "repo.git"),
                hp.undeclared_import(), hp.daemon(), hp.memory_hog(), hp.loud(),
                hp.impostor(), hp.disk_filler(),
                {"name": "aftermath", "version": "1.0", "files": {"aftermath/__init__.py": ""}}]
    now = datetime.now(UTC)
    for i, pkg in enumerate(packages):  # newest first: built in this order
        files = {path: text.replace("MARKER-SLEEP", sleep_arg).replace("MARKER", marker)
                 for path, text in pkg["files"].items()}
        fn, data = sdist(pkg["name"], pkg["version"], files)
        up.add_file(pkg["name"], fn, data, upload_time=now - timedelta(hours=i))
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    before = {"bashrc": _fingerprint(home / ".bashrc"), "profile": _fingerprint(home / ".profile")}
    farm.run("initdb")
    farm.run("sync")
    farm.run("build")
    show_failures(dsn)
    statuses = dict(query(dsn, "SELECT package, status FROM builds"))
    yield {"farm": farm, "dsn": dsn, "marker": marker, "sleep": sleep_arg, "home": home,
           "before": before, "statuses": statuses, "tmp": tmp}
    up.stop()


def _log(dsn: str, package: str) -> tuple[str, int, bool]:
    log, size, truncated = query(dsn, "SELECT l.log, l.size, l.truncated FROM build_logs l "
                                 "JOIN builds b USING (build_id) WHERE b.package = %s",
                                 package)[0]
    return gzip.decompress(bytes(log)).decode(errors="replace"), size, truncated


def test_home_and_bashrc_of_the_builder_untouched(hostile):
    home, marker = hostile["home"], hostile["marker"]
    assert hostile["statuses"]["homewriter"] == "success"
    assert not (home / f".hostile-{marker}").exists()
    assert _fingerprint(home / ".bashrc") == hostile["before"]["bashrc"]
    assert _fingerprint(home / ".profile") == hostile["before"]["profile"]


def test_next_build_sees_a_clean_home_and_tmp(hostile):
    assert hostile["statuses"]["homechecker"] == "success"
    assert not Path(f"/tmp/hostile-{hostile['marker']}").exists()


def test_store_database_and_config_invisible(hostile):
    farm = hostile["farm"]
    wheel = farm.www / "simple" / "homewriter" / "homewriter-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        seen = ast.literal_eval(zf.read("homewriter/__init__.py").decode().split("=", 1)[1])
    lines = dict(line.split(": ", 1) for line in seen if ": " in line)
    for what in ("config", "store", "database"):   # empty, or not reachable at all
        assert lines[what] in ("read ''", "listed []", "denied Permission denied"), what
    assert lines["env"] == "[]"                      # no PG*, PIWHEELS*, ambient pip vars
    assert not [line for line in seen if line.startswith("wrote /srv")]  # store-like paths
    assert [line for line in seen if line.startswith("write /srv")]     # ... were refused
    if os.getuid() == 0:
        assert lines["uid"] == str(pwd.getpwnam("piwheels-build").pw_uid)
    assert not list(farm.www.rglob(f"hostile-{hostile['marker']}"))


def test_git_clone_and_network_fail(hostile):
    assert hostile["statuses"]["gitcloner"] == "failed"
    text, _, _ = _log(hostile["dsn"], "gitcloner")
    assert "NETWORK REACHABLE" not in text and "network:" in text


def test_undeclared_import_is_a_missing_build_dependency(hostile):
    assert hostile["statuses"]["needsnumpy"] == "missing-build-dependency"
    assert "No module named 'numpy'" in _log(hostile["dsn"], "needsnumpy")[0]


def test_hang_killed_at_the_timeout(tmp_path, pg_cluster):
    found = discover((3, 9))
    wheels = sorted(Path(FIXTURE_WHEELS).glob("*.whl")) if FIXTURE_WHEELS else []
    pg_cluster.createdb("hang")
    dsn = pg_cluster.dsn("hang")
    with FakeUpstream() as up:
        for whl in wheels:
            up.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
        pkg = hp.hang()
        up.add_file("hangs", *sdist("hangs", "1.0", pkg["files"]))
        farm = Farm(tmp_path, dsn, up.url, found[-1:], build_timeout=15)
        for step in (("initdb",), ("sync",), ("build",)):
            farm.run(*step)
    status, duration = query(dsn, "SELECT status, duration FROM builds")[0]
    assert status == "timeout" and duration >= 15  # no upper bound: machines are shared
    assert "killed at the build timeout" in _log(dsn, "hangs")[0]


def test_daemon_dead_after_the_build(hostile):
    assert hostile["statuses"]["daemonizes"] == "success"
    assert _processes_with(f"sleep\0{hostile['sleep']}") == []


def test_memory_hog_stopped_at_the_cap(hostile):
    assert hostile["statuses"]["memhog"] == "out-of-memory"
    assert hostile["statuses"]["aftermath"] == "success"   # the machine carried on


def test_huge_output_capped_head_and_tail(hostile):
    assert hostile["statuses"]["loud"] == "success"
    text, size, truncated = _log(hostile["dsn"], "loud")
    assert truncated and size > 12_000_000
    assert len(text.encode()) < 64 * 1024 + 4096 and "bytes of output cut by piwheels" in text


def test_wheel_named_for_another_package_rejected(hostile):
    assert hostile["statuses"]["impostor"] == "failed"
    assert not list(hostile["farm"].www.rglob("numpy-99.0*"))
    text, _, _ = _log(hostile["dsn"], "impostor")
    assert "wheel rejected" in text and "not impostor" in text


def test_disk_filler_stopped(hostile):
    assert hostile["statuses"]["diskfiller"] == "failed"
    assert not list(Path("/tmp").glob("piwheels-build-*/build/filler.bin"))
