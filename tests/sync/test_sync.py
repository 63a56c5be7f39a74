"""sync against a fake upstream on 127.0.0.1 and a real PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import psycopg2
import psycopg2.extensions
import pytest
from helpers.upstream_server import FakeUpstream, make_sdist

from piwheels_build.config import from_dict
from piwheels_build.errors import UpstreamError
from piwheels_build.sync import SyncInterrupted, projectlist, projects, sync
from piwheels_build.sync import summary as summarymod
from piwheels_build.sync.simpleapi import ProjectList
from piwheels_build.sync.upstream import Upstream

T0 = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)




def config(dsn: str, fake: FakeUpstream, **extra):
    data = {"database": dsn, "upstream": fake.url, "http_retries": 0, "http_timeout": 5,
            "sync_workers": 4}
    data.update(extra)
    return from_dict(data)


def sdist(fake: FakeUpstream, name: str, version: str, **kw) -> str:
    filename, data = make_sdist(name, version)
    fake.add_file(name, filename, data, **kw)
    return filename


def wheel(fake: FakeUpstream, name: str, version: str, **kw) -> str:
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    fake.add_file(name, filename, b"wheel " + filename.encode(), **kw)
    return filename


def rows(conn, sql: str, *args) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        out = cur.fetchall()
    conn.commit()
    return out


def version_row(conn, package: str, version: str) -> dict:
    cols = "released, yanked, yanked_reason, prerelease, deleted, skip_reason"
    found = rows(conn, f"SELECT {cols} FROM versions WHERE package = %s AND version = %s",
                 package, version)
    assert found, f"{package} {version} not in versions"
    return dict(zip(cols.split(", "), found[0], strict=True))


def needs_sync(conn) -> set[str]:
    return {r[0] for r in rows(conn, "SELECT package FROM packages WHERE needs_sync")}


# ---------------------------------------------------------------- first sync


@pytest.mark.parametrize("use_json", [True, False], ids=["json", "html"])
def test_first_sync(conn, dsn, use_json):
    with FakeUpstream(json=use_json) as fake:
        fn = sdist(fake, "Foo_Bar.baz", "1.0", upload_time=T0, requires_python=">=3.8")
        wheel(fake, "foo_bar_baz", "1.0", upload_time=T0 + timedelta(days=1))
        sdist(fake, "Foo_Bar.baz", "2.0b1")
        sdist(fake, "plain", "0.1")
        fake.add_file("plain", "plain-0.1.win32.exe", b"exe")
        fake.add_file("plain", "README.txt", b"ignored")
        summary = sync(conn, config(dsn, fake))
        root = fake.root

    assert summary.errors == []
    assert (summary.projects_seen, summary.projects_synced) == (2, 2)
    assert (summary.new_packages, summary.new_versions) == (2, 3)
    pkgs = rows(conn, "SELECT package, display_name, needs_sync, deleted FROM packages"
                      " ORDER BY package")
    assert pkgs == [("foo-bar-baz", "Foo_Bar.baz", False, False), ("plain", "plain", False, False)]
    assert ("Foo_Bar.baz", "foo-bar-baz") in rows(conn, "SELECT name, package FROM package_names")
    assert version_row(conn, "foo-bar-baz", "2.0b1")["prerelease"] is True
    v1 = version_row(conn, "foo-bar-baz", "1.0")
    assert v1["prerelease"] is False and v1["skip_reason"] is None
    if use_json:
        assert v1["released"] == T0
    files = rows(conn, "SELECT filename, kind, version, url, sha256, requires_python"
                       " FROM upstream_files WHERE package = 'foo-bar-baz' AND version = '1.0'"
                       " ORDER BY kind")
    assert [(f[1], f[2]) for f in files] == [("sdist", "1.0"), ("wheel", "1.0")]
    assert files[0][0] == fn and files[0][3] == f"{root}/files/{fn}"
    assert re.fullmatch(r"[0-9a-f]{64}", files[0][4]) and files[0][5] == ">=3.8"
    kinds = rows(conn, "SELECT kind FROM upstream_files WHERE package = 'plain' ORDER BY kind")
    assert kinds == [("other",), ("sdist",)]
    dirty = {r[0] for r in rows(conn, "SELECT package FROM index_dirty")}
    assert dirty == {"foo-bar-baz", "plain"}


def test_serials_recorded(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    sync(conn, config(dsn, fake))
    serial = fake.projects["a"].serial
    assert rows(conn, "SELECT upstream_serial, synced_serial FROM packages") == [(serial, serial)]


# ---------------------------------------------------------------- yanks, skips, deletions


def test_yank_and_unyank(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    sdist(fake, "a", "2.0")
    fake.yank(("a", "2.0"), "broken build")
    cfg = config(dsn, fake)
    s = sync(conn, cfg)
    assert s.yanked == 1
    v = version_row(conn, "a", "2.0")
    assert (v["yanked"], v["yanked_reason"], v["skip_reason"]) == (True, "broken build", "yanked")
    assert version_row(conn, "a", "1.0")["skip_reason"] is None

    fake.unyank(("a", "2.0"))
    s = sync(conn, cfg)
    assert (s.unyanked, s.projects_synced) == (1, 1)
    v = version_row(conn, "a", "2.0")
    assert (v["yanked"], v["yanked_reason"], v["skip_reason"]) == (False, None, None)


def test_yanked_built_when_configured(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    fake.yank(("a", "1.0"))
    sync(conn, config(dsn, fake, yanked="build"))
    v = version_row(conn, "a", "1.0")
    assert v["yanked"] is True and v["skip_reason"] is None


def test_operator_skip_is_kept(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    cfg = config(dsn, fake)
    sync(conn, cfg)
    rows(conn, "UPDATE versions SET skip_reason = 'admin' WHERE package = 'a' RETURNING 1")
    fake.yank(("a", "1.0"))
    sync(conn, cfg)
    assert version_row(conn, "a", "1.0")["skip_reason"] == "admin"
    fake.remove_file("a-1.0.tar.gz")
    sync(conn, cfg)
    v = version_row(conn, "a", "1.0")
    assert v["deleted"] is True and v["skip_reason"] == "admin"


def test_binary_only_then_sdist(conn, dsn, fake):
    wheel(fake, "a", "1.0")
    cfg = config(dsn, fake)
    s = sync(conn, cfg)
    assert s.binary_only == 1
    assert version_row(conn, "a", "1.0")["skip_reason"] == "binary-only"
    sdist(fake, "a", "1.0")
    sync(conn, cfg)
    assert version_row(conn, "a", "1.0")["skip_reason"] is None


def test_removed_version_is_deleted_and_comes_back(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    fn = sdist(fake, "a", "2.0")
    cfg = config(dsn, fake)
    sync(conn, cfg)
    fake.remove_file(fn)
    s = sync(conn, cfg)
    assert s.deleted_versions == 1
    v = version_row(conn, "a", "2.0")
    assert (v["deleted"], v["skip_reason"]) == (True, "deleted")
    assert rows(conn, "SELECT count(*) FROM upstream_files WHERE version = '2.0'") == [(0,)]
    sdist(fake, "a", "2.0")
    sync(conn, cfg)
    v = version_row(conn, "a", "2.0")
    assert (v["deleted"], v["skip_reason"]) == (False, None)


def test_removed_project_is_deleted_and_comes_back(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    sdist(fake, "b", "1.0")
    cfg = config(dsn, fake)
    sync(conn, cfg)
    fake.remove_project("b")
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert s.deleted_packages == 1 and fake.project_paths() == []
    assert rows(conn, "SELECT package FROM packages WHERE deleted") == [("b",)]
    sdist(fake, "B", "2.0")
    sync(conn, cfg)
    assert rows(conn, "SELECT package FROM packages WHERE deleted") == []
    assert version_row(conn, "b", "2.0")["deleted"] is False


def test_empty_list_does_not_delete_everything(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    cfg = config(dsn, fake)
    sync(conn, cfg)
    fake.remove_project("a")
    with pytest.raises(UpstreamError, match="refusing to mark them deleted"):
        sync(conn, cfg)
    assert rows(conn, "SELECT deleted FROM packages") == [(False,)]


# ---------------------------------------------------------------- incremental and resume


def test_unchanged_serials_fetch_no_pages(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    sdist(fake, "b", "1.0")
    cfg = config(dsn, fake)
    sync(conn, cfg)
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert fake.requests_log == ["/simple/"] and s.projects_synced == 0
    sdist(fake, "b", "1.1")
    s = sync(conn, cfg)
    assert fake.project_paths() == ["/simple/b/"]
    assert (s.projects_synced, s.new_versions) == (1, 1)


def test_failed_page_is_resumed(conn, dsn, fake):
    for name in ("a", "b", "c"):
        sdist(fake, name, "1.0")
    fake.fail("/simple/b/")
    cfg = config(dsn, fake)
    s = sync(conn, cfg)
    assert len(s.errors) == 1 and "/simple/b/" in s.errors[0] and "\n" not in s.errors[0]
    assert s.projects_synced == 2
    assert needs_sync(conn) == {"b"}
    assert rows(conn, "SELECT count(*) FROM versions WHERE package = 'b'") == [(0,)]
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert s.errors == [] and fake.project_paths() == ["/simple/b/"]
    assert needs_sync(conn) == set()
    assert version_row(conn, "b", "1.0")["deleted"] is False


def test_malformed_page_is_an_error_not_a_crash(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    fake.malformed("/simple/a/")
    s = sync(conn, config(dsn, fake))
    assert len(s.errors) == 1 and "malformed JSON" in s.errors[0]
    assert needs_sync(conn) == {"a"}


def test_interrupt_keeps_committed_groups(conn, dsn, fake, monkeypatch):
    monkeypatch.setattr(projects, "GROUP_SIZE", 2)
    monkeypatch.setattr(projects, "GROUP_WAIT", 3600)   # groups close by size or at the end
    names = {f"p{i}" for i in range(8)}
    for name in names:
        sdist(fake, name, "1.0")
    real = projects._apply_group
    groups: list[set[str]] = []

    def interrupted(conn, cfg, group, summary):
        groups.append({f.package for f in group})
        if len(groups) == 2:
            real(conn, cfg, group, summary)       # written, then Ctrl-C before the commit
            raise KeyboardInterrupt
        return real(conn, cfg, group, summary)

    monkeypatch.setattr(projects, "_apply_group", interrupted)
    cfg = config(dsn, fake, sync_workers=1)
    with pytest.raises(SyncInterrupted) as e:
        sync(conn, cfg)
    committed = groups[0]
    assert len(committed) >= 2 and e.value.summary.projects_synced == len(committed)
    assert e.value.summary.new_versions == len(committed)
    assert needs_sync(conn) == names - committed
    assert {r[0] for r in rows(conn, "SELECT package FROM versions")} == committed
    monkeypatch.setattr(projects, "_apply_group", real)
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert needs_sync(conn) == set() and s.projects_synced == len(names - committed)
    assert sorted(fake.project_paths()) == sorted(f"/simple/{n}/" for n in names - committed)


def test_too_many_failures_stop_the_run(conn, dsn, fake, monkeypatch):
    monkeypatch.setattr(projects, "MAX_FAILURES_IN_A_ROW", 3)
    for name in "abcdefgh":
        sdist(fake, name, "1.0")
        fake.fail(f"/simple/{name}/")
    s = sync(conn, config(dsn, fake, sync_workers=1))
    assert "stopped after 3 project pages failed in a row" in s.errors[-1]
    assert len(fake.project_paths()) < 8


# ---------------------------------------------------------------- groups


class CountingConnection(psycopg2.extensions.connection):
    """Counts commits: sync writes a group of projects per transaction."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.commits = 0

    def commit(self) -> None:
        self.commits += 1
        super().commit()


def test_projects_are_written_in_groups(dsn, fake, monkeypatch):
    monkeypatch.setattr(projects, "GROUP_WAIT", 3600)   # groups close by size or at the end
    conn = psycopg2.connect(dsn, connection_factory=CountingConnection)
    try:
        rows(conn, "SELECT register_builder('h', 'cp311', 'linux_x86_64', '3.11')")
        names = [f"pkg-{i:03}" for i in range(250)]
        for name in names:
            sdist(fake, name, "1.0")
        wheel(fake, "pkg-007", "1.0")
        sizes: list[int] = []
        real = projects._apply_group

        def counted(conn, cfg, group, summary):
            sizes.append(len(group))
            return real(conn, cfg, group, summary)

        monkeypatch.setattr(projects, "_apply_group", counted)
        conn.commits = 0
        s = sync(conn, config(dsn, fake))
        assert s.errors == [] and (s.projects_synced, s.new_versions) == (250, 250)
        assert sum(sizes) == 250 and len(sizes) <= 3, sizes   # 250 transactions before
        assert conn.commits <= len(sizes) + 5                 # + settings, list, cursor
        assert needs_sync(conn) == set()
        assert rows(conn, "SELECT count(*) FROM upstream_files") == [(251,)]
        queue = rows(conn, "SELECT package, version, target FROM queue ORDER BY package")
        assert queue == [(n, "1.0", "cp311-linux_x86_64") for n in names]
        assert rows(conn, "SELECT count(*) FROM index_dirty") == [(250,)]

        # a few changes: one small group, written as soon as nothing is left to fetch
        sdist(fake, "pkg-001", "2.0")
        fake.yank(("pkg-002", "1.0"))
        fake.remove_project("pkg-003")                    # the list says so: no page read
        sizes.clear()
        s = sync(conn, config(dsn, fake))
        assert sizes == [2] and s.errors == []
        assert (s.new_versions, s.yanked, s.deleted_packages) == (1, 1, 1)
        assert rows(conn, "SELECT package, version FROM queue WHERE package IN"
                          " ('pkg-001', 'pkg-002', 'pkg-003') ORDER BY 1, 2") == [
            ("pkg-001", "1.0"), ("pkg-001", "2.0")]
    finally:
        conn.close()


def test_a_slow_page_does_not_hold_back_its_group(conn, dsn, fake, monkeypatch):
    monkeypatch.setattr(projects, "GROUP_WAIT", 0.05)
    for name in "abcde":
        sdist(fake, name, "1.0")
    others_written = threading.Event()
    real_fetch, real_apply = projects._fetch, projects._apply_group
    groups: list[list[str]] = []

    def fetch(up, name):
        if name == "e":           # held until the others are written (or, if they never
            others_written.wait(60)   # are without it, for a minute: then the test fails)
        return real_fetch(up, name)

    def apply(conn, cfg, group, summary):
        groups.append(sorted(f.package for f in group))
        real_apply(conn, cfg, group, summary)
        if sorted(p for g in groups for p in g) == list("abcd"):
            others_written.set()

    monkeypatch.setattr(projects, "_fetch", fetch)
    monkeypatch.setattr(projects, "_apply_group", apply)
    s = sync(conn, config(dsn, fake))
    assert groups[-1] == ["e"] and s.projects_synced == 5, groups
    assert needs_sync(conn) == set()


def _page_with(name: str, **file_fields) -> bytes:
    entry = {"filename": f"{name}-1.0.tar.gz", "url": f"../../files/{name}-1.0.tar.gz",
             "hashes": {"sha256": "0" * 64}, **file_fields}
    return json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": [entry]}).encode()


@pytest.mark.parametrize("bad", [{"size": 10 ** 20}, {"requires-python": ">=3\x00"}],
                         ids=["size-out-of-range", "nul-byte"])
def test_bad_page_in_a_group_does_not_lose_the_others(conn, dsn, fake, monkeypatch, bad):
    monkeypatch.setattr(projects, "GROUP_WAIT", 3600)
    rows(conn, "SELECT register_builder('h', 'cp311', 'linux_x86_64', '3.11')")
    names = {f"p{i:02}" for i in range(20)}
    for name in names:
        sdist(fake, name, "1.0")
    fake.malformed("/simple/p05/", body=_page_with("p05", **bad))
    sizes: list[int] = []
    real = projects._apply_group

    def counted(conn, cfg, group, summary):
        sizes.append(len(group))
        return real(conn, cfg, group, summary)

    monkeypatch.setattr(projects, "_apply_group", counted)
    cfg = config(dsn, fake)
    s = sync(conn, cfg)
    assert sizes[0] == 20 and sizes[1:] == [1] * 20   # the group, then one at a time
    assert len(s.errors) == 1 and "\n" not in s.errors[0], s.errors
    assert s.errors[0].startswith("sync: p05: the database refused its page (")
    assert (s.projects_synced, s.new_versions) == (19, 19)
    assert needs_sync(conn) == {"p05"}
    assert rows(conn, "SELECT count(*) FROM versions WHERE package = 'p05'") == [(0,)]
    assert {r[0] for r in rows(conn, "SELECT package FROM queue")} == names - {"p05"}
    fake.requests_log.clear()
    s = sync(conn, cfg)                                   # the page is right again
    assert s.errors == [] and fake.project_paths() == ["/simple/p05/"]
    assert {r[0] for r in rows(conn, "SELECT package FROM queue")} == names


# ---------------------------------------------------------------- changelog-only incremental runs


def full_list_reads(fake: FakeUpstream) -> int:
    return fake.requests_log.count("/simple/")


def test_changelog_only_runs_skip_the_full_list(conn, dsn, fake):
    for name in ("a", "b", "c"):
        sdist(fake, name, "1.0")
    cfg = config(dsn, fake, upstream_xmlrpc=fake.xmlrpc_url)
    sync(conn, cfg)
    assert full_list_reads(fake) == 1
    (read_at,) = rows(conn, "SELECT value FROM settings WHERE key = 'full_list_at'")[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", read_at)

    sdist(fake, "b", "1.1")
    sdist(fake, "New_One", "0.1")
    fake.remove_project("c")
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert full_list_reads(fake) == 0
    assert sorted(fake.project_paths()) == ["/simple/b/", "/simple/c/", "/simple/new-one/"]
    assert (s.projects_seen, s.projects_synced, s.new_packages) == (3, 3, 1)
    assert (s.new_versions, s.deleted_packages) == (2, 1) and s.errors == []
    assert rows(conn, "SELECT package FROM packages WHERE deleted") == [("c",)]
    assert rows(conn, "SELECT display_name, upstream_serial, synced_serial FROM packages"
                      " WHERE package = 'new-one'") == [
        ("New_One", fake.projects["new-one"].serial, fake.projects["new-one"].serial)]
    assert rows(conn, "SELECT value FROM settings WHERE key = 'upstream_serial'") == [
        (str(fake.serial),)]

    fake.requests_log.clear()
    s = sync(conn, cfg)                                   # nothing new: nothing read
    # the changelog, then the upstream's serial (has it gone back?)
    assert fake.requests_log == ["/pypi", "/pypi"] and s.projects_synced == 0

    sdist(fake, "c", "2.0")                               # a deleted project comes back
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert full_list_reads(fake) == 0 and fake.project_paths() == ["/simple/c/"]
    assert rows(conn, "SELECT package FROM packages WHERE deleted") == []
    assert version_row(conn, "c", "2.0")["deleted"] is False


def test_full_list_read_when_due_or_asked(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    sdist(fake, "b", "1.0")
    cfg = config(dsn, fake, upstream_xmlrpc=fake.xmlrpc_url)
    sync(conn, cfg)
    fake.requests_log.clear()
    sync(conn, cfg)
    assert full_list_reads(fake) == 0

    # the last full read is older than full_list_interval (a day by default)
    rows(conn, "UPDATE settings SET value = '2000-01-01T00:00:00Z' WHERE key = 'full_list_at'"
               " RETURNING 1")
    sdist(fake, "b", "1.1")
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert full_list_reads(fake) == 1 and fake.project_paths() == ["/simple/b/"]
    assert s.projects_seen == 2 and s.new_versions == 1
    assert rows(conn, "SELECT value > '2000-01-01T00:00:00Z' FROM settings"
                      " WHERE key = 'full_list_at'") == [(True,)]
    fake.requests_log.clear()
    sync(conn, cfg)
    assert full_list_reads(fake) == 0

    fake.requests_log.clear()
    sync(conn, cfg, full_list=True)                       # piwheels sync --full-list
    assert full_list_reads(fake) == 1

    fake.requests_log.clear()
    sync(conn, config(dsn, fake, upstream_xmlrpc=fake.xmlrpc_url, full_list_interval=0))
    assert full_list_reads(fake) == 1

    fake.xmlrpc = False                                   # the changelog stops answering
    sdist(fake, "a", "1.1")
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert full_list_reads(fake) == 1 and fake.project_paths() == ["/simple/a/"]
    assert s.new_versions == 1


@pytest.mark.parametrize("first_run", [True, False], ids=["first-run", "later-full-list"])
def test_project_created_while_the_list_is_read_is_not_missed(conn, dsn, fake, monkeypatch,
                                                               first_run):
    """A project created after the list was served but before the run saved its serial."""
    sdist(fake, "a", "1.0")
    cfg = config(dsn, fake, upstream_xmlrpc=fake.xmlrpc_url)
    if not first_run:
        sync(conn, cfg)
    real = Upstream.list_projects

    def list_then_release(self):
        plist = real(self)
        sdist(fake, "late", "1.0")      # upstream moves on while the list is being merged
        return plist

    monkeypatch.setattr(Upstream, "list_projects", list_then_release)
    sync(conn, cfg, full_list=True)
    monkeypatch.setattr(Upstream, "list_projects", real)
    fake.requests_log.clear()
    sync(conn, cfg)                     # changelog-only: the full list is not due
    assert full_list_reads(fake) == 0
    assert version_row(conn, "late", "1.0")["deleted"] is False
    assert needs_sync(conn) == set()


def test_serial_going_back_reads_the_full_list(conn, dsn, fake):
    """Another mirror or a restored upstream: a lower serial than the one we stored."""
    sdist(fake, "a", "1.0")
    sdist(fake, "b", "1.0")
    cfg = config(dsn, fake, upstream_xmlrpc=fake.xmlrpc_url)
    sync(conn, cfg)
    rows(conn, "UPDATE settings SET value = %s WHERE key = 'upstream_serial' RETURNING 1",
         str(fake.serial + 1000))
    sdist(fake, "b", "1.1")
    fake.requests_log.clear()
    s = sync(conn, cfg)
    assert full_list_reads(fake) == 1 and fake.project_paths() == ["/simple/b/"]
    assert s.new_versions == 1
    # the saved serial never moves backwards: until the upstream passes it, each run
    # finds the changelog empty and reads the full list again
    assert rows(conn, "SELECT value FROM settings WHERE key = 'upstream_serial'") == [
        (str(fake.serial + 1000 - 1),)]
    sdist(fake, "a", "1.1")
    fake.requests_log.clear()
    sync(conn, cfg)
    assert full_list_reads(fake) == 1 and fake.project_paths() == ["/simple/a/"]


def test_stale_page_leaves_the_package_flagged(conn, dsn, fake, monkeypatch):
    """A page older than the serial the list announced (a stale cache) is read again."""
    sdist(fake, "a", "1.0")
    cfg = config(dsn, fake)
    sync(conn, cfg)
    sdist(fake, "a", "1.1")
    real = Upstream.project

    def stale(self, name):
        page = real(self, name)
        if page is not None:
            page.serial -= 1            # what a cache in front of the upstream still has
        return page

    monkeypatch.setattr(Upstream, "project", stale)
    sync(conn, cfg)
    assert needs_sync(conn) == {"a"}
    monkeypatch.setattr(Upstream, "project", real)
    sync(conn, cfg)
    assert needs_sync(conn) == set()
    assert rows(conn, "SELECT synced_serial FROM packages WHERE package = 'a'") == [
        (fake.serial,)]


# ---------------------------------------------------------------- HTML upstream: no serials


def test_without_serials_oldest_are_resynced(conn, dsn, html_fake, monkeypatch):
    for name in ("a", "b", "c"):
        sdist(html_fake, name, "1.0")
    cfg = config(dsn, html_fake)
    sync(conn, cfg)
    monkeypatch.setattr(projectlist, "RESYNC_OLDEST", 2)
    html_fake.requests_log.clear()
    sync(conn, cfg)
    assert len(html_fake.project_paths()) == 2
    html_fake.requests_log.clear()
    sync(conn, cfg)
    assert len(html_fake.project_paths()) == 2   # the one left out comes first now


def test_changelog_flags_changed_packages(conn, dsn, html_fake, monkeypatch):
    monkeypatch.setattr(projectlist, "RESYNC_OLDEST", 0)
    for name in ("a", "b"):
        sdist(html_fake, name, "1.0")
    # the full list on every run, the changelog on top of it
    cfg = config(dsn, html_fake, upstream_xmlrpc=html_fake.xmlrpc_url, full_list_interval=0)
    sync(conn, cfg)
    assert rows(conn, "SELECT value FROM settings WHERE key = 'upstream_serial'") == [
        (str(html_fake.serial),)]
    html_fake.yank(("b", "1.0"))
    html_fake.requests_log.clear()
    s = sync(conn, cfg)
    assert html_fake.project_paths() == ["/simple/b/"] and s.yanked == 1
    assert rows(conn, "SELECT value FROM settings WHERE key = 'upstream_serial'") == [
        (str(html_fake.serial),)]
    html_fake.rename_project("a", "a-two")
    html_fake.requests_log.clear()
    sync(conn, cfg)
    assert html_fake.project_paths() == ["/simple/a-two/"]
    assert rows(conn, "SELECT package FROM packages WHERE deleted") == [("a",)]


# ---------------------------------------------------------------- named sync


def test_named_sync(conn, dsn, fake):
    sdist(fake, "Foo_Bar.baz", "1.0")
    sdist(fake, "other", "1.0")
    cfg = config(dsn, fake)
    s = sync(conn, cfg, ["FOO-bar-baz", "missing"])
    assert "/simple/" not in fake.requests_log
    assert s.errors == ["sync: missing not found upstream"]
    assert rows(conn, "SELECT package, display_name FROM packages") == [
        ("foo-bar-baz", "Foo_Bar.baz")]
    assert version_row(conn, "foo-bar-baz", "1.0")["deleted"] is False
    fake.remove_project("Foo_Bar.baz")
    s = sync(conn, cfg, ["foo_bar_baz"])
    assert s.deleted_packages == 1 and s.errors == []
    assert rows(conn, "SELECT deleted FROM packages") == [(True,)]


def test_bad_name_writes_nothing(conn, dsn, fake):
    sdist(fake, "good", "1.0")
    with pytest.raises(UpstreamError) as e:
        sync(conn, config(dsn, fake), ["good", "x y"])
    assert str(e.value) == "sync: 'x y' is not a valid package name"
    assert fake.requests_log == []
    assert rows(conn, "SELECT count(*) FROM packages") == [(0,)]


# ---------------------------------------------------------------- upstream failures


def test_malformed_root_is_one_line(conn, dsn, fake):
    fake.malformed("/simple/", body=b"{nope")
    with pytest.raises(UpstreamError) as e:
        sync(conn, config(dsn, fake))
    msg = str(e.value)
    assert "\n" not in msg and "malformed JSON" in msg and "check 'upstream'" in msg


def test_unreachable_upstream_is_one_line(conn, dsn):
    fake = FakeUpstream().start()
    url = fake.url
    fake.stop()
    with pytest.raises(UpstreamError) as e:
        sync(conn, from_dict({"database": dsn, "upstream": url, "http_retries": 0}))
    assert "\n" not in str(e.value) and "cannot get" in str(e.value)
    assert rows(conn, "SELECT count(*) FROM packages") == [(0,)]


# ---------------------------------------------------------------- the queue


def test_queue_gets_buildable_versions_only(conn, dsn, fake):
    rows(conn, "SELECT register_builder('h', 'cp311', 'linux_x86_64', '3.11')")
    sdist(fake, "a", "1.0")
    sdist(fake, "a", "2.0")
    fake.yank(("a", "2.0"))
    wheel(fake, "binonly", "1.0")
    sdist(fake, "Foo_Bar.baz", "0.1")
    cfg = config(dsn, fake)
    sync(conn, cfg)
    queue = rows(conn, "SELECT package, version, target FROM queue ORDER BY 1, 2")
    assert queue == [("a", "1.0", "cp311-linux_x86_64"),
                     ("foo-bar-baz", "0.1", "cp311-linux_x86_64")]
    fake.yank(("a", "1.0"))
    fake.unyank(("a", "2.0"))
    sync(conn, cfg)
    assert rows(conn, "SELECT package, version FROM queue ORDER BY 1, 2") == [
        ("a", "2.0"), ("foo-bar-baz", "0.1")]
    fake.remove_project("Foo_Bar.baz")
    sync(conn, cfg)
    assert rows(conn, "SELECT package, version FROM queue") == [("a", "2.0")]


def test_builder_registered_after_sync_gets_the_queue(conn, dsn, fake):
    sdist(fake, "a", "1.0")
    wheel(fake, "b", "1.0")
    sync(conn, config(dsn, fake))
    rows(conn, "SELECT register_builder('h', 'cp311', 'linux_x86_64', '3.11')")
    assert rows(conn, "SELECT package, version FROM queue") == [("a", "1.0")]


# ---------------------------------------------------------------- scale and progress


class _ListOnly:
    """An upstream that lists many projects and has no changelog."""

    url = "http://127.0.0.1:9/simple/"
    xmlrpc_url = None

    def __init__(self, names: list[str], serials: dict[str, int]) -> None:
        self.listing = ProjectList(names=names, serials=serials, serial=len(names))

    def list_projects(self) -> ProjectList:
        return self.listing


def test_list_phase_is_batched(conn, dsn, fake, monkeypatch):
    monkeypatch.setattr(summarymod, "PROGRESS_EVERY", 0)
    names = [f"Pkg_{i}" for i in range(25_000)] + ["pkg-0"]
    up = _ListOnly(names, {n: i + 1 for i, n in enumerate(names)})
    cfg = config(dsn, fake)
    summary = summarymod.SyncSummary()
    events: list[summarymod.SyncProgress] = []
    projectlist.sync_list(conn, up, summary, summarymod.Progress(events.append))
    messages = [str(e) for e in events]
    assert summary.new_packages == 25_000
    assert rows(conn, "SELECT count(*), count(*) FILTER (WHERE needs_sync) FROM packages") == [
        (25_000, 25_000)]
    assert rows(conn, "SELECT count(*) FROM package_names") == [(25_001,)]
    assert rows(conn, "SELECT upstream_serial FROM packages WHERE package = 'pkg-0'") == [
        (25_001,)]
    assert any("loading the project list" in m for m in messages)
    assert "25,000 new" in messages[-1]
    assert (events[-1].stage, events[-1].done, events[-1].total) == ("listed", 25_001, 25_000)
    loading = [e for e in events if e.stage == "list" and e.total]
    assert loading and loading[-1].total == 25_001 and loading[-1].done <= 25_001
    assert cfg.sync_workers == 4


def test_progress_messages(conn, dsn, fake, monkeypatch):
    monkeypatch.setattr(summarymod, "PROGRESS_EVERY", 0)
    for name in ("a", "b", "c"):
        sdist(fake, name, "1.0")
    events: list = []
    s = sync(conn, config(dsn, fake), progress=events.append)
    messages = [str(e) for e in events]
    assert any(re.fullmatch(r"sync: 3/3 projects, 3 new versions, 0 errors, [\d,]+/s", m)
               for m in messages), messages
    # The same report, typed: nothing needs to parse the line.
    assert [(e.done, e.total) for e in events if e.stage == "projects"][-1] == (3, 3)
    stages = [e.stage for e in events]
    assert stages[0] == "list" and stages.index("listed") < stages.index("projects")
    assert str(s).startswith("sync: 3 projects seen, 3 synced, 3 new packages, 3 new versions")
    assert "\n" not in str(s)
