"""The static index writer, against a real database: pages, root, projects, logs, stats."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from piwheels_build.index import write_index, writer

SHA = {n: hashlib.sha256(n.encode()).hexdigest() for n in "abcdefghijklmnop"}
T311, T313 = "cp311-linux_armv7l", "cp313-linux_armv7l"   # the Farm's build targets


class Page(HTMLParser):
    """Anchors, meta tags and text of an HTML page, as the parser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str | None]] = []
        self.meta: list[dict[str, str | None]] = []
        self.texts: list[str] = []
        self.tags: list[str] = []
        self._in_a: dict | None = None
        self.doctype = None
        self.feed(text)
        self.close()

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "a":
            self._in_a = dict(attrs, _text="")
            self.anchors.append(self._in_a)
        elif tag == "meta":
            self.meta.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag == "a":
            self._in_a = None

    def handle_data(self, data):
        self.texts.append(data)
        if self._in_a is not None:
            self._in_a["_text"] += data


def parse(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


class Farm:
    """Rows put straight into the database, the way sync and finish_build leave them."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self.cur.execute("INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor)"
                         " VALUES (%s, 'cp311', 'linux_armv7l', 3, 11),"
                         " (%s, 'cp313', 'linux_armv7l', 3, 13)", (T311, T313))
        self.cur.execute("INSERT INTO builders (name, abi_tag, platform_tag, target, python)"
                         " VALUES ('pi-one', 'cp311', 'linux_armv7l', %s, '3.11.2')"
                         " RETURNING builder_id", (T311,))
        self.b311 = self.cur.fetchone()[0]
        self.cur.execute("INSERT INTO builders (name, abi_tag, platform_tag, target, python)"
                         " VALUES ('pi-two', 'cp313', 'linux_armv7l', %s, '3.13.1')"
                         " RETURNING builder_id", (T313,))
        self.b313 = self.cur.fetchone()[0]
        conn.commit()

    def package(self, name, display=None, deleted=False, skip=None):
        self.cur.execute("INSERT INTO packages (package, display_name, deleted, skip_reason)"
                         " VALUES (%s, %s, %s, %s)", (name, display or name, deleted, skip))
        return self

    def version(self, pkg, ver, yanked=False, reason=None, deleted=False, skip=None,
                released="2024-01-01T00:00:00Z"):
        self.cur.execute("INSERT INTO versions (package, version, yanked, yanked_reason,"
                         " deleted, skip_reason, released) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                         (pkg, ver, yanked, reason, deleted, skip, released))
        return self

    def build(self, pkg, ver, target=T311, status="success", duration=12.5, log=None):
        builder = {T311: self.b311, T313: self.b313}[target]
        finished = None if status == "building" else "now()"
        self.cur.execute(
            "INSERT INTO builds (package, version, target, builder_id, status, duration,"
            f" finished_at) VALUES (%s,%s,%s,%s,%s,%s,{finished or 'NULL'}) RETURNING build_id",
            (pkg, ver, target, builder, status, duration))
        build_id = self.cur.fetchone()[0]
        if log is not None:
            self.cur.execute("INSERT INTO build_logs (build_id, log, size) VALUES (%s,%s,%s)",
                             (build_id, gzip.compress(log), len(log)))
        return build_id

    def file(self, build_id, pkg, ver, filename, sha, size=1234, requires_python=None,
             metadata=None, alias_of=None, created="2024-02-03T04:05:06.789Z"):
        stem = filename[:-4].split("-")
        self.cur.execute(
            "INSERT INTO files (filename, build_id, package, version, python_tag, abi_tag,"
            " platform_tag, size, sha256, requires_python, metadata_sha256, alias_of,"
            " created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (filename, build_id, pkg, ver, stem[-3], stem[-2], stem[-1], size, sha,
             requires_python, metadata, alias_of, created))
        return self

    def dep(self, filename, tool, dependency):
        self.cur.execute("INSERT INTO dependencies VALUES (%s, %s, %s)",
                         (filename, tool, dependency))
        return self

    def queue(self, pkg, ver, target, attempts=0):
        self.cur.execute("INSERT INTO queue (package, version, target, released, attempts)"
                         " VALUES (%s,%s,%s,now(),%s)", (pkg, ver, target, attempts))
        return self

    def dirty(self, *packages):
        for p in packages:
            self.cur.execute("INSERT INTO index_dirty (package) VALUES (%s)"
                             " ON CONFLICT DO NOTHING", (p,))
        return self

    def commit(self):
        self.conn.commit()
        return self

    def dirty_set(self):
        self.cur.execute("SELECT package FROM index_dirty ORDER BY package")
        rows = [r[0] for r in self.cur.fetchall()]
        self.conn.commit()
        return rows


W311 = "demo-1.0-cp311-cp311-linux_armv7l.whl"
W311_V6 = "demo-1.0-cp311-cp311-linux_armv6l.whl"
W09 = "demo-0.9-py3-none-any.whl"
W08 = "demo-0.8-py3-none-any.whl"
W110 = "demo-1.10-py3-none-any.whl"


@pytest.fixture
def farm(conn) -> Farm:
    return Farm(conn)


@pytest.fixture
def demo(farm) -> Farm:
    """demo: 1.10 (pure), 1.0 (armv7l + armv6l alias, metadata), 0.9 yanked, 0.8 deleted,
    0.7 never built (binary-only)."""
    f = farm.package("demo", "Demo")
    f.version("demo", "1.10", released="2024-05-01T00:00:00Z")
    f.version("demo", "1.0").version("demo", "0.9", yanked=True, reason='broken "<b>" & bad')
    f.version("demo", "0.8", deleted=True).version("demo", "0.7", skip="binary-only")
    b = f.build("demo", "1.0", log=b"collecting...\n<script>alert(1)</script>\nbuilt\n")
    f.file(b, "demo", "1.0", W311, SHA["a"], requires_python='>=3.7,<4 "&"',
           metadata=SHA["b"])
    f.file(b, "demo", "1.0", W311_V6, SHA["a"], requires_python='>=3.7,<4 "&"',
           metadata=SHA["b"], alias_of=W311)
    f.dep(W311, "apt", "libfoo1").dep(W311, "apt", "libbar2").dep(W311, "pip", "numpy>=1.20")
    f.build("demo", "1.0", target=T313, status="failed", duration=65, log=b"error: boom\n")
    f.file(f.build("demo", "0.9"), "demo", "0.9", W09, SHA["c"])
    f.file(f.build("demo", "0.8"), "demo", "0.8", W08, SHA["d"])
    f.file(f.build("demo", "1.10"), "demo", "1.10", W110, SHA["e"])
    return f.dirty("demo").commit()


def by_filename(items, key="filename"):
    return {i[key]: i for i in items}


def test_simple_html_page(demo, conn, tmp_path):
    write_index(conn, tmp_path)
    text = (tmp_path / "simple/demo/index.html").read_text()
    page = Page(text)
    assert page.doctype.lower() == "doctype html"
    assert {"name": "pypi:repository-version", "content": "1.1"} in page.meta
    links = {a["_text"]: a for a in page.anchors}
    assert set(links) == {W311, W311_V6, W09, W110}  # 0.8 is deleted, 0.7 has no file
    a = links[W311]
    assert a["href"] == f"{W311}#sha256={SHA['a']}"  # relative
    assert a["data-requires-python"] == '>=3.7,<4 "&"'
    assert a["data-core-metadata"] == f"sha256={SHA['b']}"
    assert a["data-dist-info-metadata"] == f"sha256={SHA['b']}"
    assert "data-yanked" not in a
    assert links[W311_V6]["href"] == f"{W311_V6}#sha256={SHA['a']}"
    y = links[W09]
    assert y["data-yanked"] == 'broken "<b>" & bad'
    assert "data-requires-python" not in y and "data-core-metadata" not in y
    assert "<b>" not in text  # escaped, not markup


def test_simple_json_page(demo, conn, tmp_path):
    write_index(conn, tmp_path)
    data = json.loads((tmp_path / "simple/demo/index.json").read_text())
    assert data["meta"]["api-version"] == "1.1"
    assert data["name"] == "demo"
    assert data["versions"] == ["0.9", "1.0", "1.10"]  # PEP 440 order, only versions with files
    files = by_filename(data["files"])
    assert set(files) == {W311, W311_V6, W09, W110}
    f = files[W311]
    assert f["url"] == W311
    assert f["hashes"] == {"sha256": SHA["a"]}
    assert f["requires-python"] == '>=3.7,<4 "&"'
    assert f["yanked"] is False
    assert f["core-metadata"] == {"sha256": SHA["b"]} and "dist-info-metadata" not in f
    assert f["size"] == 1234
    assert f["upload-time"] == "2024-02-03T04:05:06.789000Z"
    datetime.fromisoformat(f["upload-time"].replace("Z", "+00:00"))
    assert files[W311_V6]["hashes"] == {"sha256": SHA["a"]}
    assert files[W09]["yanked"] == 'broken "<b>" & bad'
    assert files[W09]["core-metadata"] is False and "dist-info-metadata" not in files[W09]


def test_yanked_without_reason_is_true(farm, conn, tmp_path):
    farm.package("y").version("y", "1", yanked=True)
    farm.file(farm.build("y", "1"), "y", "1", "y-1-py3-none-any.whl", SHA["a"])
    farm.dirty("y").commit()
    write_index(conn, tmp_path)
    assert json.loads((tmp_path / "simple/y/index.json").read_text())["files"][0]["yanked"] is True
    (a,) = parse(tmp_path / "simple/y/index.html").anchors
    assert a["data-yanked"] == ""


def test_root_lists_packages_with_files(demo, conn, tmp_path):
    demo.package("nofiles").version("nofiles", "1.0")
    demo.package("gone", deleted=True).version("gone", "1")
    demo.file(demo.build("gone", "1"), "gone", "1", "gone-1-py3-none-any.whl", SHA["f"])
    demo.dirty("nofiles", "gone").commit()
    summary = write_index(conn, tmp_path)
    assert summary.root_written
    page = parse(tmp_path / "simple/index.html")
    assert {"name": "pypi:repository-version", "content": "1.1"} in page.meta
    assert [(a["href"], a["_text"]) for a in page.anchors] == [("demo/", "demo")]
    root = json.loads((tmp_path / "simple/index.json").read_text())
    assert root == {"meta": {"api-version": "1.1"}, "projects": [{"name": "demo"}]}
    assert not (tmp_path / "simple/gone/index.html").exists()
    assert not (tmp_path / "simple/nofiles").exists()
    assert (tmp_path / "project/nofiles/index.html").exists()
    assert demo.dirty_set() == []
    assert "1 packages written" in str(summary) and "\n" not in str(summary)


def _age(paths):
    """Backdate files so a rewrite is visible in their mtime."""
    for p in paths:
        os.utime(p, (1_000_000_000, 1_000_000_000))


def test_incremental_run_writes_only_dirty_packages(demo, conn, tmp_path):
    demo.package("other").version("other", "2.0")
    demo.file(demo.build("other", "2.0"), "other", "2.0", "other-2.0-py3-none-any.whl", SHA["g"])
    demo.dirty("other").commit()
    write_index(conn, tmp_path)
    pages = {p: tmp_path / p for p in (
        "simple/demo/index.html", "simple/demo/index.json", "simple/other/index.html",
        "simple/other/index.json", "project/other/index.html", "simple/index.html",
        "simple/index.json")}
    _age(pages.values())
    demo.file(demo.build("demo", "1.10", target=T313), "demo", "1.10",
              "demo-1.10-cp313-cp313-linux_armv7l.whl", SHA["h"])
    demo.dirty("demo").commit()
    summary = write_index(conn, tmp_path)
    changed = {k for k, p in pages.items() if p.stat().st_mtime != 1_000_000_000}
    assert changed == {"simple/demo/index.html", "simple/demo/index.json"}
    assert summary.packages_written == 1 and not summary.root_written
    assert "demo-1.10-cp313" in pages["simple/demo/index.html"].read_text()
    # nothing dirty: nothing but the stats is written
    summary = write_index(conn, tmp_path)
    assert summary.packages_written == 0 and not summary.root_written


def _first_wheel_of_newbie(demo) -> None:
    """A new package gets its first wheel (so the set of listed packages changes)."""
    demo.package("newbie").version("newbie", "0.1")
    demo.file(demo.build("newbie", "0.1"), "newbie", "0.1", "newbie-0.1-py3-none-any.whl",
              SHA["i"])
    demo.dirty("newbie").commit()


def _root_names(www: Path) -> list[str]:
    return [p["name"] for p in json.loads((www / "simple/index.json").read_text())["projects"]]


def test_first_file_and_last_file_rewrite_the_root(demo, conn, tmp_path):
    write_index(conn, tmp_path)
    _first_wheel_of_newbie(demo)
    summary = write_index(conn, tmp_path)
    assert summary.root_written
    names = _root_names(tmp_path)
    assert names == ["demo", "newbie"]
    assert not (tmp_path / "simple/.root-stale").exists()
    # newbie's only version is deleted upstream: its pages go, and the root forgets it
    demo.cur.execute("UPDATE versions SET deleted = true WHERE package = 'newbie'")
    demo.dirty("newbie").commit()
    summary = write_index(conn, tmp_path)
    assert summary.root_written and summary.packages_removed == 1
    assert not (tmp_path / "simple/newbie/index.html").exists()
    assert not (tmp_path / "simple/newbie/index.json").exists()
    assert [a["_text"] for a in parse(tmp_path / "simple/index.html").anchors] == ["demo"]


def test_root_is_rewritten_at_most_every_root_interval(demo, conn, tmp_path):
    """A new package's own page is written at once; the root (every name) waits."""
    write_index(conn, tmp_path)
    _first_wheel_of_newbie(demo)
    summary = write_index(conn, tmp_path, root_interval=3600)
    assert summary.packages_written == 1 and not summary.root_written
    assert (tmp_path / "simple/newbie/index.json").exists()
    assert (tmp_path / "simple/.root-stale").exists()       # remembered for later
    names = _root_names(tmp_path)
    assert names == ["demo"]
    # the root has aged past the interval: the next run (nothing dirty) writes it
    old = time.time() - 7200
    os.utime(tmp_path / "simple/index.html", (old, old))
    summary = write_index(conn, tmp_path, root_interval=3600)
    assert summary.root_written and summary.packages_written == 0
    names = _root_names(tmp_path)
    assert names == ["demo", "newbie"]
    assert not (tmp_path / "simple/.root-stale").exists()
    # nothing changed since: no rewrite, however old the root is
    os.utime(tmp_path / "simple/index.html", (old, old))
    assert not write_index(conn, tmp_path, root_interval=3600).root_written


def test_stale_root_marker_survives_a_crash(demo, conn, tmp_path):
    write_index(conn, tmp_path)
    (tmp_path / "simple/.root-stale").touch()  # a run that died before writing the root
    assert write_index(conn, tmp_path).root_written
    assert not (tmp_path / "simple/.root-stale").exists()


def test_full_run_rewrites_everything_and_sweeps_orphans(demo, conn, tmp_path):
    write_index(conn, tmp_path)
    for p in ("simple/ghost", "project/ghost"):
        (tmp_path / p).mkdir(parents=True)
        (tmp_path / p / "index.html").write_text("stale")
    _age([tmp_path / "simple/demo/index.html"])
    assert demo.dirty_set() == []
    summary = write_index(conn, tmp_path, full=True)
    assert summary.root_written and summary.packages_written == 1
    assert (tmp_path / "simple/demo/index.html").stat().st_mtime != 1_000_000_000
    assert not (tmp_path / "simple/ghost/index.html").exists()
    assert not (tmp_path / "project/ghost/index.html").exists()


def test_batches_cost_a_fixed_number_of_queries(farm, conn, tmp_path, monkeypatch):
    """No query per package: the statements a run makes do not grow with the batch."""

    counted = []

    def counting(cls):
        class Batch(cls):
            def __init__(self, cur, packages):
                before = len(counted)
                execute = cur.execute
                cur.execute = lambda *a, **k: (counted.append(a[0]), execute(*a, **k))[1]
                try:
                    super().__init__(cur, packages)
                finally:
                    del cur.execute
                counted.append(("batch", len(counted) - before, len(packages)))
        return Batch

    monkeypatch.setattr(writer, "Batch", counting(writer.Batch))
    for i in range(7):
        name = f"p{i}"
        farm.package(name).version(name, "1.0")
        b = farm.build(name, "1.0")
        farm.file(b, name, "1.0", f"{name}-1.0-py3-none-any.whl", SHA["a"])
        farm.dep(f"{name}-1.0-py3-none-any.whl", "pip", "six")
    farm.dirty(*[f"p{i}" for i in range(7)]).commit()
    summary = write_index(conn, tmp_path, batch_size=3)
    batches = [c for c in counted if isinstance(c, tuple)]
    assert [n for _, _, n in batches] == [3, 3, 1]
    assert len({q for _, q, _ in batches}) == 1  # same statements for 3 packages as for 1
    assert summary.packages_written == 7 and summary.files_linked == 7
    assert len(json.loads((tmp_path / "simple/index.json").read_text())["projects"]) == 7


def test_project_page(demo, conn, tmp_path):
    demo.queue("demo", "1.10", T313, attempts=1)
    demo.cur.execute("INSERT INTO target_skips (package, version, target, reason, note)"
                     " VALUES ('demo', '0.9', %s, 'admin', 'too big')", (T313,))
    demo.commit()
    write_index(conn, tmp_path)
    data = json.loads((tmp_path / "project/demo/index.json").read_text())
    assert data["display_name"] == "Demo" and data["targets"] == [T311, T313]
    versions = [v["version"] for v in data["versions"]]
    assert versions == ["1.10", "1.0", "0.9", "0.8", "0.7"]  # newest first, unbuilt included
    v = {x["version"]: x for x in data["versions"]}
    cells = {c["target"]: c for c in v["1.0"]["targets"]}
    assert (cells[T311]["abi"], cells[T311]["platform"]) == ("cp311", "linux_armv7l")
    assert cells[T311]["status"] == "built"
    # the wheels for the target's platform (the linux_armv6l alias is for no target)
    assert set(cells[T311]["files"]) == {W311}
    assert cells[T311]["build"]["builder"] == "pi-one"
    assert cells[T313]["status"] == "failed"
    failed_log = cells[T313]["build"]["log"]
    assert failed_log == f"../../logs/{cells[T313]['build']['build_id']}.txt"
    assert (tmp_path / "project/demo" / failed_log).read_text() == "error: boom\n"
    # a pure wheel covers every target; a queued retry and a target skip are shown as such
    assert {c["status"] for c in v["1.10"]["targets"]} == {"built"}
    assert {c["target"]: c["status"] for c in v["0.9"]["targets"]} == {T311: "built",
                                                                       T313: "built"}
    assert v["0.7"]["skip_reason"] == "binary-only"
    assert {c["status"] for c in v["0.7"]["targets"]} == {"skipped"}
    assert v["0.9"]["yanked"] and v["0.8"]["deleted"]
    files = by_filename(v["1.0"]["files"])
    assert files[W311]["url"] == f"../../simple/demo/{W311}"
    assert files[W311]["dependencies"] == {"apt": ["libbar2", "libfoo1"],
                                           "pip": ["numpy>=1.20"], "lib": []}
    assert files[W311_V6]["alias_of"] == W311
    # the HTML: links resolve relative to the page, apt line, escaped everywhere
    page_path = tmp_path / "project/demo/index.html"
    page = parse(page_path)
    hrefs = {a["href"] for a in page.anchors}
    assert f"../../simple/demo/{W311}" in hrefs and failed_log in hrefs
    text = " ".join(page.texts)
    assert "apt install libbar2 libfoo1" in text and "numpy>=1.20" in text
    assert 'broken "<b>" & bad' in text and "<b>" not in page_path.read_text()
    for href in hrefs - {"index.json"}:
        target = (page_path.parent / href.split("#")[0]).resolve()
        assert str(target).startswith(str(tmp_path.resolve())), href


def test_project_statuses_queued_and_skipped(farm, conn, tmp_path):
    farm.package("q").version("q", "2.0").version("q", "1.0")
    farm.queue("q", "2.0", T311)
    farm.cur.execute("INSERT INTO target_skips (package, version, target, reason)"
                     " VALUES ('q', '1.0', %s, 'too-many-failures')", (T311,))
    farm.dirty("q").commit()
    write_index(conn, tmp_path)
    data = json.loads((tmp_path / "project/q/index.json").read_text())
    cells = {(v["version"], c["target"]): c for v in data["versions"] for c in v["targets"]}
    assert cells[("2.0", T311)]["status"] == "queued"
    assert cells[("2.0", T313)]["status"] == "pending"
    assert cells[("1.0", T311)]["status"] == "skipped"
    assert cells[("1.0", T311)]["note"] == "too-many-failures"
    assert not (tmp_path / "simple/q/index.html").exists()


def test_logs_are_written_once_and_decompressed(demo, conn, tmp_path):
    write_index(conn, tmp_path)
    demo.cur.execute("SELECT build_id FROM builds WHERE status = 'success' AND version = '1.0'")
    (build_id,) = demo.cur.fetchone()
    demo.commit()
    log = tmp_path / f"logs/{build_id}.txt"
    assert log.read_text() == "collecting...\n<script>alert(1)</script>\nbuilt\n"
    log.write_text("kept")
    demo.dirty("demo").commit()
    summary = write_index(conn, tmp_path)
    assert log.read_text() == "kept" and summary.logs_written == 0


def test_hostile_names_are_escaped(farm, conn, tmp_path):
    farm.package("x", display="<script>alert('x')</script>")
    farm.version("x", '1.0"><img src=x onerror=alert(1)>')
    farm.dirty("x").commit()
    write_index(conn, tmp_path)
    raw = (tmp_path / "project/x/index.html").read_text()
    assert "<script>" not in raw and "<img" not in raw
    page = Page(raw)
    assert "<script>alert('x')</script>" in page.texts
    assert "script" not in page.tags and "img" not in page.tags


def test_package_with_build_in_flight_stays_dirty(farm, conn, tmp_path):
    """finish_build may not have committed yet; the package is written again next run."""
    farm.package("busy").version("busy", "1.0")
    farm.build("busy", "1.0", status="building")
    farm.dirty("busy").commit()
    summary = write_index(conn, tmp_path)
    assert (tmp_path / "project/busy/index.html").exists()
    assert farm.dirty_set() == ["busy"]
    assert summary.packages_written == 0 and summary.projects_written == 1


def test_autocommit_connection_is_restored(demo, dsn, tmp_path):
    from piwheels_build import db

    c = db.connect(dsn, autocommit=True)
    try:
        assert write_index(c, tmp_path).packages_written == 1
        assert c.autocommit is True
    finally:
        c.close()


def test_deleted_package_row_removes_project_page(demo, conn, tmp_path):
    write_index(conn, tmp_path)
    demo.cur.execute("DELETE FROM packages WHERE package = 'demo'")
    demo.dirty("demo").commit()
    summary = write_index(conn, tmp_path)
    assert not (tmp_path / "project/demo/index.html").exists()
    assert not (tmp_path / "simple/demo/index.html").exists()
    assert summary.root_written
    assert json.loads((tmp_path / "simple/index.json").read_text())["projects"] == []


def test_stats(demo, conn, tmp_path):
    demo.queue("demo", "1.10", T313)
    demo.commit()
    write_index(conn, tmp_path)
    s = json.loads((tmp_path / "stats.json").read_text())
    assert s["packages"] == {"known": 1, "with_files": 1}
    assert s["versions"]["known"] == 5
    assert s["versions"]["attempted"] == 4  # 1.10, 1.0, 0.9, 0.8
    assert s["versions"]["built"] == 4
    assert s["versions"]["success_rate"] == 1.0
    assert s["builds"]["by_status"] == {"failed": 1, "success": 4}
    assert s["builds"]["build_time"] == pytest.approx(4 * 12.5 + 65)
    assert s["files"] == {"count": 5, "wheels": 4, "aliases": 1, "disk_used": 4 * 1234}
    builders = {b["name"]: b for b in s["builders"]}
    assert builders["pi-one"]["builds"] == 4 and builders["pi-one"]["successes"] == 4
    assert builders["pi-two"]["builds"] == 1 and builders["pi-two"]["successes"] == 0
    assert builders["pi-two"]["build_time"] == 65
    assert builders["pi-one"]["target"] == T311 and builders["pi-two"]["target"] == T313
    assert (builders["pi-two"]["abi"], builders["pi-two"]["platform"]) == ("cp313",
                                                                           "linux_armv7l")
    queue = {q["target"]: q for q in s["queue"]}
    assert [q["target"] for q in s["queue"]] == [T311, T313]
    assert queue[T313]["queued"] == 1 and queue[T311]["queued"] == 0
    assert (queue[T313]["abi"], queue[T313]["platform"]) == ("cp313", "linux_armv7l")
    # versions with a final build on each target, and with a success there
    assert (queue[T311]["attempted"], queue[T311]["built"]) == (4, 4)
    assert (queue[T313]["attempted"], queue[T313]["built"]) == (1, 0)
    page = parse(tmp_path / "stats.html")
    assert "pi-one" in page.texts and "success rate" in page.texts
    assert (tmp_path / "static/style.css").exists() and (tmp_path / "index.html").exists()


def test_no_temp_files_left(demo, conn, tmp_path):
    write_index(conn, tmp_path, full=True)
    temps = [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    assert temps == []


def test_finish_build_racing_the_writer_is_not_lost(conn, dsn, tmp_path):
    """A finish_build that commits after the writer read the package marks it again.

    finish_build's ``INSERT INTO index_dirty ... ON CONFLICT DO NOTHING`` takes no
    lock on a row that is already there, so the writer keeps every package with a
    build in flight dirty rather than trust that it saw the final state.
    """
    from piwheels_build import db

    other = db.connect(dsn)
    try:
        cur = other.cursor()
        cur.execute("SELECT register_builder('pi', 'cp311', 'linux_armv7l', '3.11')")
        builder = cur.fetchone()[0]
        cur.execute("INSERT INTO packages (package, display_name) VALUES ('race', 'race')")
        cur.execute("INSERT INTO versions (package, version) VALUES ('race', '1.0')")
        cur.execute("INSERT INTO upstream_files (filename, package, version, kind, url)"
                    " VALUES ('race-1.0.tar.gz', 'race', '1.0', 'sdist', 'http://x/r.tgz')")
        cur.execute("SELECT refresh_queue()")
        cur.execute("SELECT build_id FROM claim_build(%s)", (builder,))
        build_id = cur.fetchone()[0]
        cur.execute("INSERT INTO index_dirty (package) VALUES ('race')")  # an earlier sync
        other.commit()
        wheel = {"filename": "race-1.0-py3-none-any.whl", "python_tag": "py3",
                 "abi_tag": "none", "platform_tag": "any", "size": 10, "sha256": SHA["a"]}
        cur.execute("SELECT finish_build(%s, 'success', 1.0, NULL, NULL, NULL, %s::jsonb)",
                    (build_id, json.dumps([wheel])))
        write_index(conn, tmp_path)  # runs while finish_build has not committed
        assert not (tmp_path / "simple/race/index.html").exists()
        other.commit()
    finally:
        other.close()
    summary = write_index(conn, tmp_path)
    assert summary.packages_written == 1 and summary.root_written
    (a,) = parse(tmp_path / "simple/race/index.html").anchors
    assert a["_text"] == "race-1.0-py3-none-any.whl"


def test_stats_page_is_rewritten_at_most_every_interval(demo, conn, tmp_path):
    """Recounting the farm is the cost of an incremental run at scale: throttle it."""
    summary = write_index(conn, tmp_path, stats_interval=3600)
    assert summary.stats_written  # no stats page yet
    first = json.loads((tmp_path / "stats.json").read_text())
    demo.package("other").version("other", "1.0").dirty("other").commit()
    summary = write_index(conn, tmp_path, stats_interval=3600)
    assert not summary.stats_written
    assert json.loads((tmp_path / "stats.json").read_text()) == first
    old = datetime.now().timestamp() - 7200
    os.utime(tmp_path / "stats.json", (old, old))
    summary = write_index(conn, tmp_path, stats_interval=3600)
    assert summary.stats_written
    assert json.loads((tmp_path / "stats.json").read_text())["packages"]["known"] == 2
    assert write_index(conn, tmp_path, full=True, stats_interval=3600).stats_written
    assert write_index(conn, tmp_path).stats_written  # 0: every run


def test_small_batches_fsync_their_own_files(demo, conn, tmp_path, monkeypatch):
    """syncfs waits for every writer on the file system (PostgreSQL too): only for big batches."""
    from piwheels_build import fsutil

    calls: list = []
    monkeypatch.setattr(fsutil, "sync_filesystem", lambda path: calls.append(("syncfs", path)))
    real = fsutil.fsync_paths
    monkeypatch.setattr(fsutil, "fsync_paths",
                        lambda paths: calls.append(("fsync", sorted(paths))) or real(paths))
    write_index(conn, tmp_path)
    (kind, paths), = calls
    assert kind == "fsync"
    assert {tmp_path / "simple/demo/index.html", tmp_path / "simple/demo/index.json",
            tmp_path / "project/demo/index.html"} <= set(paths)
    calls.clear()
    for i in range(writer.FSYNC_LIMIT):
        demo.package(f"p{i}").version(f"p{i}", "1.0").dirty(f"p{i}")
    demo.commit()
    write_index(conn, tmp_path)
    assert [c[0] for c in calls] == ["syncfs"]
