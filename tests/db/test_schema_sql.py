"""db/schema.sql is what the migrations produce: a migration added without
regenerating it (python -m piwheels_build.db.schema) fails here."""

from piwheels_build import db
from piwheels_build.db import schema


def test_schema_sql_equals_the_migrated_schema(pg_cluster):
    pg_cluster.createdb("schema_sql_check")
    conn = db.connect(pg_cluster.dsn("schema_sql_check"))
    try:
        assert db.schema_version(conn) == 0
        db.migrate(conn)
    finally:
        conn.close()
    dumped = schema.dump(pg_cluster.dsn("schema_sql_check"))
    checked_in = schema.SCHEMA_SQL.read_text(encoding="utf-8")
    assert dumped == checked_in, (
        "piwheels_build/db/schema.sql is out of date: python -m piwheels_build.db.schema"
    )


def test_schema_sql_names_every_migrations_function():
    text = schema.SCHEMA_SQL.read_text(encoding="utf-8")
    assert text.startswith(schema.HEADER)
    for name in ("refresh_queue_all", "package_changed", "farm_stats", "write_versions"):
        assert f"FUNCTION public.{name}(" in text


def test_normalise_drops_comments_settings_and_restrict_lines():
    raw = ("--\n-- PostgreSQL database dump\n--\n\\restrict abc123\nSET x = 1;\n"
           "SELECT pg_catalog.set_config('search_path', '', false);\n\n\n"
           "CREATE TABLE public.t (\n    a integer\n);\n\n\n\\unrestrict abc123\n")
    assert schema.normalise(raw) == "CREATE TABLE public.t (\n    a integer\n);\n"


def test_a_schema_change_shows_in_the_dump(pg_cluster):
    """What the comparison above relies on: one more object changes the dump."""
    pg_cluster.createdb("schema_sql_changed")
    conn = db.connect(pg_cluster.dsn("schema_sql_changed"))
    try:
        db.migrate(conn)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE forgotten_in_schema_sql (x integer)")
        conn.commit()
    finally:
        conn.close()
    dumped = schema.dump(pg_cluster.dsn("schema_sql_changed"))
    assert "forgotten_in_schema_sql" in dumped
    assert dumped != schema.SCHEMA_SQL.read_text(encoding="utf-8")
