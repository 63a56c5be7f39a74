"""What ``piwheels sync`` and ``piwheels index`` check once at start, before any work.

The builder's own checks are ``build/preflight.py``; these are the master's commands'.
Each fault is one line (a ``PiwheelsError``: the CLI exits 2), found before a page is
fetched or written, instead of halfway through a run:

- sync: the upstream (``upstream``, or pip's own when unset, and ``upstream_xmlrpc``)
  is an ``http``/``https`` URL with a host and a valid port. Only its form is checked:
  no request at start, so a run with the upstream away still starts, retries and
  leaves its projects flagged (docs/reliability.md), and an offline run is not refused;
- index: ``www`` (and ``www/simple``) can be made and written (a hidden temporary
  file is made and removed in each, as the writer does for every page);
- both: the login may read ``schema_version``, the schema is this code's (migrated),
  and the role may read the tables and call the functions the command uses.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2.extensions

from . import db, fsutil
from .errors import ConfigError, DatabaseError, StoreError

# What each command reads and calls (sync/, index/ and the CLI's poll); all of it is
# piwheels_master's (migrations 0003, 0006-0008).
SYNC_TABLES = ("packages", "versions", "upstream_files", "settings")
SYNC_FUNCTIONS = ("set_setting", "package_changed", "load_project_list",
                  "merge_project_list", "flag_named", "add_packages", "add_package_names",
                  "packages_not_found", "packages_synced", "write_versions",
                  "write_upstream_files", "fill_requires_python")
INDEX_TABLES = ("targets", "target_skips", "build_logs", "builders", "builds", "dependencies",
                "files", "packages", "queue", "versions", "index_dirty", "project_downloads",
                "project_downloads_daily", "file_downloads", "downloads_days", "downloads_by")
INDEX_FUNCTIONS = ("take_dirty_batch", "clear_dirty", "redirty", "expire_leases",
                   "farm_stats")
# The downloads reader (downloads/, migration 0009), also run by the index service;
# the index writer reads the counts it leaves.
DOWNLOADS_TABLES = ("download_logs", "settings")
DOWNLOADS_FUNCTIONS = ("record_downloads", "mark_download_pages", "set_setting")


def check_sync(cfg, conn: psycopg2.extensions.connection) -> None:
    """Before a sync: its upstream URLs' form, then the database (see the module)."""
    check_url("upstream", cfg.upstream_url())
    if cfg.upstream_xmlrpc:
        check_url("upstream_xmlrpc", cfg.upstream_xmlrpc)
    check_database(conn, "sync", SYNC_TABLES, SYNC_FUNCTIONS)


def check_index(cfg, conn: psycopg2.extensions.connection) -> None:
    """Before an index run: the database, then ``www`` writable (see the module)."""
    check_database(conn, "index", INDEX_TABLES, INDEX_FUNCTIONS)
    check_www(Path(cfg.www))


def check_downloads(conn: psycopg2.extensions.connection) -> None:
    """Before reading access logs: the database (see the module)."""
    check_database(conn, "downloads", DOWNLOADS_TABLES, DOWNLOADS_FUNCTIONS)


def check_url(key: str, url: str) -> None:
    """``url`` is http(s), with a host and a port that parse; ConfigError (one line) if not.
    No network: its form only."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
    except ValueError as e:
        raise ConfigError(f"config: {key} = {url!r} is not a URL ({e}); "
                          "give an http(s) URL such as https://mirror.example/simple/") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        why = (f"its scheme is {parts.scheme!r}" if parts.scheme not in ("http", "https")
               else "it has no host")
        raise ConfigError(f"config: {key} = {url!r} is not an http(s) URL ({why}); "
                          "give one such as https://mirror.example/simple/")


def check_www(www: Path) -> None:
    """Make (if missing) ``www`` and ``www/simple`` and a hidden temporary file in each,
    as the index writer does; StoreError (one line) when that fails."""
    for directory in (www, www / "simple"):
        probe = fsutil.temp_name(directory / "preflight")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            try:
                fsutil.unlink(probe)
            except OSError:
                pass
            user = pwd.getpwuid(os.geteuid()).pw_name
            raise StoreError(f"index: cannot write in {directory} ({e.strerror or e}); let "
                             f"{user} write there, or fix 'www' in the config") from None


def check_database(conn: psycopg2.extensions.connection, command: str,
                   tables: tuple[str, ...], functions: tuple[str, ...]) -> None:
    """The login may read ``schema_version``, the schema is migrated to this code's
    version, and it may SELECT ``tables`` and EXECUTE ``functions`` (every overload);
    DatabaseError (one line) naming what is missing otherwise."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_user, to_regclass('public.schema_version') IS NOT NULL"
                    " AND NOT has_table_privilege('public.schema_version', 'SELECT')")
        user, unreadable = cur.fetchone()
    conn.rollback()
    fix = (f"make the login a member of piwheels_master (GRANT piwheels_master TO {user}; "
           "the master role's db_logins task does), or restore the grants with "
           "'piwheels initdb' as the database owner")
    if unreadable:
        raise DatabaseError(f"database: the role {user} may not read schema_version; {fix}")
    db.check_schema(conn)  # not initialised, older or newer: one line
    with conn.cursor() as cur:
        cur.execute("SELECT t FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n)"
                    " WHERE NOT has_table_privilege('public.' || t, 'SELECT') ORDER BY n",
                    (list(tables),))
        unreadable_tables = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT f FROM unnest(%s::text[]) WITH ORDINALITY AS u(f, n)"
                    " WHERE NOT EXISTS (SELECT 1 FROM pg_proc p"
                    "  WHERE p.proname = f AND p.pronamespace = 'public'::regnamespace"
                    "  AND has_function_privilege(p.oid, 'EXECUTE')) ORDER BY n",
                    (list(functions),))
        denied = [r[0] + "()" for r in cur.fetchall()]
    conn.rollback()
    needs = ([f"read {', '.join(unreadable_tables)}"] if unreadable_tables else []) + \
        ([f"call {', '.join(denied)}"] if denied else [])
    if needs:
        raise DatabaseError(f"database: {command} needs to {' and '.join(needs)} but the "
                            f"role {user} may not; {fix}")
