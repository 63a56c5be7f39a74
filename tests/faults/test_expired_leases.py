"""A dead builder's build is seen as abandoned without any builder claiming work.

The builder is "killed" by never finishing (nor heartbeating) a build it
claimed with a 1-second lease; no other builder runs. ``piwheels status`` and
the index writer sweep expired leases themselves (``expire_leases()``,
migration 0007), so the build shows as abandoned and is queued again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg2
import pytest
from helpers.queue_helpers import add_version, claim, finish, register

from piwheels_build import queue


def piwheels(config, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "piwheels_build.cli", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def wait_for_lease_to_pass(conn, build_id: int) -> None:
    """Until the database's clock (the one that counts) is past the lease."""
    for _ in range(600):
        with conn.cursor() as cur:
            cur.execute("SELECT lease_expires < now() FROM queue WHERE build_id = %s",
                        (build_id,))
            row = cur.fetchone()
        conn.rollback()
        if row is None or row[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the lease never ran out")


def build_status(conn, build_id: int) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT status FROM builds WHERE build_id = %s", (build_id,))
        status = cur.fetchone()[0]
    conn.rollback()
    return status


def test_expired_lease_shows_abandoned_in_status_and_on_the_project_page(tmp_path, dsn, conn):
    builder = register(conn, "cp311")
    add_version(conn, "foo", "1.0")
    build_id = claim(conn, builder, lease=1)[0]
    cfg = tmp_path / "piwheels.toml"
    cfg.write_text(f'database = "{dsn}"\nwww = "{tmp_path / "www"}"\n')
    page = tmp_path / "www/project/foo/index.json"
    with conn.cursor() as cur:
        cur.execute("SELECT mark_dirty(ARRAY['foo'])")  # as sync leaves a new package
    conn.commit()

    piwheels(cfg, "index")
    cell = json.loads(page.read_text())["versions"][0]["targets"][0]
    assert cell["status"] == "building" and cell["build"]["status"] == "building"

    wait_for_lease_to_pass(conn, build_id)
    state = json.loads(piwheels(cfg, "status", "--json").stdout)
    assert state["builds"]["abandoned"]["count"] == 1 and "building" not in state["builds"]
    assert state["queue"]["cp311-linux_armv7l"] == {"ready": 1, "building": 0,
                                                    "waiting_retry": 0}
    assert build_status(conn, build_id) == "abandoned"

    piwheels(cfg, "index")  # incremental: expire_leases marked the package dirty
    cell = json.loads(page.read_text())["versions"][0]["targets"][0]
    assert cell["status"] == "queued" and cell["build"]["status"] == "abandoned"
    assert "abandoned" in cell["note"]
    assert "abandoned" in (tmp_path / "www/project/foo/index.html").read_text()


def test_the_index_writer_alone_expires_the_lease(tmp_path, dsn, conn):
    """No status, no claim: the writer's own run shows the build abandoned."""
    builder = register(conn, "cp311")
    add_version(conn, "foo", "1.0")
    build_id = claim(conn, builder, lease=1)[0]
    cfg = tmp_path / "piwheels.toml"
    cfg.write_text(f'database = "{dsn}"\nwww = "{tmp_path / "www"}"\n')
    wait_for_lease_to_pass(conn, build_id)
    piwheels(cfg, "index")
    assert build_status(conn, build_id) == "abandoned"
    cell = json.loads((tmp_path / "www/project/foo/index.json").read_text())
    assert cell["versions"][0]["targets"][0]["build"]["status"] == "abandoned"


def test_expire_leases_returns_rows_and_leaves_live_leases(conn):
    builder = register(conn, "cp311")
    add_version(conn, "dead", "1.0", released="2024-01-01")
    add_version(conn, "alive", "1.0", released="2024-02-01")  # newer: claimed first
    alive = claim(conn, builder, lease=300)
    dead = claim(conn, builder, lease=0)
    assert (dead[1], alive[1]) == ("dead", "alive")
    released = queue.expire_leases(conn)
    conn.commit()
    assert released == [(dead[0], "dead", "1.0", "cp311-linux_armv7l")]
    assert queue.expire_leases(conn) == []
    conn.commit()
    assert build_status(conn, alive[0]) == "building"
    with conn.cursor() as cur:
        cur.execute("SELECT package FROM index_dirty ORDER BY package")
        assert [r[0] for r in cur.fetchall()] == ["dead"]
    conn.rollback()
    # a late finish from the dead build records nothing; claim_build still sweeps too
    assert finish(conn, dead[0]) is False
    again = claim(conn, builder, lease=0)
    assert again[1] == "dead"
    assert claim(conn, builder, lease=300)[1] == "dead"  # claim_build released it itself
    assert build_status(conn, again[0]) == "abandoned"


def test_only_the_master_may_expire_leases(conn, pg_cluster):
    login = f"expire_test_builder_{os.getpid()}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {login} LOGIN IN ROLE piwheels_builder")
    conn.commit()
    builder_conn = psycopg2.connect(pg_cluster.dsn(conn.info.dbname, user=login))
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), builder_conn.cursor() as cur:
            cur.execute("SELECT * FROM expire_leases()")
    finally:
        builder_conn.close()
        with conn.cursor() as cur:
            cur.execute(f"DROP ROLE {login}")
        conn.commit()
