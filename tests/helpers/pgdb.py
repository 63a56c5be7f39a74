"""Throwaway databases on the tests' real PostgreSQL cluster."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2

from piwheels_build.db.localdb import LocalCluster


def fresh_database(cluster: LocalCluster, name: str) -> Iterator[str]:
    """A migrated database ``name`` copied from the session's template; yields its DSN
    and drops it afterwards (a generator for fixtures of any scope)."""
    conn = psycopg2.connect(cluster.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "template_piwheels"')
    conn.close()
    yield cluster.dsn(name)
    conn = psycopg2.connect(cluster.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()
