"""Sync and build waves with structured answers, for the Ansible modules."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .. import db
from ..sync.summary import SyncProgress


def run_sync(config: str, names: list[str] | None = None, check: bool = False,
             progress: Callable[[SyncProgress], None] | None = None,
             full_list: bool = False) -> dict[str, Any]:
    """``piwheels sync`` with a structured answer. Check mode reads what is pending only."""
    from .. import config as configmod
    from ..sync import sync

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

    from .. import config as configmod
    from ..build.builder import Builder, BuildResult
    from ..build.interpreters import resolve

    cfg = configmod.load(config)
    # Directories made in the store stay group-writable for the master's index writer,
    # as the builder service's UMask=0002 keeps them.
    os.umask(0o002)
    interps = resolve(cfg.pythons)
    info = [{"abi": i.abi_tag, "platform": i.platform_tag,
             "target": f"{i.abi_tag}-{i.platform_tag}", "path": i.path} for i in interps]
    if check:
        return {"changed": False, "builds": 0, "built": [], "by_status": {}, "results": [],
                "elapsed": 0.0, "interpreters": info, "msg": "check mode: nothing built"}
    started = time.monotonic()
    results: list[BuildResult] = []
    idle_since = time.monotonic()
    # Builder refuses a misconfiguration first, before anything is claimed (the schema, the
    # grants, the sandbox, the store, each interpreter: build/preflight.py).
    builder = Builder(cfg, interps)
    try:
        while len(results) < batch:
            summary = builder.run(batch=batch - len(results), stop=threading.Event())
            results += summary.results
            if summary.results:
                idle_since = time.monotonic()
                continue
            if time.monotonic() - idle_since >= idle_timeout:
                break
            time.sleep(poll)
    finally:
        builder.close()
    elapsed = round(time.monotonic() - started, 2)
    rows = [dict(asdict(r), line=str(r)) for r in results]
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return {"changed": bool(results), "builds": len(results),
            "built": [f for r in results for f in r.files], "by_status": by_status,
            "results": rows, "elapsed": elapsed, "interpreters": info,
            "failed_builds": failed_builds(rows),
            "warnings": builder.warnings,  # Ansible shows each (builds not isolated)
            "msg": f"{len(results)} builds in {elapsed:.1f}s"}


#: Outcomes that are not failures: built, or not for this Python (Requires-Python).
NOT_FAILED = ("success", "not-for-python")


def failed_builds(rows: list[dict]) -> list[dict]:
    """The results (dicts with a ``status``) a wave reports as not succeeding: neither
    built nor ruled out by the sdist's Requires-Python (``not-for-python``)."""
    return [r for r in rows if r["status"] not in NOT_FAILED]
