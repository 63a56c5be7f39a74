"""What a builder checks once at start, before it registers or claims anything.

A misconfigured builder used to find out one build at a time: an interpreter
the build user cannot run made every build an ``infrastructure`` failure,
retried with backoff until given up, while ``piwheels build`` exited 0. Here
each such fault is one line (a ``PiwheelsError``: the CLI exits 2, the Ansible
wave fails with it) before any build is claimed:

- the upstream: an http(s) URL with a host (``preflight.check_url``; no request);
- the sandbox: ``sandbox = "auto"`` without ``bwrap`` is refused as root (set
  ``sandbox = "none"`` to accept unisolated builds) and is a warning line
  otherwise; ``sandbox = "none"`` is a warning line on every start;
- the database: the login may read ``schema_version`` and call every function a
  builder calls (``has_function_privilege``), and the schema is this code's;
- the store: a hidden temporary file can be made and removed in ``www/simple``;
- every interpreter: ``python -c`` runs through the very path builds take
  (``Builder._run``: the same sandbox, user, environment, read-only binds and
  limits), with pip importable and TMPDIR writable.

``check`` returns the warning lines; callers show them (the CLI logs them as
warnings, the wave returns them in its answer's ``warnings``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .. import db, fsutil
from ..errors import ConfigError, DatabaseError, StoreError
from ..preflight import check_url

# Exactly what migration 0003 grants piwheels_builder; queue.py calls nothing else.
BUILDER_FUNCTIONS = (
    "register_builder(text, text, text, text, text)",
    "claim_build(integer, integer)",
    "heartbeat_build(bigint, integer)",
    "finish_build(bigint, text, double precision, bytea, bigint, boolean, jsonb)",
    "file_is_recorded(text)",
)
PROBE_TIMEOUT = 60.0  # seconds an interpreter may take to answer the probe
_PROBE_OK = "piwheels-preflight-ok"
_PROBE = ("import os, pip, sys, tempfile; tempfile.TemporaryFile().close(); "
          f"print({_PROBE_OK!r}, sys.version_info[:2])")


def check(cfg, interpreters, box, conn, run: Callable) -> list[str]:
    """Every start check, in order; raise on the first failure, return the warnings.

    ``run`` is ``Builder._run`` (interp, work, lost, start, network=, argv=)."""
    check_url("upstream", cfg.upstream_url())  # its form only: no request at start
    warnings = check_sandbox(cfg, box)
    check_database(conn)
    check_store(cfg.www)
    check_interpreters(cfg, interpreters, box, run)
    return warnings


def _who(box) -> str:
    uid = box.user[0] if box.user else os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_sandbox(cfg, box) -> list[str]:
    """Refuse ``auto`` without bwrap as root; a warning line whenever builds are not isolated."""
    if box.kind == "bubblewrap":
        return []
    if cfg.sandbox == "auto" and shutil.which("bwrap") is None:
        if os.geteuid() == 0:
            raise ConfigError(
                'config: sandbox = "auto" but bwrap is not installed, so builds would run '
                f"on the host as {_who(box)} with no isolation; apt-get install bubblewrap, "
                'or set sandbox = "none" to build without isolation knowingly')
        return ['sandbox = "auto" but bwrap is not installed: builds are NOT isolated (they '
                f"run on the host as {_who(box)}, seeing the system, the store and the "
                'network); apt-get install bubblewrap, or set sandbox = "none" to say so']
    return [f'sandbox = "none": builds are NOT isolated (they run on the host as '
            f"{_who(box)}); for trusted packages only (docs/sandbox.md)"]


def check_database(conn) -> None:
    """The login can read the schema version and call every builder function."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_user, to_regclass('public.schema_version') IS NOT NULL"
                    " AND NOT has_table_privilege('public.schema_version', 'SELECT')")
        user, unreadable = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    fix = (f"make the login a member of piwheels_builder (GRANT piwheels_builder TO {user}; "
           "the builder role's db_logins task does), or restore the group's grants with "
           "'piwheels initdb' (the piwheels_db module) on the master")
    if unreadable:
        raise DatabaseError(f"database: the role {user} may not read schema_version; {fix}")
    db.check_schema(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT f, p IS NOT NULL, p IS NOT NULL AND has_function_privilege(p, "
                    "'EXECUTE') FROM (SELECT f, to_regprocedure('public.' || f) AS p"
                    " FROM unnest(%s::text[]) WITH ORDINALITY AS u(f, n) ORDER BY n) s",
                    (list(BUILDER_FUNCTIONS),))
        rows = cur.fetchall()
    if not conn.autocommit:
        conn.rollback()
    missing = [f.split("(")[0] + "()" for f, exists, _ in rows if not exists]
    if missing:
        raise DatabaseError(f"database: function {', '.join(missing)} missing; "
                            "run 'piwheels initdb' on the master")
    denied = [f.split("(")[0] + "()" for f, _, allowed in rows if not allowed]
    if denied:
        raise DatabaseError(f"database: the role {user} may not call {', '.join(denied)}; {fix}")


def check_store(www: Path) -> None:
    """Make and remove a hidden temporary file in www/simple, as the store writes wheels."""
    simple = Path(www) / "simple"
    probe = fsutil.temp_name(simple / "preflight")
    try:
        simple.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"piwheels preflight\n")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as e:
        try:
            fsutil.unlink(probe)
        except OSError:
            pass
        reason = e.strerror or str(e)
        raise StoreError(
            f"store: cannot write in {simple} ({reason}); mount the store read-write (sshfs "
            f"on a builder) and let {pwd.getpwuid(os.geteuid()).pw_name} write there, "
            "or fix 'www' in the config") from None


def check_interpreters(cfg, interpreters, box, run: Callable) -> None:
    """Each interpreter runs ``python -c`` through the builds' own path, as the build user."""
    network = cfg.build_network == "online"
    for interp in interpreters:
        work = box.new_workdir()
        # Builder._run's timeout is what is left of build_timeout since ``start``:
        # this start leaves PROBE_TIMEOUT (or build_timeout when it is shorter).
        start = time.monotonic() - max(cfg.build_timeout - PROBE_TIMEOUT, 0)
        try:
            result = run(interp, work, threading.Event(), start, network=network,
                         argv=[interp.path, "-c", _PROBE])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if result.reason == "exit" and result.returncode == 0 \
                and _PROBE_OK.encode() in result.log:
            continue
        if result.reason == "timeout":
            detail = f"no answer in {PROBE_TIMEOUT:.0f}s"
        else:
            lines = [ln.strip() for ln in result.log.decode("utf-8", "replace").splitlines()]
            detail = next((ln for ln in reversed(lines) if ln), "") or \
                f"exit status {result.returncode}"
            detail = detail[:200]
        raise ConfigError(
            f"config: pythons: {interp.path} does not run as the build user {_who(box)} in "
            f"the build sandbox ({detail}); let that user read it and enter every directory "
            "above it (pyenv under a 0700 /root: install it under /opt, or use "
            'sandbox = "bubblewrap", which binds it back), or drop it from pythons')
