"""``db/schema.sql``: the schema the migrations produce, whole, for people to read.

    python -m piwheels_build.db.schema          # rewrite db/schema.sql
    python -m piwheels_build.db.schema --check  # exit 1 if it is out of date

Both migrate a fresh database in a throwaway cluster (db/localdb.py) and read
it back with that PostgreSQL's ``pg_dump --schema-only --no-owner``,
normalised: no comments, no ``SET`` lines, no blank-line runs. The
migrations stay the truth (``piwheels initdb`` applies them, never this
file); tests/db/test_schema_sql.py fails when the two differ.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import DatabaseError
from . import connect, migrate
from .localdb import LocalCluster, find_bindir

SCHEMA_SQL = Path(__file__).with_name("schema.sql")

HEADER = (
    "-- The schema db/migrations/ produce, whole (pg_dump --schema-only, normalised).\n"
    "-- Generated: do not edit. After adding a migration, regenerate it with\n"
    "--     python -m piwheels_build.db.schema\n"
)

# Lines that say nothing about the schema, or change from one dump to the next.
_NOISE = re.compile(r"^(--|SET |SELECT pg_catalog\.set_config\(|\\restrict |\\unrestrict )")


def normalise(dump: str) -> str:
    """pg_dump's text without comments, session settings and repeated blank lines."""
    out: list[str] = []
    for line in dump.splitlines():
        line = line.rstrip()
        if _NOISE.match(line) or (not line and (not out or not out[-1])):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def dump(dsn: str) -> str:
    """The normalised schema of the database at ``dsn``, with the header."""
    proc = subprocess.run(
        [str(find_bindir() / "pg_dump"), "--schema-only", "--no-owner", "--dbname", dsn],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise DatabaseError(f"database: pg_dump failed: {proc.stderr.strip()}")
    return HEADER + "\n" + normalise(proc.stdout)


def generate() -> str:
    """Migrate a fresh database in a throwaway cluster and dump it."""
    with tempfile.TemporaryDirectory(prefix="piwheels-schema-") as tmp:
        Path(tmp).chmod(0o755)  # the cluster may belong to 'postgres' (when run as root)
        cluster = LocalCluster(Path(tmp) / "pg")
        cluster.init()
        cluster.start()
        try:
            cluster.createdb("piwheels")
            conn = connect(cluster.dsn("piwheels"))
            try:
                migrate(conn)
            finally:
                conn.close()
            return dump(cluster.dsn("piwheels"))
        finally:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m piwheels_build.db.schema",
                                 description="Regenerate (or --check) db/schema.sql.")
    ap.add_argument("--check", action="store_true",
                    help="compare only; exit 1 when schema.sql is out of date")
    args = ap.parse_args(argv)
    try:
        text = generate()
    except DatabaseError as e:
        print(e, file=sys.stderr)
        return 2
    if args.check:
        if SCHEMA_SQL.read_text(encoding="utf-8") != text:
            print(f"{SCHEMA_SQL} is out of date: python -m piwheels_build.db.schema",
                  file=sys.stderr)
            return 1
        return 0
    SCHEMA_SQL.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_SQL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
