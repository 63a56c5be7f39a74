"""Builders that die or race: a builder killed with SIGKILL mid-build (its lease
expires, another builder takes the build, nothing partial is published, none of its
sandbox processes survives) and two builders racing for one build (one wins)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg2
import pytest
from helpers.faults import slow_pure, wait_for
from helpers.fixture_packages import pure
from helpers.invariants import assert_farm_consistent

from piwheels_build import queue

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> dict[int, str]:
    """Every live process under ``pid``: its pid and command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = (Path(f"/proc/{child}/cmdline").read_bytes()
                                .replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cgroups(pids) -> set[Path]:
    groups = set()
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "piwheels" in path:
                base = Path("/sys/fs/cgroup") / (controllers.split(",")[0] if controllers else "")
                groups.add(base / path.lstrip("/"))
    return groups


def test_builder_killed_mid_build(make_farm):
    farm = make_farm(lease_seconds=6)
    farm.add("slowpkg", "1.0", slow_pure("slowpkg", 8))
    farm.run("sync")
    dead = farm.start("build", "--forever", builder="dies")
    # Mid-build: pip is running the package's build backend in the sandbox.
    wait_for("the build backend to run", lambda: any(
        "_in_process" in cmd for cmd in _descendants(dead.pid).values()))
    sandbox = _descendants(dead.pid)
    groups = _cgroups(sandbox)
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    wait_for("the dead builder's sandbox processes to end",
             lambda: not any(_alive(p) for p in sandbox))
    for group in groups:  # its cgroup (where one was made) is empty
        procs = group / "cgroup.procs"
        assert not procs.exists() or procs.read_text().split() == [], group
    assert farm.query("SELECT status FROM builds") == [("building",)]

    taker = farm.start("build", "--forever", builder="takes")
    wait_for("another builder to build it", lambda: farm.query(
        "SELECT 1 FROM builds WHERE status = 'success'"))
    assert farm.stop(taker) == 0, farm.output(taker)
    rows = farm.query("SELECT b.status, r.name FROM builds b JOIN builders r USING (builder_id)"
                      " ORDER BY b.build_id")
    assert rows == [("abandoned", "dies"), ("success", "takes")]
    farm.run("index")
    assert_farm_consistent(farm.dsn, farm.www, {("slowpkg", "1.0", farm.python.target)})


def test_two_builders_race_for_one_build(make_farm):
    farm = make_farm()
    farm.add("racer", "1.0", pure("racer", "racer"))
    farm.run("sync")
    py = farm.python
    conns = [psycopg2.connect(farm.dsn) for _ in range(2)]
    try:
        for c in conns:
            c.autocommit = True
        ids = [queue.register_builder(c, f"r{i}", py.abi_tag, py.platform_tag, "3", "")
               for i, c in enumerate(conns)]
        with conns[1].cursor() as cur:  # a wait instead of a skip fails, never hangs
            cur.execute("SET statement_timeout = '30s'")
        # r0 holds its claim uncommitted: r1's claim skips the locked row (SKIP LOCKED)
        # and gets nothing at once instead of waiting or taking the same build.
        conns[0].autocommit = False
        first = queue.claim_build(conns[0], ids[0], 60)
        assert first is not None and first.package == "racer"
        assert queue.claim_build(conns[1], ids[1], 60) is None
        conns[0].rollback()
    finally:
        for c in conns:
            c.close()

    # Two real builders started together: one builds it, the other finds nothing.
    procs = [subprocess.Popen(farm._argv(f"r{i}", ("build",)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted("build: 1 builds" in o for o in outs) == [False, True], outs
    farm.run("index")
    assert_farm_consistent(farm.dsn, farm.www, {("racer", "1.0", py.target)})
    assert farm.query("SELECT count(*) FROM builds") == [(1,)]
