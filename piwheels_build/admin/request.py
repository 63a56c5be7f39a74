"""The JSON entry point ``python -m piwheels_build.admin``: one request on
standard input, one answer on standard output.

    {"action": "database", "params": {...}, "check": false}
    -> {"changed": true, "applied": [...], ...}   or   {"failed": true, "msg": "..."}

No password ever appears on a command line."""

from __future__ import annotations

import json
import sys
from typing import Any

import psycopg2
import psycopg2.extensions

from ..errors import AdminError, PiwheelsError
from .provisioning import database
from .queueops import queue_facts, refresh, requeue, skip
from .waves import run_build, run_sync


def _config_dsn(config: str | None) -> str:
    from .. import config as configmod

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
            out = skip(dsn, p["package"], p.get("version"), p.get("target"), p.get("note"),
                       p.get("state", "present"), check)
        elif op == "requeue":
            if not p.get("version"):
                raise AdminError("queue: requeue needs a version")
            out = requeue(dsn, p["package"], p["version"], p.get("target"),
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

