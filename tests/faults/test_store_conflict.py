"""A wheel whose name is already published with other bytes: the builder refuses to
overwrite it and says so in the build's log; the published file and its record stay
as they were."""

from __future__ import annotations

import hashlib

import psycopg2
import pytest
from helpers.fixture_packages import pure

pytestmark = pytest.mark.slow


def test_a_published_wheel_is_never_overwritten(make_farm):
    farm = make_farm()
    farm.add("conflicted", "1.0", pure("conflicted", "conflicted"))
    farm.run("sync")
    farm.run("build")
    [(filename, sha256, first_build)] = farm.query(
        "SELECT filename, sha256, build_id FROM files WHERE package = 'conflicted'")
    stored = farm.www / "simple" / "conflicted" / filename
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha256

    # The fault: the same version queued again (an operator's SQL, a restored backup)
    # while the store holds a file of that name with other bytes than the new build's.
    published = stored.read_bytes() + b"\0"
    stored.write_bytes(published)
    [(target,)] = farm.query("SELECT target FROM builds WHERE build_id = %s", first_build)
    conn = psycopg2.connect(farm.dsn)
    with conn, conn.cursor() as cur:  # committed on leaving
        cur.execute("INSERT INTO queue (package, version, target, released) "
                    "SELECT package, version, %s, released FROM versions "
                    "WHERE package = 'conflicted'", (target,))
    conn.close()
    farm.run("build")

    rows = farm.query("SELECT build_id, status FROM builds WHERE package = 'conflicted' "
                      "ORDER BY build_id")
    assert [s for _, s in rows] == ["success", "infrastructure"]
    log = farm.run("log", str(rows[1][0])).stdout
    assert f"{filename} already exists with different contents" in log
    assert stored.read_bytes() == published  # not overwritten
    assert farm.query("SELECT build_id, sha256 FROM files WHERE filename = %s",
                      filename) == [(first_build, sha256)]
    leftovers = [p.name for p in stored.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
