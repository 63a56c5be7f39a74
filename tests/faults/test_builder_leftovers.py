"""A builder killed with SIGKILL mid-build leaves its build directory, its
requirements cache and its cgroups; the next builder to start removes them (and
only them: a live builder's are kept), so nothing piles up after several crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers.farm import Farm, clean_env, sdist
from helpers.upstream_server import FakeUpstream

from piwheels_build.build import sandbox
from piwheels_build.build.interpreters import discover

pytestmark = pytest.mark.slow
FIXTURE_WHEELS = os.environ.get("PIWHEELS_FIXTURE_WHEELS", "")
CRASHES = 3

SLEEPER = """\
import os, time
from setuptools import setup
open(os.path.join(os.environ["TMPDIR"], "sleeping-MARKER"), "w").close()
time.sleep(900)
setup()
"""


def owned_dirs(workroot: Path) -> list[Path]:
    return sorted(p for p in workroot.iterdir() if p.name.startswith(sandbox.OWN_PREFIX))


def cgroups_of(pid: int) -> list[Path]:
    return [g for parent in sandbox._cgroup_parents() if parent.is_dir()
            for g in parent.iterdir() if g.name.startswith(f"run-{pid}-")]


def wait_for(what, proc) -> None:
    for _ in range(6000):
        if what():
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError("the build never started sleeping")


def test_killed_builders_leave_nothing_behind(tmp_path, pg_cluster):
    found = discover((3, 9))
    wheels = sorted(Path(FIXTURE_WHEELS).glob("*.whl")) if FIXTURE_WHEELS else []
    if not found or not wheels:
        pytest.fail("needs a CPython 3.9+ with pip and the fixture wheels (scripts/test.sh)")
    marker = uuid.uuid4().hex[:12]
    pg_cluster.createdb(f"leftovers{marker}")
    dsn = pg_cluster.dsn(f"leftovers{marker}")
    workroot = tmp_path / "work"
    workroot.mkdir()
    with FakeUpstream() as up:
        for whl in wheels:
            up.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
        now = datetime.now(UTC)
        for i in range(CRASHES):
            fn, data = sdist(f"sleeper{i}", "1.0",
                             {"setup.py": SLEEPER.replace("MARKER", marker)})
            up.add_file(f"sleeper{i}", fn, data, upload_time=now - timedelta(hours=i))
        farm = Farm(tmp_path, dsn, up.url, found[-1:], sandbox="auto", lease_seconds=600)
        farm.run("initdb")
        farm.run("sync")
        env = clean_env(TMPDIR=str(workroot))
        cmd = [sys.executable, "-m", "piwheels_build.cli", "--config", str(farm.config),
               "build"]

        left_groups: list[Path] = []
        for _crash in range(CRASHES):
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            try:
                wait_for(lambda pid=proc.pid: any(workroot.glob(f"{sandbox.OWN_PREFIX}{pid}-*/"
                                                            f"piwheels-build-*/build/tmp/"
                                                            f"sleeping-{marker}")), proc)
                mine = owned_dirs(workroot)
                # the previous crash's directory is gone; only this builder's is there
                assert [p.name.split("-")[2] for p in mine] == [str(proc.pid)]
                assert list(mine[0].glob("piwheels-reqs-*")) and \
                    list(mine[0].glob("piwheels-build-*"))
                groups = cgroups_of(proc.pid)
                # a sweep meanwhile (as another builder starting) leaves the live one alone
                assert sandbox.remove_leftovers(workroot) == []
                assert owned_dirs(workroot) == mine and cgroups_of(proc.pid) == groups
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait()
            assert owned_dirs(workroot) == mine  # left behind by the crash
            assert all(g.exists() for g in groups)
            left_groups += groups
            dead = proc.pid

        # The next start removes the last crash's leftovers, finds all three builds leased,
        # and exits cleanly, removing its own directory.
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        assert f"removed {mine[0]}, left by a builder that was killed" in out.stdout + out.stderr
        assert owned_dirs(workroot) == []
        assert cgroups_of(dead) == [] and not any(g.exists() for g in left_groups)
        assert list(workroot.iterdir()) == []


def test_owner_checks(tmp_path):
    """PID and start time: a live process's names are its own; a dead PID's, or a reused
    PID's (another start time), are leftovers; other names are not ours at all."""
    me = sandbox.process_tag()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    names = {f"{sandbox.OWN_PREFIX}{me}-aa": False,
             f"{sandbox.OWN_PREFIX}{os.getpid()}-1-bb": True,      # PID reused since
             f"{sandbox.OWN_PREFIX}{child.pid}-{10**9}-cc": True,   # dead
             "piwheels-build-abc": False, "other": False}
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    removed = sandbox.remove_leftovers(tmp_path)
    assert sorted(removed) == sorted(str(tmp_path / n) for n, gone in names.items() if gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted(n for n, gone in names.items() if not gone)
