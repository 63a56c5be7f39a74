"""Provisioning a master's database: database and owner, migrations, settings, logins."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from .. import db
from ..db import writes
from ..errors import AdminError, PiwheelsError

GROUPS = {"master": "piwheels_master", "builder": "piwheels_builder", "web": "piwheels_web"}


def _dsn(dsn: str, **over: str) -> str:
    return psycopg2.extensions.make_dsn(dsn, **over)


def _connect(dsn: str, autocommit: bool = True):
    return db.connect(dsn, autocommit=autocommit)


def password_matches(stored: str | None, password: str, user: str) -> bool:
    """True if ``password`` is the one PostgreSQL stored (SCRAM-SHA-256 or md5) for ``user``."""
    if not stored:
        return False
    if stored.startswith("SCRAM-SHA-256$"):
        try:
            head, keys = stored[len("SCRAM-SHA-256$"):].split("$", 1)
            iterations, salt = head.split(":", 1)
            stored_key, server_key = keys.split(":", 1)
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                         int(iterations))
        except ValueError:
            return False
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        return (hmac.compare_digest(base64.b64encode(hashlib.sha256(client_key).digest()).decode(),
                                    stored_key)
                and hmac.compare_digest(base64.b64encode(server).decode(), server_key))
    if stored.startswith("md5"):
        return hmac.compare_digest(
            stored, "md5" + hashlib.md5((password + user).encode()).hexdigest())
    return False


def ensure_database(admin_dsn: str, name: str, owner: str, check: bool = False,
                    owner_password: str | None = None) -> dict[str, Any]:
    """The owner login role and the database it owns exist."""
    changes: list[str] = []
    conn = _connect(admin_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (owner,))
            row = cur.fetchone()
            if row is None:
                changes.append(f"create role {owner}")
                if not check:
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
            if owner_password is not None and (
                    row is None or not password_matches(row[0], owner_password, owner)):
                changes.append(f"set password of {owner}")
                if not check:
                    cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(owner)),
                                (owner_password,))
            cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                        (name,))
            row = cur.fetchone()
            if row is None:
                changes.append(f"create database {name}")
                if not check:
                    cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' "
                                        "TEMPLATE template0").format(
                        sql.Identifier(name), sql.Identifier(owner)))
            elif row[0] != owner:
                changes.append(f"database {name} owner {row[0]} -> {owner}")
                if not check:
                    cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                        sql.Identifier(name), sql.Identifier(owner)))
            for group in GROUPS.values():
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,))
                if cur.fetchone() is None:
                    changes.append(f"create role {group}")
                    if not check:
                        cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(
                            sql.Identifier(group)))
    finally:
        conn.close()
    return {"changed": bool(changes), "changes": changes}


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


def ensure_logins(admin_dsn: str, logins: list[dict[str, Any]],
                  check: bool = False) -> dict[str, Any]:
    """Login roles IN ROLE piwheels_<group>: ``{name, group, password?, state?}``."""
    changes: list[str] = []
    conn = _connect(admin_dsn)
    try:
        with conn.cursor() as cur:
            for login in logins:
                name, state = login["name"], login.get("state", "present")
                group = GROUPS.get(login.get("group", "builder"))
                if group is None:
                    raise AdminError(f"login {name}: group must be one of "
                                     f"{', '.join(GROUPS)}, not {login.get('group')!r}")
                ident = sql.Identifier(name)
                cur.execute("SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = %s",
                            (name,))
                row = cur.fetchone()
                if state == "absent":
                    if row is not None:
                        changes.append(f"drop role {name}")
                        if not check:
                            cur.execute(sql.SQL("DROP ROLE {}").format(ident))
                    continue
                if row is None:
                    changes.append(f"create role {name}")
                    if not check:
                        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
                elif not row[1]:
                    changes.append(f"allow {name} to log in")
                    if not check:
                        cur.execute(sql.SQL("ALTER ROLE {} LOGIN").format(ident))
                password = login.get("password")
                if password and (row is None or not password_matches(row[0], password, name)):
                    changes.append(f"set password of {name}")
                    if not check:
                        cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(ident),
                                    (password,))
                cur.execute("SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
                            " JOIN pg_roles u ON u.oid = m.member"
                            " WHERE g.rolname = %s AND u.rolname = %s", (group, name))
                if cur.fetchone() is None:
                    changes.append(f"grant {group} to {name}")
                    if not check:
                        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group),
                                                                     ident))
    finally:
        conn.close()
    return {"changed": bool(changes), "changes": changes}


def database(params: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """Everything piwheels_db does: database, owner, groups, schema, settings, logins."""
    admin, name, owner = params["admin_dsn"], params["name"], params.get("owner", "piwheels")
    out: dict[str, Any] = {"changes": [], "applied": []}
    if params.get("state", "present") == "present":
        r = ensure_database(admin, name, owner, check, params.get("owner_password"))
        out["changes"] += r["changes"]
        if params.get("schema", True):
            m = migrate(admin, name, owner, check)
            out["applied"] = m["applied"]
            out["schema_version"] = m["schema_version"]
            out["changes"] += [f"apply {a}" for a in m["applied"]]
        s = set_settings(admin, name, params.get("settings") or {}, check)
        out["changes"] += s["changes"]
    out["changes"] += ensure_logins(admin, params.get("logins") or [], check)["changes"]
    out["changed"] = bool(out["changes"])
    return out

