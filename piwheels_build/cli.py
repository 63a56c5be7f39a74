"""`piwheels [--config FILE] COMMAND`: every part of the farm, run alone.

One-shot commands print short human lines. The long-running services
(``build --forever``, ``index --watch``, ``serve``) log through stdlib
``logging`` instead, configured here and only here (``_setup_logging``): one
line per event with its level, as ``<N>`` priority prefixes when stderr is the
journal (systemd's ``JOURNAL_STREAM``), else with a time stamp."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

import psycopg2

from . import __version__, db
from . import config as configmod
from .db.reconnect import Link, Stopped
from .errors import PiwheelsError

LOG_LEVEL_ENV = "PIWHEELS_LOG_LEVEL"
_JOURNAL_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                     logging.ERROR: 3, logging.CRITICAL: 2}


def _progress(msg: object) -> None:
    """A progress report (a line, or an object whose str() is one) on stderr."""
    print(msg, file=sys.stderr, flush=True)


def _is_service(args: argparse.Namespace) -> bool:
    """The commands that run until stopped (systemd units): they log, not print."""
    return (args.command == "serve" or (args.command == "build" and args.forever)
            or (args.command == "index" and args.watch))


def _journald() -> bool:
    """stderr is the journal (systemd sets JOURNAL_STREAM to its device:inode)."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return dev.isdigit() and ino.isdigit() and (st.st_dev, st.st_ino) == (int(dev), int(ino))


class _JournalFormatter(logging.Formatter):
    """Each line prefixed ``<N>``, its syslog priority: journald reads it
    (SyslogLevelPrefix=, on by default) and adds the time and unit itself."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _JOURNAL_PRIORITY.get(record.levelno, 6 if record.levelno < 30 else 3)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def _setup_logging(service: bool, verbose: int) -> None:
    """The one place logging is configured: services log INFO and up, one-shot
    commands (which print their own lines) only warnings of their own; ``-v`` or
    $PIWHEELS_LOG_LEVEL lower it."""
    name = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    level = logging.getLevelName(name) if name else None
    if name and not isinstance(level, int):
        raise PiwheelsError(f"{LOG_LEVEL_ENV}={name.lower()!r} is not a log level; "
                            "use debug, info, warning or error")
    if verbose:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if service and _journald():
        handler.setFormatter(_JournalFormatter("%(message)s"))
    elif service:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    else:
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level is not None else logging.INFO if service else logging.WARNING)
    if level is None and not service:
        # A retried request is a warning of urllib3's; sync's summary counts what failed.
        logging.getLogger("urllib3").setLevel(logging.ERROR)


def _service_log(command: str) -> logging.Logger:
    return logging.getLogger(f"piwheels.{command}")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _size(text: str) -> int:
    """A positive size for an option ("8M", "64K" or bytes)."""
    try:
        n = configmod.parse_size(text, "size")
    except PiwheelsError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size (e.g. 8M)")
    return n


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a port number (0-65535)")
    return value


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, like every other expected failure (no usage block)."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        sub = self.prog.removeprefix("piwheels").strip()
        self.exit(2, f"piwheels: {sub + ': ' if sub else ''}{line}; "
                     f"see '{self.prog} --help'\n")


def _conn(cfg: configmod.Config, *, autocommit: bool = False):
    conn = db.connect(cfg.database, autocommit=autocommit)
    db.check_schema(conn)
    return conn


def cmd_initdb(cfg: configmod.Config, args: argparse.Namespace) -> int:
    conn = db.connect(cfg.database)
    applied = db.migrate(conn)
    db.set_settings(conn, {"retry_limit": cfg.retry_limit, "retry_delay": cfg.retry_delay})
    version = db.schema_version(conn)
    conn.close()
    if applied:
        print(f"initdb: applied {', '.join(applied)}; schema version {version}")
    else:
        print(f"initdb: schema version {version} is up to date")
    return 0


def cmd_sync(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from .preflight import check_sync
    from .sync import SyncInterrupted, sync

    # One line, exit 2, nothing fetched: an upstream that is not an http(s) URL, a schema
    # not migrated, a role without the grants sync uses (preflight.py).
    conn = db.connect(cfg.database)
    try:
        check_sync(cfg, conn)
    except BaseException:
        conn.close()
        raise
    try:
        summary = sync(conn, cfg, args.names or None, progress=_progress,
                       full_list=args.full_list)
    except SyncInterrupted as e:
        print(f"{e.summary} (interrupted; run sync again to resume)")
        return 130
    finally:
        conn.close()
    print(summary)
    for err in summary.errors[:20]:
        print(err, file=sys.stderr)
    if len(summary.errors) > 20:
        print(f"sync: ... and {len(summary.errors) - 20} more errors", file=sys.stderr)
    return 1 if summary.errors else 0


def cmd_queue(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from . import status

    conn = _conn(cfg)
    start = time.monotonic()
    with conn.cursor() as cur:
        cur.execute("SELECT refresh_queue()")
        added = cur.fetchone()[0]
    conn.commit()
    state = status.collect(conn)["queue"]
    conn.close()
    if args.json:
        print(json.dumps({"added": added, "queue": state}, indent=2))
        return 0
    print(f"queue: refreshed in {time.monotonic() - start:.1f}s, {added:,} builds added")
    if not state:
        print("queue: no active build target yet; start a builder (piwheels build) to register one")
    for target, q in state.items():
        print(f"queue: {target}: {q['ready']:,} ready, {q['building']:,} building, "
              f"{q['waiting_retry']:,} waiting to retry")
    return 0


def cmd_build(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from .build.builder import Builder
    from .build.interpreters import resolve

    if args.batch is not None and args.batch < 1:
        raise PiwheelsError("build: --batch must be at least 1")
    log = _service_log("build")
    report = log.info if args.forever else _progress
    interps = resolve(cfg.pythons)
    for interp in interps:
        report(f"build: interpreter {interp}")
    stop = threading.Event()
    if args.forever:  # a service waits for the database to come up (SIGTERM ends the wait)
        _stop_on_signals(stop)
        if not _wait_for_database(cfg, log, stop):
            return 0
        _default_signals()
    # Builder checks the schema, the grants, the sandbox, the store and each interpreter
    # first (build/preflight.py): a misconfiguration is one line, exit 2, nothing claimed.
    builder = Builder(cfg, interps, progress=report)
    for line in builder.warnings:  # on every start: builds that are not isolated
        log.warning("build: %s", line)
    _stop_on_signals(stop)
    try:
        summary = builder.run(batch=args.batch, forever=args.forever, stop=stop)
    finally:
        builder.close()
    if args.forever:  # each build was logged as it finished
        report(str(summary))
        return 0
    print(summary)
    for name in summary.built:
        print(f"build: stored {name}")
    return 0


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM (systemd's stop) and SIGINT set ``stop``: the service ends between steps."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _wait_for_database(cfg: configmod.Config, log: logging.Logger,
                       stop: threading.Event) -> bool:
    """A service starting while PostgreSQL is down or starting up (the master rebooting)
    waits for it, with backoff and one line at each end, instead of exiting for systemd
    to restart every 10 s; a wrong password, user or database is still one line, exit 2
    (db/reconnect.py). False when stopped during the wait."""
    link = Link(cfg.database, log=log, stop=stop)
    try:
        link.open()
    except Stopped as e:
        log.info("%s", e)
        return False
    finally:
        link.close()
    return True


def cmd_index(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from .index import write_index
    from .preflight import check_index

    log = _service_log("index")
    report = log.info if args.watch else _progress
    if args.watch:  # a service waits for the database to come up (SIGTERM ends the wait)
        waiting = threading.Event()
        _stop_on_signals(waiting)
        if not _wait_for_database(cfg, log, waiting):
            return 0
        _default_signals()
    # One line, exit 2, nothing written: a www that cannot be written, a schema not
    # migrated, a role without the grants the index writer uses (preflight.py).
    conn = db.connect(cfg.database)
    try:
        check_index(cfg, conn)
        reader = _downloads_reader(cfg, conn, log) if args.watch else None
    except BaseException:
        conn.close()
        raise
    stats_interval = 0 if args.stats else cfg.stats_interval
    summary = write_index(conn, cfg.www, full=args.full, progress=report,
                          stats_interval=stats_interval)
    _warn_low_space(cfg, log)
    if not args.watch:
        print(summary)
        conn.close()
        return 0
    log.info("%s", summary)
    log.info("index: watching for finished builds every %gs (Ctrl-C to stop)", args.interval)
    # From here on a restart of PostgreSQL is waited out (db/reconnect.py): the poll and
    # the run are retried on a new connection; a run cut short is written again whole.
    # SIGTERM (systemd's stop) ends the loop between runs, or a wait for the database.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    link = Link(cfg.database, log=log, conn=conn, stop=stop)
    try:
        last = time.monotonic()
        while not stop.wait(args.interval):
            if reader is not None:  # the access logs: a stat and a probe when nothing is new
                link.call(lambda c: _read_downloads(cfg, reader, c, log))
            # A poll, not LISTEN: a NOTIFY in finish_build made every finish
            # wait for the others' commits (docs/benchmarks.md, dispatch).
            dirty = link.call(_index_dirty)
            if not dirty and time.monotonic() - last < min(cfg.stats_interval,
                                                           cfg.root_interval):
                continue
            summary = link.call(lambda c: write_index(
                c, cfg.www, full=False, stats_interval=cfg.stats_interval,
                root_interval=cfg.root_interval))
            last = time.monotonic()
            if summary.packages_written or summary.projects_written or summary.packages_removed:
                log.info("%s", summary)
            _warn_low_space(cfg, log)
    except KeyboardInterrupt:
        pass
    except Stopped as e:
        log.info("index: %s", e)
    link.close()
    return 0


DOWNLOADS_BUDGET = 32 << 20  # log text per poll of index --watch (about 70,000 lines)


def _downloads_reader(cfg: configmod.Config, conn, log: logging.Logger):
    """The index service's reader of ``access_logs`` (checked now), or None without."""
    from .downloads import Reader, logfiles
    from .preflight import check_downloads

    if not cfg.access_logs:
        return None
    for line in logfiles.check(logfiles.configured(cfg), named=False, service=True):
        log.warning("%s", line)
    check_downloads(conn)
    return Reader(conn, budget=DOWNLOADS_BUDGET)


def _read_downloads(cfg: configmod.Config, reader, conn, log: logging.Logger) -> None:
    from .downloads import logfiles

    reader.conn = conn  # a new connection after a PostgreSQL restart
    summary = reader.read(logfiles.configured(cfg), missing_ok=True, keep_going=True)
    for line in set(summary.errors) - reader.warned:  # an unreadable log: said once
        log.warning("%s", line)
    reader.warned = set(summary.errors)
    if summary.lines:
        log.info("%s", summary)


def cmd_downloads(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from .downloads import Reader, logfiles
    from .downloads.stats import make_stats_due
    from .preflight import check_downloads

    paths = [Path(p).resolve() for p in args.files] or logfiles.configured(cfg)
    if not paths:
        raise PiwheelsError("downloads: no log named and no access_logs in the config; name "
                            "a file or set access_logs (docs/configuration.md)")
    logfiles.check(paths, named=bool(args.files))
    conn = db.connect(cfg.database)
    try:
        check_downloads(conn)
        summary = Reader(conn, chunk=args.chunk, progress=_progress,
                         mark_changed=True).read(paths, missing_ok=not args.files)
    finally:
        conn.close()
    if summary.lines:  # the next index run shows the new totals
        make_stats_due(cfg.www)
    print(summary)
    return 0


def _warn_low_space(cfg: configmod.Config, log: logging.Logger) -> None:
    """One warning line per index run while the store is below store_free_warning."""
    from .diskspace import low_space_warning

    line = low_space_warning(cfg.www, cfg.store_free_warning)
    if line:
        log.warning("%s", line)


def _index_dirty(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM index_dirty)")
        dirty = cur.fetchone()[0]
    conn.rollback()
    return dirty


def cmd_serve(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from .serve import serve

    host = args.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if not cfg.www.is_dir():  # else every request would be a 404, with nothing said
        raise PiwheelsError(f"serve: www {str(cfg.www)!r} is not a directory; run 'piwheels "
                            "index' to write it, or fix 'www' in the config")
    access_log = cfg.path(cfg.serve_access_log) if cfg.serve_access_log else None
    if access_log:  # refused at start, not on the first request
        try:
            with open(access_log, "a"):
                pass
        except OSError as e:
            raise PiwheelsError(f"serve: cannot write the access log {access_log} "
                                f"({e.strerror}); fix serve_access_log in the config") from None
    log = _service_log("serve")
    log.info("serve: %s on http://%s:%s/", cfg.www, shown, args.port)
    log.info("serve: pip install --index-url http://%s:%s/simple/ PACKAGE", shown, args.port)
    if access_log:
        log.info("serve: access log in %s", access_log)
    try:
        serve(cfg.www, host, args.port, access_log=access_log)
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError, TypeError) as e:  # TypeError: a NUL in the host name
        why = getattr(e, "strerror", None) or str(e)
        raise PiwheelsError(f"serve: cannot listen on {host!r}:{args.port}: {why}") from None
    return 0


def cmd_status(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from . import diskspace, status

    conn = _conn(cfg)
    state = status.collect(conn)
    conn.close()
    state["store"] = diskspace.status(cfg.www, cfg.store_free_warning)
    print(json.dumps(state, indent=2) if args.json else status.render(state))
    return 0


def cmd_log(cfg: configmod.Config, args: argparse.Namespace) -> int:
    import gzip

    conn = _conn(cfg)
    with conn.cursor() as cur:
        cur.execute("SELECT b.package, b.version, b.target, b.status, l.log, l.size, l.truncated"
                    " FROM builds b LEFT JOIN build_logs l USING (build_id)"
                    " WHERE b.build_id = %s", (args.build_id,))
        row = cur.fetchone()
    conn.close()
    if row is None:
        raise PiwheelsError(f"log: no build {args.build_id}; see 'piwheels status'")
    package, version, target, status, log, size, truncated = row
    print(f"# build {args.build_id}: {package} {version} {target}: {status}"
          + (f" ({size:,} bytes printed, head and tail kept)" if truncated else ""))
    if log is not None:
        sys.stdout.write(gzip.decompress(bytes(log)).decode("utf-8", "replace"))
    return 0


def _spec(text: str) -> tuple[str, str | None]:
    name, sep, version = text.partition("==")
    if not name or (sep and not version):
        raise PiwheelsError(f"expected NAME or NAME==VERSION, not {text!r}")
    return name, version or None


def cmd_skip(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from .admin import queueops

    name, version = _spec(args.spec)
    result = queueops.skip(cfg.database, name, version, args.target, args.note,
                        state="absent" if args.undo else "present")
    what = " ".join(x for x in (result["package"], result["version"], result["target"]) if x)
    verb = "unskipped" if args.undo else "skipped"
    print(f"skip: {what} {verb}" if result["changed"] else f"skip: {what} unchanged")
    return 0


def cmd_rebuild(cfg: configmod.Config, args: argparse.Namespace) -> int:
    from .admin import queueops

    name, version = _spec(args.spec)
    if version is None:
        raise PiwheelsError("rebuild: name a version, as NAME==VERSION")
    result = queueops.requeue(cfg.database, name, version, args.target, args.priority)
    queued = ", ".join(result["queued"]) or "nothing (built, skipped or not for its Python)"
    print(f"rebuild: {result['package']} {result['version']}: forgot {result['forgotten']} "
          f"attempts; queued for {queued}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="piwheels", description=__doc__)
    ap.add_argument("--config", help=f"TOML configuration file (default: ${configmod.ENV_VAR})")
    ap.add_argument("--version", action="version", version=f"piwheels-build {__version__}")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help=f"log debug messages too (else ${LOG_LEVEL_ENV}, default: info for "
                         "the services, warnings for the other commands)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("initdb", help="create or upgrade the database schema").set_defaults(
        func=cmd_initdb)
    p = sub.add_parser("sync", help="bring packages and versions in from the upstream index")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these packages")
    p.add_argument("--full-list", action="store_true",
                   help="read the whole project list even when the changelog would do"
                        " (that is how deletions are noticed)")
    p.set_defaults(func=cmd_sync)
    p = sub.add_parser("queue", help="recompute the build queue and show it per build target")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue)
    p = sub.add_parser("build", help="claim and build wheels with this machine's interpreters")
    p.add_argument("--batch", type=int, metavar="N", help="stop after N builds")
    p.add_argument("--forever", action="store_true", help="wait for new work instead of exiting")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("index", help="write the static index for packages that changed")
    p.add_argument("--full", action="store_true", help="rewrite every page")
    p.add_argument("--watch", action="store_true", help="keep writing as builds finish")
    p.add_argument("--interval", type=_positive_float, default=1.0, metavar="SECONDS",
                   help="with --watch: how often to look for finished builds (default 1)")
    p.add_argument("--stats", action="store_true",
                   help="rewrite the stats page now (else at most every stats_interval)")
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("downloads", help="count downloads from the web server's access logs")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="access logs (combined format; .gz too); default: access_logs")
    p.add_argument("--chunk", type=_size, default="8M", metavar="SIZE",
                   help="log text per transaction (default 8M)")
    p.set_defaults(func=cmd_downloads)
    p = sub.add_parser("serve", help="serve the www/ tree (one-machine use; nginx in a fleet)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("skip", help="an operator's skip of a package, version or build target")
    p.add_argument("spec", metavar="NAME[==VERSION]")
    p.add_argument("--target", "--abi", dest="target", metavar="TARGET",
                   help="only this build target (cp311-linux_armv7l), ABI (cp311) or platform"
                        " (linux_armv7l); needs a version")
    p.add_argument("--note", help="why, shown on the project page")
    p.add_argument("--undo", action="store_true", help="lift the skip")
    p.set_defaults(func=cmd_skip)
    p = sub.add_parser("rebuild", help="forget failed attempts of a version and queue it again")
    p.add_argument("spec", metavar="NAME==VERSION")
    p.add_argument("--target", "--abi", dest="target", metavar="TARGET",
                   help="only this build target (cp311-linux_armv7l), ABI or platform")
    p.add_argument("--priority", type=int, default=0, help="build before newer releases")
    p.set_defaults(func=cmd_rebuild)
    p = sub.add_parser("log", help="print the log of one build")
    p.add_argument("build_id", type=int)
    p.set_defaults(func=cmd_log)
    p = sub.add_parser("status", help="what the farm is doing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    service = _is_service(args)
    # An expected failure is one line, "piwheels: ...", never a traceback; from a
    # service under journald it carries the error priority.
    prefix = "<3>" if service and _journald() else ""
    try:
        _setup_logging(service, args.verbose)
        cfg = configmod.load(args.config)
        return args.func(cfg, args)
    except PiwheelsError as e:
        print(f"{prefix}piwheels: {e}", file=sys.stderr)
        return e.exit_code
    except psycopg2.Error as e:
        first = (str(e).strip().splitlines() or ["unknown error"])[0]
        print(f"{prefix}piwheels: database: {first}; check that PostgreSQL is running",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}piwheels: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
