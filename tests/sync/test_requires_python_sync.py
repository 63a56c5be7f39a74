"""Requires-Python through sync (a fake upstream on 127.0.0.1, real PostgreSQL): each
version's sdist specifier and mask, the queue without the excluded targets, an invalid
specifier counted and ignored, and the one-shot fill of versions synced before 0008."""

from __future__ import annotations

import pytest
from helpers.queue_helpers import queued, register
from helpers.upstream_server import FakeUpstream, make_sdist

from piwheels_build.config import from_dict
from piwheels_build.requirespython import excluded_mask
from piwheels_build.sync import backfill, sync
from piwheels_build.sync.summary import Progress, SyncSummary


def config(dsn: str, fake: FakeUpstream):
    return from_dict({"database": dsn, "upstream": fake.url, "http_retries": 0,
                      "http_timeout": 5, "sync_workers": 2})


def sdist(fake: FakeUpstream, name: str, version: str, **kw) -> None:
    filename, data = make_sdist(name, version)
    fake.add_file(name, filename, data, **kw)


def versions(conn) -> dict[tuple[str, str], tuple]:
    with conn.cursor() as cur:
        cur.execute("SELECT package, version, requires_python, python_excluded FROM versions")
        out = {(p, v): (spec, mask) for p, v, spec, mask in cur.fetchall()}
    conn.commit()
    return out


@pytest.mark.parametrize("use_json", [True, False], ids=["json", "html"])
def test_sync_keeps_the_sdists_requires_python_and_the_queue_skips_excluded_targets(
        conn, dsn, use_json):
    register(conn, "cp38", "a")
    register(conn, "cp311", "b")
    with FakeUpstream(json=use_json) as fake:
        sdist(fake, "new", "1.0", requires_python=">=3.9")
        sdist(fake, "new", "0.9", requires_python=">=3.6")
        sdist(fake, "old", "1.0")
        sdist(fake, "later", "1.0", requires_python=">=3.12")
        # A wheel's own specifier does not decide: the sdist is what is built.
        fake.add_file("old", "old-1.0-py3-none-any.whl", b"w", requires_python=">=3.13")
        summary = sync(conn, config(dsn, fake))
    assert summary.errors == []
    assert versions(conn) == {
        ("new", "1.0"): (">=3.9", excluded_mask(">=3.9")),
        ("new", "0.9"): (">=3.6", excluded_mask(">=3.6")),
        ("old", "1.0"): (None, 0),
        ("later", "1.0"): (">=3.12", excluded_mask(">=3.12")),
    }
    # new 1.0 starts on cp311 (cp38 excluded); later 1.0 is for no active Python.
    assert queued(conn) == {("new", "1.0", "cp311-linux_armv7l"),
                            ("new", "0.9", "cp38-linux_armv7l"),
                            ("old", "1.0", "cp38-linux_armv7l")}


def test_a_changed_requires_python_requeues_on_the_next_sync(conn, dsn):
    register(conn, "cp38", "a")
    register(conn, "cp311", "b")
    with FakeUpstream() as fake:
        filename, data = make_sdist("foo", "1.0")
        fake.add_file("foo", filename, data)
        sync(conn, config(dsn, fake))
        assert queued(conn) == {("foo", "1.0", "cp38-linux_armv7l")}
        fake.remove_file(filename)
        fake.add_file("foo", filename, data, requires_python=">=3.10")
        sync(conn, config(dsn, fake))
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}


def test_an_invalid_specifier_is_no_constraint_and_is_counted(conn, dsn):
    register(conn, "cp38", "a")
    with FakeUpstream() as fake:
        sdist(fake, "odd", "1.0", requires_python=">=3.6.*")      # invalid PEP 440
        sdist(fake, "odd", "2.0", requires_python="python3 please")
        sdist(fake, "fine", "1.0", requires_python=">=3.8")
        summary = sync(conn, config(dsn, fake))
    assert summary.errors == []
    assert summary.invalid_requires_python == 2
    assert "2 with an invalid Requires-Python (ignored)" in str(summary)
    assert versions(conn)[("odd", "1.0")] == (">=3.6.*", 0)
    assert queued(conn) == {("odd", "1.0", "cp38-linux_armv7l"),
                            ("odd", "2.0", "cp38-linux_armv7l"),
                            ("fine", "1.0", "cp38-linux_armv7l")}


def test_versions_synced_before_0008_are_evaluated_by_the_next_run(conn, dsn):
    register(conn, "cp38", "a")
    register(conn, "cp311", "b")
    with FakeUpstream() as fake:
        for i in range(7):
            sdist(fake, f"p{i}", "1.0", requires_python=">=3.9" if i % 2 else None)
        sync(conn, config(dsn, fake))
        # As a database migrated to 0008 has them: nothing evaluated yet, queued as before.
        with conn.cursor() as cur:
            cur.execute("UPDATE versions SET requires_python = NULL, python_excluded = NULL")
            cur.execute("SELECT refresh_queue()")
        conn.commit()
        assert len(queued(conn)) == 7 and {t for _, _, t in queued(conn)} == {"cp38-linux_armv7l"}
        assert backfill.pending(conn) == 7
        seen = []
        summary = sync(conn, config(dsn, fake), progress=seen.append)
    assert backfill.pending(conn) == 0
    assert summary.requires_python_filled == 7
    assert "7 versions' Requires-Python evaluated" in str(summary)
    stages = [p for p in seen if p.stage == "requires-python"]
    assert stages and stages[-1].done == stages[-1].total == 7
    got = versions(conn)
    assert got[("p1", "1.0")] == (">=3.9", excluded_mask(">=3.9"))
    assert got[("p0", "1.0")] == (None, 0)
    assert queued(conn) == {(f"p{i}", "1.0", "cp311-linux_armv7l" if i % 2 else "cp38-linux_armv7l")
                            for i in range(7)}


def test_the_fill_walks_in_batches(conn, dsn, monkeypatch):
    register(conn, "cp38", "a")
    with FakeUpstream() as fake:
        for i in range(5):
            sdist(fake, f"p{i}", "1.0", requires_python=">=3.9")
        sync(conn, config(dsn, fake))
    with conn.cursor() as cur:
        cur.execute("UPDATE versions SET requires_python = NULL, python_excluded = NULL")
    conn.commit()
    calls = []
    real = backfill.writes.fill_requires_python

    def counted(cur, rows):
        calls.append(len(rows))
        return real(cur, rows)

    monkeypatch.setattr(backfill.writes, "fill_requires_python", counted)
    assert backfill.fill(conn, SyncSummary(), Progress(None), batch=2) == 5
    assert calls == [2, 2, 1]            # one transaction per batch
    assert backfill.pending(conn) == 0
    assert all(m == excluded_mask(">=3.9") for _, m in versions(conn).values())
    assert backfill.fill(conn, SyncSummary(), Progress(None), batch=2) == 0
