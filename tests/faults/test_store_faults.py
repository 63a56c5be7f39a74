"""The store under faults, injected into running builders (real `piwheels build`
processes, real pip and interpreters, PostgreSQL): the store's disk full during an
upload (a real tmpfs), its sshfs mount gone during an upload (a real sshfs whose
connection is cut), a builder killed with SIGKILL mid-upload, and free space
running low (the master warns; a builder keeps off the last of it).

Afterwards: no build lost or recorded twice, no half-written or mismatched file
visible, the index links only verified files, and the farm resumes by itself once
the fault is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers.farm import clean_env
from helpers.faults import DEADLINE, wait_for
from helpers.fixture_packages import pure
from helpers.invariants import assert_farm_consistent
from helpers.store_faults import (
    SshfsStore,
    age,
    alive,
    assert_retried_consistent,
    big_pure,
    descendants,
    grow,
    growing_upload,
    statuses,
    temp_files,
    tmpfs,
)

from piwheels_build import diskspace
from piwheels_build.errors import StoreError

pytestmark = pytest.mark.slow

WHEEL = 4 << 20     # random bytes in the big wheel: ~4 MB stored, incompressible
SLOW = 384 << 10    # bytes per second through the slowed sshfs: an upload of ~11 s
TWO_DAYS = 2 * 86400


def builder_config(farm, name: str, **overrides) -> None:
    """A builder's own configuration file (``farm.start(..., builder=name)`` uses it)."""
    values = {**farm.settings, "builder_name": name, **overrides}
    (farm.tmp / f"{name}.toml").write_text(
        "".join(f"{k} = {json.dumps(str(v) if isinstance(v, Path) else v)}\n"
                for k, v in values.items()))


def build_logs(farm, status: str) -> list[str]:
    ids = [i for (i,) in farm.query(
        "SELECT build_id FROM builds WHERE status = %s ORDER BY build_id", status)]
    return [farm.run("log", str(i)).stdout for i in ids]


def linked(farm, package: str) -> list[str]:
    page = farm.www / "simple" / package / "index.json"
    return [f["filename"] for f in json.loads(page.read_text())["files"]] \
        if page.exists() else []


@pytest.fixture
def sshfs(tmp_path):
    """``sshfs(remote)``: a real sshfs mount of ``remote`` for the builders."""
    mounts: list[SshfsStore] = []

    def mount(remote: Path) -> SshfsStore:
        store = SshfsStore(remote, tmp_path / "builder-www", tmp_path / "relay")
        mounts.append(store)
        return store.mount()

    yield mount
    for store in mounts:
        store.unmount()


# -- the disk full --------------------------------------------------------------------


@pytest.mark.parametrize("via", ["local", "sshfs"])
def test_store_disk_full_during_upload(make_farm, sshfs, via):
    farm = make_farm(retry_delay=1, retry_limit=20, store_free_floor=0)
    farm.add("bigpkg", "1.0", big_pure("bigpkg", WHEEL))
    farm.run("sync")
    farm.www.mkdir(parents=True, exist_ok=True)
    www = farm.www if via == "local" else sshfs(farm.www).mountpoint
    builder_config(farm, "full", www=www)
    pkgdir = farm.www / "simple" / "bigpkg"
    with tmpfs(pkgdir, "1m"):  # a wheel of 4 MB, 1 MB free: it fills up mid-upload
        builder = farm.start("build", "--forever", builder="full")
        wait_for("the failed upload to be recorded",
                 lambda: "infrastructure" in statuses(farm.dsn))
        assert farm.stop(builder) == 0, farm.output(builder)
        # Nothing of it stays: no wheel, no metadata, no hidden temporary file.
        assert os.listdir(pkgdir) == []
    out = farm.output(builder)
    assert "Traceback" not in out, out
    assert "bigpkg 1.0" in out and "infrastructure" in out, out
    log = build_logs(farm, "infrastructure")[0]
    why = "No space left on device" if via == "local" else "Input/output error"
    assert "store failed: store: cannot write" in log and why in log, log
    farm.run("index")
    assert linked(farm, "bigpkg") == []

    # The disk has room again: the retry (after retry_delay) stores and records it.
    again = farm.start("build", "--forever", builder="full")
    wait_for("the retry to succeed", lambda: "success" in statuses(farm.dsn))
    assert farm.stop(again) == 0, farm.output(again)
    farm.run("index")
    assert_retried_consistent(farm.dsn, farm.www, {("bigpkg", "1.0", farm.python.target)})


# -- the mount gone -------------------------------------------------------------------


def upload_under_way(make_farm, sshfs):
    """A builder storing bigpkg's wheel through a slowed sshfs mount, caught mid-upload:
    (farm, store, builder process, the package's directory on the master)."""
    farm = make_farm(retry_delay=1, retry_limit=20)
    farm.add("bigpkg", "1.0", big_pure("bigpkg", WHEEL))
    farm.run("sync")
    farm.www.mkdir(parents=True, exist_ok=True)
    store = sshfs(farm.www)
    store.rate(SLOW)
    builder_config(farm, "far", www=store.mountpoint)
    builder = farm.start("build", "--forever", builder="far")
    pkgdir = farm.www / "simple" / "bigpkg"
    wait_for("the upload to be under way", lambda: growing_upload(pkgdir, SLOW))
    return farm, store, builder, pkgdir


def test_store_mount_gone_during_upload(make_farm, sshfs):
    farm, store, builder, pkgdir = upload_under_way(make_farm, sshfs)
    store.cut()  # the master unreachable: the connection cut, reconnections refused
    wait_for("the failed upload to be recorded",
             lambda: "infrastructure" in statuses(farm.dsn))
    # The builder then claims nothing while the store does not answer: one failure
    # per outage, not one per queued build (each would spend its retries).
    wait_for("the builder to wait for the store",
             lambda: "claiming no build until it does" in farm.output(builder))
    assert statuses(farm.dsn) == ["infrastructure"]
    log = build_logs(farm, "infrastructure")[0]
    assert "store failed: store: cannot write" in log and "Input/output error" in log, log
    # Nothing published: no wheel under its name; what reached the master is hidden.
    assert list(pkgdir.glob("*.whl")) == []
    assert all(p.name.startswith(".") for p in temp_files(pkgdir))
    farm.run("index")
    assert linked(farm, "bigpkg") == []

    store.restore()  # reachable again: sshfs reconnects, the retry stores it
    store.rate(0)
    wait_for("the retry to succeed", lambda: "success" in statuses(farm.dsn))
    assert farm.stop(builder) == 0, farm.output(builder)
    out = farm.output(builder)
    assert "Traceback" not in out, out
    assert out.count("claiming no build until it does") == 1, out
    assert out.count("store: usable again after") == 1, out
    farm.run("index")
    # The cut upload's hidden file (its unlink failed with the mount) is swept by age.
    for leftover in temp_files(farm.www):
        age(leftover, TWO_DAYS)
    farm.run("index", "--full")
    assert_retried_consistent(farm.dsn, farm.www, {("bigpkg", "1.0", farm.python.target)})


def test_store_mount_reconnects_under_an_upload(make_farm, sshfs):
    """The connection drops and sshfs reconnects at once (its ``reconnect``): the
    write in flight fails (its handle belonged to the old connection), the hidden
    file is removed through the new one, the retry succeeds."""
    farm, store, builder, pkgdir = upload_under_way(make_farm, sshfs)
    store.cut()
    store.restore()
    wait_for("the failed upload to be recorded",
             lambda: "infrastructure" in statuses(farm.dsn))
    assert list(pkgdir.glob("*.whl")) == [] and temp_files(pkgdir) == []
    store.rate(0)
    wait_for("the retry to succeed", lambda: "success" in statuses(farm.dsn))
    assert farm.stop(builder) == 0, farm.output(builder)
    farm.run("index")
    assert_retried_consistent(farm.dsn, farm.www, {("bigpkg", "1.0", farm.python.target)})


# -- a builder killed mid-upload ------------------------------------------------------


def test_builder_killed_mid_upload(make_farm, sshfs):
    farm = make_farm(lease_seconds=6)
    farm.add("bigpkg", "1.0", big_pure("bigpkg", WHEEL))
    farm.run("sync")
    farm.www.mkdir(parents=True, exist_ok=True)
    store = sshfs(farm.www)
    store.rate(SLOW)
    builder_config(farm, "dies", www=store.mountpoint)
    builder_config(farm, "takes", www=store.mountpoint)
    dead = farm.start("build", "--forever", builder="dies")
    pkgdir = farm.www / "simple" / "bigpkg"
    partial = wait_for("the upload to be under way", lambda: growing_upload(pkgdir, SLOW))
    family = descendants(dead.pid)
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    wait_for("the dead builder's processes to end", lambda: not any(map(alive, family)))
    assert farm.query("SELECT status FROM builds") == [("building",)]
    assert list(pkgdir.glob("*.whl")) == []  # nothing under the wheel's own name

    store.rate(0)
    taker = farm.start("build", "--forever", builder="takes")
    wait_for("another builder to build it", lambda: "success" in statuses(farm.dsn))
    assert farm.stop(taker) == 0, farm.output(taker)
    rows = farm.query("SELECT b.status, r.name FROM builds b JOIN builders r USING (builder_id)"
                      " ORDER BY b.build_id")
    assert rows == [("abandoned", "dies"), ("success", "takes")]
    # The dead builder's partial upload stays hidden under its temporary name (never
    # linked, never served) until the index writer's sweep finds it a day old.
    assert temp_files(farm.www) == [partial]
    farm.run("index")
    assert partial.exists()  # young: it might be an upload still going on
    age(partial, TWO_DAYS)
    farm.run("index", "--full")
    assert not partial.exists()
    assert_farm_consistent(farm.dsn, farm.www, {("bigpkg", "1.0", farm.python.target)})


# -- free space running low -----------------------------------------------------------


def test_low_free_space_warns_and_the_floor_refuses(make_farm):
    farm = make_farm(store_free_warning="64M", store_free_floor="2M", retry_delay=1,
                     retry_limit=20)
    farm.add("bigpkg", "1.0", big_pure("bigpkg", WHEEL))
    farm.run("sync")
    with tmpfs(farm.www, "5m"):  # 5 MB: the 4 MB wheel would fit, but not above the floor
        index = farm.run("index")
        warnings = [line for line in index.stderr.splitlines() if "store_free_warning" in line]
        assert len(warnings) == 1 and "free of" in warnings[0], index.stderr
        assert "Traceback" not in index.stderr
        status = farm.run("status").stdout
        assert "\nstore:    " in status and "warning:  store: only" in status, status
        state = json.loads(farm.run("status", "--json").stdout)["store"]
        assert state["free_bytes"] <= 5 << 20 and state["warning_bytes"] == 64 << 20
        assert "store_free_warning" in state["warning"]

        built = farm.run("build")
        assert "infrastructure" in built.stdout, built.stdout
        log = build_logs(farm, "infrastructure")[0]
        assert "would leave less than store_free_floor" in log, log
        assert not (farm.www / "simple" / "bigpkg").exists() or \
            os.listdir(farm.www / "simple" / "bigpkg") == []  # not a byte written

        # Below the floor before any claim: a one-shot run stops in one line, claims nothing.
        builder_config(farm, "floor", store_free_floor="8M")
        proc = subprocess.run(farm._argv("floor", ("build",)), capture_output=True, text=True,
                              timeout=DEADLINE, env=clean_env())
        assert proc.returncode == 2, proc
        assert proc.stderr.strip().endswith(
            "below store_free_floor (8.0 MiB); stopped before claiming another build"), proc
        errors = [line for line in proc.stderr.splitlines() if line.startswith("piwheels:")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert statuses(farm.dsn) == ["infrastructure"]
    # Room again: no warning, and the retry is stored.
    index = farm.run("index", "--full")
    assert "store_free_warning" not in index.stderr, index.stderr
    assert "warning:" not in farm.run("status").stdout
    builder = farm.start("build", "--forever")
    wait_for("the retry to succeed", lambda: "success" in statuses(farm.dsn))
    assert farm.stop(builder) == 0, farm.output(builder)
    farm.run("index")
    assert_retried_consistent(farm.dsn, farm.www, {("bigpkg", "1.0", farm.python.target)})


def test_index_watch_warns_on_each_run_while_space_is_low(make_farm):
    farm = make_farm(store_free_warning="64M", stats_interval=1, root_interval=1)
    farm.add("early", "1.0", pure("early", "early"))
    farm.run("sync")
    with tmpfs(farm.www, "5m"):
        watch = farm.start("index", "--watch", "--interval", "0.2")
        try:
            # A run each second (stats_interval): a warning line each run.
            wait_for("two runs' warnings",
                     lambda: farm.output(watch).count("below store_free_warning") >= 2)
            grow(farm.www, "128m")  # room again: the runs from now on say nothing
            before = farm.output(watch)
            for name in ("late1", "late2"):
                farm.add(name, "1.0", pure(name, name))
                farm.run("sync", name)
                wait_for(f"{name}'s page", lambda n=name: (
                    farm.www / "project" / n / "index.html").exists())
                if name == "late1":  # every run after this one began after the grow
                    before = farm.output(watch)
            assert farm.stop(watch) == 0
        finally:
            farm.stop(watch)
    out = farm.output(watch)
    assert "Traceback" not in out, out
    assert "below store_free_warning" not in out[len(before):], out
    warnings = [line for line in out.splitlines() if "store_free_warning" in line]
    assert all("WARNING" in line and line.count("store: only") == 1 for line in warnings)


def test_index_writer_on_a_full_disk(make_farm):
    """The master's disk full under the index writer: one line, exit 2, every page
    present whole, no temporary file; once there is room the next run writes the rest."""
    farm = make_farm()
    names = [f"pkg{i}" for i in range(30)]
    for name in names:
        farm.add(name, "1.0", pure(name, name))
    farm.run("sync")
    with tmpfs(farm.www, "16k"):
        proc = subprocess.run(farm._argv("b1", ("index",)), capture_output=True, text=True,
                              timeout=DEADLINE, env=clean_env())
        assert proc.returncode == 2, proc
        assert "Traceback" not in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("piwheels:")]
        assert len(errors) == 1 and "No space left on device" in errors[0], proc.stderr
        pages = sorted(farm.www.rglob("index.html"))
        assert all(p.read_text().rstrip().endswith("</html>") for p in pages)
        assert temp_files(farm.www) == []
        assert len(list((farm.www / "project").glob("*/index.html"))) < len(names)

        grow(farm.www, "4m")
        farm.run("index")
        for name in names:
            page = (farm.www / "project" / name / "index.html").read_text()
            assert name in page and page.rstrip().endswith("</html>")
        assert temp_files(farm.www) == []
        assert farm.query("SELECT count(*) FROM index_dirty") == [(0,)]


def test_check_room_and_warning_on_a_real_small_disk(tmp_path):
    """diskspace against a real tmpfs: the floor counts the file to be written, 0
    turns each check off, and a store that cannot be asked is reported."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        (disk / "simple").mkdir()
        diskspace.check_room(disk / "simple" / "new-package", 1 << 20, 2 << 20)
        with pytest.raises(StoreError, match="would leave less than store_free_floor"):
            diskspace.check_room(disk / "simple", 3 << 20, 2 << 20)
        diskspace.check_room(disk / "simple", 3 << 20, 0)
        assert diskspace.low_space_warning(disk, 1 << 20) is None
        line = diskspace.low_space_warning(disk, 8 << 20)
        assert line.startswith("store: only ") and "free of 4.0 MiB on " in line
        assert "\n" not in line
        assert diskspace.low_space_warning(disk, 0) is None


def test_free_space_is_the_masters_through_sshfs(tmp_path, sshfs):
    """On a fleet a builder's floor is checked through its sshfs mount: statvfs there is
    the master's disk (sftp's statvfs extension), not the builder's."""
    master = tmp_path / "master-www"
    with tmpfs(master / "simple", "3m"):
        store = sshfs(master)
        seen = diskspace.space(store.mountpoint / "simple" / "pkg")
        assert seen.total == 3 << 20 and seen.free <= 3 << 20
        with pytest.raises(StoreError, match="store_free_floor"):
            diskspace.check_room(store.mountpoint / "simple", 2 << 20, 2 << 20)
        diskspace.check_room(store.mountpoint / "simple", 512 << 10, 2 << 20)
