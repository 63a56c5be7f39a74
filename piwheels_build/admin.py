"""Operator actions shared by the Ansible modules (library/) and Fabric tasks.

Every action is idempotent, reports whether it changed anything, and can run
in check mode (say what it would change, change nothing). The modules call
``python -m piwheels_build.admin`` with one JSON request on stdin (so no
password ever appears on a command line) and read one JSON answer on stdout:

    {"action": "database", "params": {...}, "check": false}
    -> {"changed": true, "applied": [...], ...}   or   {"failed": true, "msg": "..."}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from . import db
from .errors import PiwheelsError

GROUPS = {"master": "piwheels_master", "builder": "piwheels_builder", "web": "piwheels_web"}
SKIP_REASON = "admin"


class AdminError(PiwheelsError):
    """An operator request that cannot be carried out (bad name, unknown package...)."""


def _dsn(dsn: str, **over: str) -> str:
    return psycopg2.extensions.make_dsn(dsn, **over)


def _connect(dsn: str, autocommit: bool = True):
    return db.connect(dsn, autocommit=autocommit)


# -- passwords ---------------------------------------------------------------


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


# -- database, group roles, schema --------------------------------------------


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
                        cur.execute("INSERT INTO settings (key, value) VALUES (%s, %s) "
                                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                                    (key, str(value)))
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


# -- queue: facts, refresh, skip, requeue ---------------------------------------


def queue_facts(dsn: str) -> dict[str, Any]:
    from . import status

    conn = _connect(dsn, autocommit=False)
    try:
        db.check_schema(conn)
        return status.collect(conn)
    finally:
        conn.close()


def _missing_queue_rows(cur, package: str | None = None, version: str | None = None) -> int:
    cur.execute("SELECT count(*) FROM wanted_builds w WHERE (%(p)s::text IS NULL OR "
                "w.package = %(p)s) AND (%(v)s::text IS NULL OR w.version = %(v)s) AND NOT "
                "EXISTS (SELECT 1 FROM queue q WHERE q.package = w.package AND "
                "q.version = w.version AND q.abi_tag = w.abi_tag)",
                {"p": package, "v": version})
    return cur.fetchone()[0]


def _stale_queue_rows(cur, package: str | None = None, version: str | None = None) -> int:
    cur.execute("SELECT count(*) FROM queue q WHERE q.build_id IS NULL AND "
                "(%(p)s::text IS NULL OR q.package = %(p)s) AND (%(v)s::text IS NULL OR "
                "q.version = %(v)s) AND NOT EXISTS (SELECT 1 FROM wanted_builds w WHERE "
                "w.package = q.package AND w.version = q.version AND w.abi_tag = q.abi_tag)",
                {"p": package, "v": version})
    return cur.fetchone()[0]


def refresh(dsn: str, check: bool = False) -> dict[str, Any]:
    """Bring the queue in line with the rules; changed if rows were added or dropped."""
    conn = _connect(dsn, autocommit=False)
    try:
        db.check_schema(conn)
        with conn.cursor() as cur:
            added, dropped = _missing_queue_rows(cur), _stale_queue_rows(cur)
            if not check and (added or dropped):
                cur.execute("SELECT refresh_queue()")
        conn.commit()
    finally:
        conn.close()
    return {"changed": bool(added or dropped), "added": added, "dropped": dropped}


def _version_row(cur, package: str, version: str | None) -> None:
    from .names import normalize

    cur.execute("SELECT 1 FROM packages WHERE package = %s", (normalize(package),))
    if cur.fetchone() is None:
        raise AdminError(f"queue: unknown package {package!r}; sync it first")
    if version is not None:
        cur.execute("SELECT 1 FROM versions WHERE package = %s AND version = %s",
                    (normalize(package), version))
        if cur.fetchone() is None:
            raise AdminError(f"queue: unknown version {package} {version}")


def _abi_row(cur, abi: str) -> None:
    cur.execute("SELECT 1 FROM abis WHERE abi_tag = %s", (abi,))
    if cur.fetchone() is None:
        raise AdminError(f"queue: unknown ABI {abi!r}; a builder registers it")


def _canonical_version(version: str | None) -> str | None:
    if version is None:
        return None
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(version))
    except InvalidVersion:
        return version


def skip(dsn: str, package: str, version: str | None = None, abi: str | None = None,
         note: str | None = None, state: str = "present", check: bool = False) -> dict[str, Any]:
    """Skip (or, with state=absent, unskip) a package, a version, or a version on one ABI."""
    from .names import normalize

    pkg, ver = normalize(package), _canonical_version(version)
    if abi and ver is None:
        raise AdminError("queue: skipping for one ABI needs a version")
    conn = _connect(dsn, autocommit=False)
    changed = False
    try:
        db.check_schema(conn)
        with conn.cursor() as cur:
            _version_row(cur, pkg, ver)
            if abi:
                _abi_row(cur, abi)
                cur.execute("SELECT reason FROM abi_skips WHERE package = %s AND version = %s "
                            "AND abi_tag = %s", (pkg, ver, abi))
                row = cur.fetchone()
                if state == "present" and row is None:
                    changed = True
                    cur.execute("INSERT INTO abi_skips (package, version, abi_tag, reason, note)"
                                " VALUES (%s, %s, %s, 'admin', %s)", (pkg, ver, abi, note))
                elif state == "absent" and row is not None:
                    changed = True
                    cur.execute("DELETE FROM abi_skips WHERE package = %s AND version = %s AND "
                                "abi_tag = %s", (pkg, ver, abi))
            elif ver is not None:
                cur.execute("SELECT skip_reason FROM versions WHERE package = %s AND "
                            "version = %s", (pkg, ver))
                reason = cur.fetchone()[0]
                if state == "present" and reason is None:
                    changed = True
                    cur.execute("UPDATE versions SET skip_reason = 'admin', skip_note = %s "
                                "WHERE package = %s AND version = %s", (note, pkg, ver))
                elif state == "absent" and reason == SKIP_REASON:
                    changed = True
                    cur.execute("UPDATE versions SET skip_reason = NULL, skip_note = NULL "
                                "WHERE package = %s AND version = %s", (pkg, ver))
            else:
                cur.execute("SELECT skip_reason FROM packages WHERE package = %s", (pkg,))
                reason = cur.fetchone()[0]
                if state == "present" and reason is None:
                    changed = True
                    cur.execute("UPDATE packages SET skip_reason = %s WHERE package = %s",
                                (note or SKIP_REASON, pkg))
                elif state == "absent" and reason is not None:
                    changed = True
                    cur.execute("UPDATE packages SET skip_reason = NULL WHERE package = %s",
                                (pkg,))
            if changed:
                cur.execute("SELECT refresh_queue(%s, %s)", (pkg, ver))
                cur.execute("INSERT INTO index_dirty (package) VALUES (%s) "
                            "ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since",
                            (pkg,))
        if check:
            conn.rollback()
        else:
            conn.commit()
    finally:
        conn.close()
    return {"changed": changed, "package": pkg, "version": ver, "abi": abi}


def requeue(dsn: str, package: str, version: str, abi: str | None = None, priority: int = 0,
            check: bool = False) -> dict[str, Any]:
    """An operator's rebuild: forget the failed attempts of a version (on one ABI or all),
    lift an admin or too-many-failures skip, and queue it again.

    A version that has a wheel for that ABI is not rebuilt (the store never
    replaces a published file); the history of the forgotten attempts goes.
    """
    from .names import normalize

    pkg, ver = normalize(package), _canonical_version(version)
    conn = _connect(dsn, autocommit=False)
    forgotten = 0
    try:
        db.check_schema(conn)
        with conn.cursor() as cur:
            _version_row(cur, pkg, ver)
            if abi:
                _abi_row(cur, abi)
            cur.execute("DELETE FROM builds b WHERE b.package = %(p)s AND b.version = %(v)s "
                        "AND (%(a)s::text IS NULL OR b.abi_tag = %(a)s) "
                        "AND b.status NOT IN ('success', 'building') "
                        "AND NOT EXISTS (SELECT 1 FROM files f WHERE f.build_id = b.build_id)",
                        {"p": pkg, "v": ver, "a": abi})
            forgotten = cur.rowcount
            cur.execute("DELETE FROM abi_skips WHERE package = %(p)s AND version = %(v)s "
                        "AND (%(a)s::text IS NULL OR abi_tag = %(a)s)",
                        {"p": pkg, "v": ver, "a": abi})
            forgotten += cur.rowcount
            cur.execute("UPDATE versions SET skip_reason = NULL, skip_note = NULL "
                        "WHERE package = %s AND version = %s "
                        "AND skip_reason IN ('admin', 'too-many-failures')", (pkg, ver))
            forgotten += cur.rowcount
            cur.execute("DELETE FROM queue WHERE package = %(p)s AND version = %(v)s "
                        "AND build_id IS NULL AND not_before > now() "
                        "AND (%(a)s::text IS NULL OR abi_tag = %(a)s)",
                        {"p": pkg, "v": ver, "a": abi})
            forgotten += cur.rowcount
            cur.execute("SELECT refresh_queue(%s, %s)", (pkg, ver))
            added = cur.fetchone()[0]
            reprioritised = 0
            if priority:
                cur.execute("UPDATE queue SET priority = %(pr)s WHERE package = %(p)s AND "
                            "version = %(v)s AND (%(a)s::text IS NULL OR abi_tag = %(a)s) AND "
                            "priority <> %(pr)s", {"p": pkg, "v": ver, "a": abi, "pr": priority})
                reprioritised = cur.rowcount
            cur.execute("SELECT abi_tag FROM queue WHERE package = %(p)s AND version = %(v)s "
                        "AND (%(a)s::text IS NULL OR abi_tag = %(a)s) ORDER BY abi_tag",
                        {"p": pkg, "v": ver, "a": abi})
            queued = [r[0] for r in cur.fetchall()]
            if forgotten:
                cur.execute("INSERT INTO index_dirty (package) VALUES (%s) "
                            "ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since",
                            (pkg,))
        if check:
            conn.rollback()
        else:
            conn.commit()
    finally:
        conn.close()
    changed = bool(forgotten or added or reprioritised)
    return {"changed": changed, "package": pkg, "version": ver, "forgotten": forgotten,
            "added": added, "queued": queued}


# -- sync and build ----------------------------------------------------------------


def run_sync(config: str, names: list[str] | None = None, check: bool = False,
             progress: Callable[[str], None] | None = None,
             full_list: bool = False) -> dict[str, Any]:
    """``piwheels sync`` with a structured answer. Check mode reads what is pending only."""
    from . import config as configmod
    from .sync import sync

    cfg = configmod.load(config)
    conn = db.connect(cfg.database)
    try:
        db.check_schema(conn)
        if check:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM packages WHERE needs_sync")
                pending = cur.fetchone()[0]
            conn.rollback()
            return {"changed": False, "pending": pending, "summary": None,
                    "msg": "check mode: the upstream was not read"}
        summary = sync(conn, cfg, names or None, progress=progress, full_list=full_list)
    finally:
        conn.close()
    data = {k: getattr(summary, k) for k in (
        "projects_seen", "projects_synced", "new_packages", "new_versions", "yanked",
        "unyanked", "deleted_versions", "deleted_packages", "binary_only", "errors")}
    data["elapsed"] = round(summary.elapsed, 2)
    changed = any(data[k] for k in ("new_packages", "new_versions", "yanked", "unyanked",
                                    "deleted_versions", "deleted_packages", "binary_only"))
    return {"changed": changed, "summary": data, "msg": str(summary),
            "failed": bool(summary.errors)}


def run_build(config: str, batch: int = 10, idle_timeout: float = 0.0, poll: float = 2.0,
              check: bool = False) -> dict[str, Any]:
    """A build wave on this machine: up to ``batch`` builds, waiting up to
    ``idle_timeout`` seconds for work other builders' results will queue."""
    import threading

    from . import config as configmod
    from .builder import Builder
    from .interpreters import resolve

    cfg = configmod.load(config)
    # Directories made in the store stay group-writable for the master's index writer,
    # as the builder service's UMask=0002 keeps them.
    os.umask(0o002)
    interps = resolve(cfg.pythons)
    info = [{"abi": i.abi_tag, "platform": i.platform_tag, "path": i.path} for i in interps]
    if check:
        return {"changed": False, "builds": 0, "built": [], "by_status": {}, "results": [],
                "elapsed": 0.0, "interpreters": info, "msg": "check mode: nothing built"}
    conn = db.connect(cfg.database)
    db.check_schema(conn)
    conn.close()
    results: list[dict[str, Any]] = []

    def note(msg: str) -> None:
        # "build: NAME VERSION ABI: STATUS in 1.2s"
        body = msg[len("build: "):] if msg.startswith("build: ") else msg
        head, _, rest = body.partition(": ")
        parts = head.split()
        if len(parts) == 3 and rest:
            results.append({"package": parts[0], "version": parts[1], "abi": parts[2],
                            "status": rest.split()[0], "line": msg})

    started = time.monotonic()
    builds, built, by_status = 0, [], {}
    idle_since = time.monotonic()
    builder = Builder(cfg, interps, progress=note)
    try:
        while builds < batch:
            summary = builder.run(batch=batch - builds, stop=threading.Event())
            builds += summary.builds
            built += summary.built
            for status, n in summary.by_status.items():
                by_status[status] = by_status.get(status, 0) + n
            if summary.builds:
                idle_since = time.monotonic()
                continue
            if time.monotonic() - idle_since >= idle_timeout:
                break
            time.sleep(poll)
    finally:
        builder.close()
    elapsed = round(time.monotonic() - started, 2)
    return {"changed": builds > 0, "builds": builds, "built": built, "by_status": by_status,
            "results": results, "elapsed": elapsed, "interpreters": info,
            "failed_builds": [r for r in results if r["status"] != "success"],
            "msg": f"{builds} builds in {elapsed:.1f}s"}


# -- the JSON entry point ----------------------------------------------------------


def _config_dsn(config: str | None) -> str:
    from . import config as configmod

    if not config:
        raise AdminError("queue: give a dsn or a config file")
    return configmod.load(config).database


def handle(request: dict[str, Any]) -> dict[str, Any]:
    action = request.get("action")
    p = request.get("params") or {}
    check = bool(request.get("check"))
    if action == "database":
        return database(p, check)
    if action == "queue":
        op = p.get("op", "facts")
        dsn = p.get("dsn") or _config_dsn(p.get("config"))
        if op == "facts":
            return {"changed": False, "facts": queue_facts(dsn)}
        if op == "refresh":
            out = refresh(dsn, check)
        elif op == "skip":
            out = skip(dsn, p["package"], p.get("version"), p.get("abi"), p.get("note"),
                       p.get("state", "present"), check)
        elif op == "requeue":
            if not p.get("version"):
                raise AdminError("queue: requeue needs a version")
            out = requeue(dsn, p["package"], p["version"], p.get("abi"),
                          int(p.get("priority") or 0), check)
        else:
            raise AdminError(f"queue: unknown op {op!r}")
        if p.get("facts", True):
            out["facts"] = queue_facts(dsn)
        return out
    if action == "sync":
        return run_sync(p["config"], p.get("names"), check,
                        full_list=bool(p.get("full_list", False)))
    if action == "build":
        return run_build(p["config"], int(p.get("batch", 10)),
                         float(p.get("idle_timeout", 0)), float(p.get("poll", 2)), check)
    raise AdminError(f"admin: unknown action {action!r}")


def main() -> int:
    try:
        request = json.load(sys.stdin)
        out = handle(request)
    except PiwheelsError as e:
        out = {"failed": True, "msg": str(e)}
    except psycopg2.Error as e:
        first = (str(e).strip().splitlines() or ["unknown error"])[0]
        out = {"failed": True, "msg": f"database: {first}"}
    except (KeyError, TypeError, ValueError) as e:
        out = {"failed": True, "msg": f"admin: bad request: {e!r}"}
    json.dump(out, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 1 if out.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
