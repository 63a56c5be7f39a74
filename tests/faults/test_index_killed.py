"""The index writer killed with SIGKILL while it writes: no half-written page is ever
served, the next run completes, and leftover temporary files are removed once they
are old enough that nobody can still be writing them (writer.TEMP_AGE)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from piwheels_build import fsutil
from piwheels_build.index import write_index, writer

PACKAGES = 3000


def populate(conn, n: int = PACKAGES) -> None:
    """n packages with one version, one successful build and one wheel each, all dirty."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor)"
                    " VALUES ('cp311-linux_armv7l', 'cp311', 'linux_armv7l', 3, 11)")
        cur.execute("INSERT INTO builders (name, abi_tag, platform_tag, target, python) VALUES"
                    " ('pi', 'cp311', 'linux_armv7l', 'cp311-linux_armv7l', '3.11.2')"
                    " RETURNING builder_id")
        builder = cur.fetchone()[0]
        cur.execute("INSERT INTO packages (package, display_name)"
                    " SELECT 'pkg' || i, 'Pkg' || i FROM generate_series(1, %s) i", (n,))
        cur.execute("INSERT INTO versions (package, version, released)"
                    " SELECT package, '1.0', now() FROM packages")
        cur.execute("INSERT INTO builds (package, version, target, builder_id, status,"
                    " duration, finished_at) SELECT package, '1.0', 'cp311-linux_armv7l', %s,"
                    " 'success', 3.5, now() FROM packages", (builder,))
        cur.execute("INSERT INTO files (filename, build_id, package, version, python_tag,"
                    " abi_tag, platform_tag, size, sha256)"
                    " SELECT package || '-1.0-cp311-cp311-linux_armv7l.whl', build_id, package,"
                    " version, 'cp311', 'cp311', 'linux_armv7l', 1234, repeat('ab', 32)"
                    " FROM builds")
        cur.execute("SELECT mark_dirty(array_agg(package)) FROM packages")
    conn.commit()


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.closed: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "link", "br", "hr", "img", "input"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack)
        self.stack.pop()
        self.closed.append(tag)


def check_complete(path: Path) -> None:
    """A page as a reader gets it: parseable to its very end."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        assert isinstance(json.loads(text), dict), path
        return
    parser = _Html()
    parser.feed(text)
    parser.close()
    assert parser.stack == [] and parser.closed[-1] == "html", path


def pages(www: Path) -> list[Path]:
    return [p for p in www.rglob("index.*") if not p.name.startswith(".")]


def temp_files(www: Path) -> list[Path]:
    return [p for p in www.rglob("*") if fsutil.TEMP_MARK in p.name and p.name.startswith(".")]


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old), follow_symlinks=False)


@pytest.fixture
def demo_dirs(tmp_path) -> Path:
    www = tmp_path / "www"
    for d in ("simple", "project", "logs", "static"):
        (www / d).mkdir(parents=True)
    return www


def test_index_writer_killed_mid_run(tmp_path, dsn, conn):
    populate(conn)
    www = tmp_path / "www"
    cfg = tmp_path / "piwheels.toml"
    cfg.write_text(f'database = "{dsn}"\nwww = "{www}"\n')
    cmd = [sys.executable, "-m", "piwheels_build.cli", "--config", str(cfg), "index", "--full"]

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Kill it once it is well into the first batch (it has 3 of 1,000 packages).
        project = www / "project"
        for _ in range(100_000):
            if proc.poll() is not None:
                break
            try:
                if sum(1 for _ in os.scandir(project)) >= 300:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.002)
        assert proc.poll() is None, "the run ended before it could be killed: " + \
            proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # What a reader sees now: every page there is complete.
    written = pages(www)
    assert written, "the killed run wrote nothing"
    for page in written:
        check_complete(page)
    assert not (www / "simple" / "index.html").exists()  # the root comes last
    left = temp_files(www)

    # A builder is uploading a wheel right now (a young temporary file: kept), and an
    # earlier crash left one long ago (removed).
    pkg = www / "simple" / "pkg7"
    pkg.mkdir(parents=True, exist_ok=True)
    uploading = fsutil.temp_name(pkg / "pkg7-1.0-cp311-cp311-linux_armv7l.whl")
    uploading.write_bytes(b"half a wheel")
    ancient = fsutil.temp_name(pkg / "pkg7-0.9-cp311-cp311-linux_armv7l.whl")
    ancient.write_bytes(b"a dead upload")
    age(ancient, writer.TEMP_AGE + 60)
    # The killed run's own leftovers are as young as the upload: they stay until they
    # are TEMP_AGE old. Time passes for them.
    for p in left:
        age(p, writer.TEMP_AGE + 60)

    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"{len(left) + 1:,} leftover temporary files removed" in out.stdout, out.stdout
    assert temp_files(www) == [uploading]
    assert sorted(p.name for p in (www / "simple").iterdir() if p.is_dir()) == \
        sorted(f"pkg{i}" for i in range(1, PACKAGES + 1))
    for page in pages(www):
        check_complete(page)
    assert len(pages(www)) == 4 * PACKAGES + 2 + 1  # simple, project; root; landing
    root = json.loads((www / "simple" / "index.json").read_text())
    assert len(root["projects"]) == PACKAGES


def test_incremental_runs_list_the_big_directories_at_most_every_interval(demo_dirs, conn):
    """www/ every run; simple/, project/, logs/ when the marker is TEMP_SWEEP_INTERVAL old."""
    www = demo_dirs
    old = [fsutil.temp_name(www / d / "index.html") for d in ("", "simple", "project", "logs")]
    for p in old:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("<html")
        age(p, writer.TEMP_AGE + 1)
    (www / writer.TEMP_SWEPT).touch()  # swept a moment ago
    summary = write_index(conn, www)
    assert summary.temp_removed == 1
    assert [p.exists() for p in old] == [False, True, True, True]
    age(www / writer.TEMP_SWEPT, writer.TEMP_SWEEP_INTERVAL + 1)
    assert write_index(conn, www).temp_removed == 3
    assert not any(p.exists() for p in old)
    assert not writer._older_than(www / writer.TEMP_SWEPT, writer.TEMP_SWEEP_INTERVAL)


def test_a_batch_sweeps_the_directories_of_its_packages(demo_dirs, conn):
    www = demo_dirs
    populate(conn, 3)
    mine = fsutil.temp_name(www / "project" / "pkg2" / "index.json")
    other = fsutil.temp_name(www / "project" / "pkg9" / "index.json")  # not in the batch
    young = fsutil.temp_name(www / "simple" / "pkg2" / "index.html")
    for p in (mine, other, young):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{")
    age(mine, writer.TEMP_AGE + 1)
    age(other, writer.TEMP_AGE + 1)
    (www / writer.TEMP_SWEPT).touch()
    assert write_index(conn, www).temp_removed == 1
    assert (mine.exists(), other.exists(), young.exists()) == (False, True, True)
    # a symlink's temporary name (fsutil.symlink_atomic) goes the same way, a directory never
    link = fsutil.temp_name(www / "simple" / "pkg2" / "x.whl")
    os.symlink("nowhere", link)
    age(link, writer.TEMP_AGE + 1)
    folder = fsutil.temp_name(www / "simple" / "pkg2" / "dir")
    folder.mkdir()
    age(folder, writer.TEMP_AGE + 1)
    with conn.cursor() as cur:
        cur.execute("SELECT mark_dirty(ARRAY['pkg2'])")
    conn.commit()
    assert write_index(conn, www).temp_removed == 1
    assert not os.path.lexists(link) and folder.is_dir()


