"""Provisioning a master's database: migrations and settings.

The database, its owner, the group roles and the login roles are made by the
master role with the ``community.postgresql`` modules (roles/master,
roles/common/tasks/db_logins.yml); what is ours alone is the schema (numbered
migrations, applied as the owner) and the settings the SQL functions read.
"""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from .. import db
from ..db import writes
from ..errors import AdminError, PiwheelsError


def _dsn(dsn: str, **over: str) -> str:
    return psycopg2.extensions.make_dsn(dsn, **over)


def _connect(dsn: str, autocommit: bool = True):
    return db.connect(dsn, autocommit=autocommit)


def migrate(admin_dsn: str, name: str, owner: str, check: bool = False) -> dict[str, Any]:
    """Apply pending migrations as the owner (so the owner owns every object)."""
    latest = db.latest_version()
    try:
        conn = _connect(_dsn(admin_dsn, dbname=name))
    except PiwheelsError:
        if check:  # the database itself would be created first
            return {"changed": True, "applied": [m[1] for m in db.migrations()],
                    "schema_version": latest}
        raise
    try:
        current = db.schema_version(conn)
        pending = [m[1] for m in db.migrations() if m[0] > current]
        if current > latest:
            raise AdminError(f"database: schema version {current} is newer than this code "
                             f"({latest}); upgrade piwheels-build")
        if check or not pending:
            return {"changed": bool(pending), "applied": pending, "schema_version": current
                    if not pending else latest}
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        applied = db.migrate(conn)
        return {"changed": bool(applied), "applied": applied,
                "schema_version": db.schema_version(conn)}
    finally:
        conn.close()


def set_settings(admin_dsn: str, name: str, values: dict[str, Any],
                 check: bool = False) -> dict[str, Any]:
    """Master-side settings the SQL functions read (retry_limit, retry_delay)."""
    if not values:
        return {"changed": False, "changes": []}
    changes = []
    try:
        conn = _connect(_dsn(admin_dsn, dbname=name))
    except PiwheelsError:
        if check:
            return {"changed": True, "changes": [f"set {k}" for k in values]}
        raise
    try:
        with conn.cursor() as cur:
            for key, value in sorted(values.items()):
                cur.execute("SELECT value FROM settings WHERE key = %s", (key,))
                row = cur.fetchone()
                if row is None or row[0] != str(value):
                    changes.append(f"set {key} = {value}")
                    if not check:
                        writes.set_setting(cur, key, str(value))
    except psycopg2.errors.UndefinedTable:
        if check:
            return {"changed": True, "changes": [f"set {k}" for k in values]}
        raise
    finally:
        conn.close()
    return {"changed": bool(changes), "changes": changes}


def database(params: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """What piwheels_db does: the schema (``schema``: true by default) and the settings.

    ``params``: ``admin_dsn`` (a superuser's; its dbname is replaced), ``name``,
    ``owner``, ``schema``, ``settings``. Returns ``changed``, ``changes`` (one
    line each), ``applied`` (migration files) and ``schema_version``.
    """
    admin, name, owner = params["admin_dsn"], params["name"], params.get("owner", "piwheels")
    out: dict[str, Any] = {"changes": [], "applied": []}
    if params.get("schema", True):
        m = migrate(admin, name, owner, check)
        out["applied"] = m["applied"]
        out["schema_version"] = m["schema_version"]
        out["changes"] += [f"apply {a}" for a in m["applied"]]
    s = set_settings(admin, name, params.get("settings") or {}, check)
    out["changes"] += s["changes"]
    out["changed"] = bool(out["changes"])
    return out
