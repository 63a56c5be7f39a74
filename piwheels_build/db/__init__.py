"""Connections and numbered migrations: the schema is the contract between parts."""

from __future__ import annotations

import re
from importlib import resources

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from ..errors import DatabaseError

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 0x70697768  # advisory lock so two initdb runs never interleave


def connect(dsn: str, *, autocommit: bool = False) -> psycopg2.extensions.connection:
    """Open a connection, or fail with one line that says what to check."""
    try:
        conn = psycopg2.connect(dsn, connect_timeout=10)
    except psycopg2.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "no answer"
        raise DatabaseError(
            f"database: cannot connect ({first}); check 'database' in the config "
            "and that PostgreSQL is running"
        ) from None
    conn.autocommit = autocommit
    return conn


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            found.append((int(m[1]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest_version() -> int:
    return migrations()[-1][0]


def schema_version(conn: psycopg2.extensions.connection) -> int:
    """The highest migration applied, 0 on an empty database."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.schema_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        return cur.fetchone()[0]


def migrate(conn: psycopg2.extensions.connection) -> list[str]:
    """Apply every migration not applied yet, each in its own transaction."""
    applied = []
    if not conn.autocommit:
        conn.rollback()
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        current = schema_version(conn)
        try:
            for number, name, sql in migrations():
                if number <= current:
                    continue
                cur.execute(sql)
                cur.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (number, name)
                )
                conn.commit()
                applied.append(name)
        except psycopg2.Error as e:
            conn.rollback()
            msg = (e.pgerror or str(e)).strip().splitlines()[0]
            raise DatabaseError(f"database: migration {name} failed: {msg}") from None
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
            conn.commit()
    return applied


def check_schema(conn: psycopg2.extensions.connection) -> None:
    """Refuse to run against a database this code does not know."""
    have, want = schema_version(conn), latest_version()
    if not conn.autocommit:
        conn.rollback()
    if have == 0:
        raise DatabaseError("database: not initialised; run 'piwheels initdb'")
    if have < want:
        raise DatabaseError(
            f"database: schema version {have}, this code needs {want}; run 'piwheels initdb'"
        )
    if have > want:
        raise DatabaseError(
            f"database: schema version {have} is newer than this code ({want}); upgrade piwheels"
        )


def set_settings(conn: psycopg2.extensions.connection, values: dict[str, str]) -> None:
    """Store master-side settings the SQL functions read (retry limit and delay)."""
    from .writes import set_setting

    with conn.cursor() as cur:
        for key, value in values.items():
            set_setting(cur, key, str(value))
    conn.commit()
