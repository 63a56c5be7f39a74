"""sync against a fake upstream on 127.0.0.1 and a real PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from upstream_server import FakeUpstream, make_sdist

from piwheels_build import sync as syncmod
from piwheels_build.config import from_dict
from piwheels_build.errors import UpstreamError
from piwheels_build.sync import SyncInterrupted, sync
from piwheels_build.upstream import ProjectList

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


def test_interrupt_commits_finished_projects(conn, dsn, fake, monkeypatch):
    for name in ("a", "b", "c", "d"):
        sdist(fake, name, "1.0")
    real = syncmod._apply_page
    calls = []

    def interrupted(*args, **kw):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(syncmod, "_apply_page", interrupted)
    cfg = config(dsn, fake)
    with pytest.raises(SyncInterrupted) as e:
        sync(conn, cfg)
    assert e.value.summary.projects_synced == 1
    assert needs_sync(conn) == {"a", "b", "c", "d"} - {calls[0]}
    monkeypatch.setattr(syncmod, "_apply_page", real)
    fake.requests_log.clear()
    sync(conn, cfg)
    assert needs_sync(conn) == set() and len(fake.project_paths()) == 3


def test_too_many_failures_stop_the_run(conn, dsn, fake, monkeypatch):
    monkeypatch.setattr(syncmod, "MAX_FAILURES_IN_A_ROW", 3)
    for name in "abcdefgh":
        sdist(fake, name, "1.0")
        fake.fail(f"/simple/{name}/")
    s = sync(conn, config(dsn, fake, sync_workers=1))
    assert "stopped after 3 project pages failed in a row" in s.errors[-1]
    assert len(fake.project_paths()) < 8


# ---------------------------------------------------------------- HTML upstream: no serials


def test_without_serials_oldest_are_resynced(conn, dsn, html_fake, monkeypatch):
    for name in ("a", "b", "c"):
        sdist(html_fake, name, "1.0")
    cfg = config(dsn, html_fake)
    sync(conn, cfg)
    monkeypatch.setattr(syncmod, "RESYNC_OLDEST", 2)
    html_fake.requests_log.clear()
    sync(conn, cfg)
    assert len(html_fake.project_paths()) == 2
    html_fake.requests_log.clear()
    sync(conn, cfg)
    assert len(html_fake.project_paths()) == 2   # the one left out comes first now


def test_changelog_flags_changed_packages(conn, dsn, html_fake, monkeypatch):
    monkeypatch.setattr(syncmod, "RESYNC_OLDEST", 0)
    for name in ("a", "b"):
        sdist(html_fake, name, "1.0")
    cfg = config(dsn, html_fake, upstream_xmlrpc=html_fake.xmlrpc_url)
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
    queue = rows(conn, "SELECT package, version, abi_tag FROM queue ORDER BY 1, 2")
    assert queue == [("a", "1.0", "cp311"), ("foo-bar-baz", "0.1", "cp311")]
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
    monkeypatch.setattr(syncmod, "PROGRESS_EVERY", 0)
    names = [f"Pkg_{i}" for i in range(25_000)] + ["pkg-0"]
    up = _ListOnly(names, {n: i + 1 for i, n in enumerate(names)})
    cfg = config(dsn, fake)
    summary = syncmod.SyncSummary()
    messages: list[str] = []
    syncmod._sync_list(conn, up, summary, syncmod._Progress(messages.append))
    assert summary.new_packages == 25_000
    assert rows(conn, "SELECT count(*), count(*) FILTER (WHERE needs_sync) FROM packages") == [
        (25_000, 25_000)]
    assert rows(conn, "SELECT count(*) FROM package_names") == [(25_001,)]
    assert rows(conn, "SELECT upstream_serial FROM packages WHERE package = 'pkg-0'") == [
        (25_001,)]
    assert any("loading the project list" in m for m in messages)
    assert "25,000 new" in messages[-1]
    assert cfg.sync_workers == 4


def test_progress_messages(conn, dsn, fake, monkeypatch):
    monkeypatch.setattr(syncmod, "PROGRESS_EVERY", 0)
    for name in ("a", "b", "c"):
        sdist(fake, name, "1.0")
    messages: list[str] = []
    s = sync(conn, config(dsn, fake), progress=messages.append)
    assert any(re.fullmatch(r"sync: 3/3 projects, 3 new versions, 0 errors, [\d,]+/s", m)
               for m in messages), messages
    assert str(s).startswith("sync: 3 projects seen, 3 synced, 3 new packages, 3 new versions")
    assert "\n" not in str(s)
