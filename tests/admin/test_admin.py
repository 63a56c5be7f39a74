"""piwheels_build.admin, called directly: the operator actions behind the
Ansible modules and the Fabric tasks (check mode changes nothing; each
action is idempotent), and its JSON entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg2
import pytest
from helpers.queue_helpers import add_version, claim, finish, queued, register

from piwheels_build import db
from piwheels_build.admin import provisioning, queueops
from piwheels_build.errors import AdminError


def _count(conn, sql: str, *args) -> int:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        n = cur.fetchone()[0]
    conn.commit()
    return n


def test_skip_one_target_then_unskip(conn, dsn):
    register(conn, "cp311", "a")
    b13 = register(conn, "cp313", "b")
    add_version(conn, "foo", "1.0")
    t13 = "cp313-linux_armv7l"
    out = queueops.skip(dsn, "foo", "1.0", target=t13, note="x")
    assert out["changed"] is True and out["target"] == t13
    assert _count(conn, "SELECT count(*) FROM target_skips WHERE target = %s", t13) == 1
    assert _count(conn, "SELECT count(*) FROM target_skips") == 1
    assert queueops.skip(dsn, "foo", "1.0", target=t13)["changed"] is False
    assert queueops.skip(dsn, "foo", "1.0", target=t13, state="absent")["changed"] is True
    assert queueops.skip(dsn, "foo", "1.0", target=t13, state="absent")["changed"] is False
    assert b13


def test_skip_for_a_target_needs_a_version(dsn):
    with pytest.raises(AdminError, match="needs a version"):
        queueops.skip(dsn, "foo", target="cp311-linux_armv7l")


def test_skip_normalizes_names_and_versions(conn, dsn):
    register(conn, "cp311", "a")
    add_version(conn, "foo-bar", "1.0rc1")
    out = queueops.skip(dsn, "Foo_Bar", "1.0-RC1")
    assert (out["changed"], out["package"], out["version"]) == (True, "foo-bar", "1.0rc1")
    assert queued(conn) == set()


def test_requeue_on_one_target_keeps_the_others(conn, dsn):
    b11 = register(conn, "cp311", "a")
    b13 = register(conn, "cp313", "b")
    add_version(conn, "foo", "1.0")
    finish(conn, claim(conn, b11)[0], "failed")
    finish(conn, claim(conn, b13)[0], "failed")
    t13 = "cp313-linux_armv7l"
    planned = queueops.requeue(dsn, "foo", "1.0", target=t13, check=True)
    assert planned["changed"] is True and planned["queued"] == [t13]
    assert queued(conn) == set() and _count(conn, "SELECT count(*) FROM builds") == 2
    done = queueops.requeue(dsn, "foo", "1.0", target=t13)
    assert done["forgotten"] == 1 and done["queued"] == [t13]
    assert _count(conn, "SELECT count(*) FROM builds WHERE target = 'cp311-linux_armv7l'") == 1


def test_requeue_lifts_too_many_failures(conn, dsn):
    register(conn, "cp311", "a")
    add_version(conn, "foo", "1.0")
    with conn.cursor() as cur:
        cur.execute("UPDATE versions SET skip_reason = 'too-many-failures'")
        cur.execute("SELECT refresh_queue()")
    conn.commit()
    assert queued(conn) == set()
    assert queueops.requeue(dsn, "foo", "1.0")["queued"] == ["cp311-linux_armv7l"]


def test_refresh_drops_rows_no_longer_wanted(conn, dsn):
    register(conn, "cp311", "a")
    add_version(conn, "foo", "1.0")
    with conn.cursor() as cur:
        cur.execute("UPDATE versions SET skip_reason = 'admin'")  # behind the queue's back
    conn.commit()
    assert queueops.refresh(dsn, check=True) == {"changed": True, "added": 0, "dropped": 1}
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}
    assert queueops.refresh(dsn)["dropped"] == 1
    assert queued(conn) == set()


def test_database_check_mode_on_a_missing_database(pg_cluster):
    out = provisioning.database({"admin_dsn": pg_cluster.dsn("postgres"), "name": "never_made_db",
                          "owner": "never_made_owner", "settings": {"retry_limit": 2}},
                         check=True)
    assert out["changed"] is True
    assert out["applied"] == [name for _, name, _ in db.migrations()]
    conn = psycopg2.connect(pg_cluster.dsn("postgres"))
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'never_made_owner'")
        assert cur.fetchone()[0] == 0
    conn.close()


def test_json_entry_point_answers_one_line(dsn):
    def ask(request: dict) -> tuple[int, dict]:
        proc = subprocess.run([sys.executable, "-m", "piwheels_build.admin"],
                              input=json.dumps(request), capture_output=True, text=True,
                              timeout=60)
        return proc.returncode, json.loads(proc.stdout)

    rc, out = ask({"action": "queue", "params": {"dsn": dsn}})
    assert rc == 0 and out["changed"] is False and "packages" in out["facts"]
    rc, out = ask({"action": "nope"})
    assert rc == 1 and out == {"failed": True, "msg": "admin: unknown action 'nope'"}
    rc, out = ask({"action": "queue", "params": {"op": "skip", "dsn": dsn}})
    assert rc == 1 and "bad request" in out["msg"]
