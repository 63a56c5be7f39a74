"""The schema, its migrations and its roles, on a real PostgreSQL."""

import psycopg2
import pytest

from piwheels_build import db
from piwheels_build.errors import DatabaseError


def test_migrations_are_numbered_and_recorded(conn):
    numbers = [n for n, _, _ in db.migrations()]
    assert numbers == sorted(set(numbers)) and numbers[0] == 1
    assert db.schema_version(conn) == db.latest_version()


def test_migrate_is_idempotent(conn):
    assert db.migrate(conn) == []
    db.check_schema(conn)


def test_empty_database_is_reported(pg_cluster):
    pg_cluster.createdb("empty_one")
    c = db.connect(pg_cluster.dsn("empty_one"))
    with pytest.raises(DatabaseError, match="piwheels initdb"):
        db.check_schema(c)
    assert db.migrate(c) and db.schema_version(c) == db.latest_version()
    c.close()


def test_unreachable_database_is_one_line():
    with pytest.raises(DatabaseError) as e:
        db.connect("host=/nonexistent-dir port=1 dbname=x connect_timeout=2")
    assert "\n" not in str(e.value) and "cannot connect" in str(e.value)


def _login(conn, role, password="pw"):
    with conn.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {role}_login")
        cur.execute(f"CREATE ROLE {role}_login LOGIN PASSWORD %s IN ROLE {role}", (password,))
    conn.commit()


def test_builder_role_may_only_call_functions(conn, dsn):
    _login(conn, "piwheels_builder")
    bconn = psycopg2.connect(dsn.replace("user=piwheels", "user=piwheels_builder_login"))
    with bconn.cursor() as cur:
        cur.execute("SELECT register_builder('pi1', 'cp311', 'linux_armv7l', '3.11.2')")
        assert cur.fetchone()[0] > 0
        bconn.commit()
        for sql in ("SELECT * FROM packages", "SELECT * FROM builds", "DELETE FROM queue",
                    "SELECT refresh_queue()"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(sql)
            bconn.rollback()
    bconn.close()


def test_web_role_reads_but_cannot_write(conn, dsn):
    _login(conn, "piwheels_web")
    wconn = psycopg2.connect(dsn.replace("user=piwheels", "user=piwheels_web_login"))
    with wconn.cursor() as cur:
        cur.execute("SELECT count(*) FROM files")
        assert cur.fetchone()[0] == 0
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor)"
                        " VALUES ('cp39-linux_armv7l', 'cp39', 'linux_armv7l', 3, 9)")
        wconn.rollback()
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT claim_build(1)")
    wconn.close()
