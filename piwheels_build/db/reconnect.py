"""A service's connection that comes back after PostgreSQL restarts.

The long-running services (``piwheels build --forever``, ``piwheels index
--watch``) talk to the database through a :class:`Link`: each call that fails
because the connection is gone (the server restarted, was shut down, or is
still starting up) closes the dead connection, waits with capped exponential
backoff and jitter, reconnects and runs the call again. The outage is logged
once, as a warning when it starts and a line when the database is back; no
traceback, and the service never exits because of it.

Only calls that are safe to repeat go through :meth:`Link.call`: a claim (a
claim lost with its answer is a lease that expires), a heartbeat, a read, an
index batch (rewritten whole) and ``finish_build``, which records a build only
while it is ``building``, so a second call after a lost answer records nothing.

At start a service waits the same way (:meth:`Link.open`) while the server is
unreachable or starting up, as after a reboot of the master, but only for the
failures waiting can fix (:func:`unreachable`): a refused connection, a missing
socket, a timeout, "the database system is starting up", too many clients. A
wrong password, user or database name, a ``pg_hba.conf`` that rejects the login,
a host name or a socket directory that does not exist is refused at once, in one
line. The
one-shot commands do not wait at start.

The retry policy is tenacity's (docs/dependencies.md).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
import tenacity

from ..errors import DatabaseError

T = TypeVar("T")

#: The longest wait between two reconnection attempts, in seconds.
MAX_DELAY = 30.0


class Stopped(Exception):
    """The service was asked to stop while it waited for the database to come back."""


class _Unreachable(DatabaseError):
    """A reconnection attempt failed (``db.connect``'s one-line error)."""


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone, not that the statement was wrong:
    no connection, a closed one, a connection exception (SQLSTATE class 08) or an
    operator's intervention (57P: shutdown, crash, starting up)."""
    if isinstance(exc, _Unreachable | psycopg2.InterfaceError):
        return True
    if isinstance(exc, psycopg2.OperationalError):
        code = exc.pgcode or ""
        return code == "" or code.startswith(("08", "57P"))
    return False


# libpq's words for a server that is down, starting, stopping, full or out of reach
# for now: waiting fixes these. Anything else at start (authentication, a database or
# role that does not exist, pg_hba.conf, an unknown host, a bad option) is refused.
_TRANSIENT = (
    "connection refused", "no such file or directory", "timeout expired", "timed out",
    "the database system is starting up", "the database system is shutting down",
    "the database system is in recovery mode", "not yet accepting connections",
    "no route to host", "network is unreachable", "temporary failure in name resolution",
    "too many clients", "connection slots are reserved", "server closed the connection",
    "connection reset by peer", "could not receive data from server",
    "terminating connection due to administrator command",
)


def unreachable(message: str) -> bool:
    """Whether a failure to connect (libpq's message) is one that waiting can fix: the
    server is down, starting up, shutting down, out of connections or out of reach."""
    text = message.lower()
    return any(marker in text for marker in _TRANSIENT)


def _no_socket_directory(dsn: str) -> bool:
    """The DSN names Unix socket directories and none exists: a wrong ``host``, not a
    server that is down (its directory stays when it stops, and tmpfiles makes it at
    boot)."""
    try:
        host = psycopg2.extensions.parse_dsn(dsn).get("host") or ""
    except psycopg2.Error:
        return False
    hosts = [h for h in host.split(",") if h]
    return bool(hosts) and all(h.startswith("/") and not os.path.isdir(h) for h in hosts)


def _first_line(exc: BaseException) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    # libpq's reason alone, without db.connect's advice around it
    inner = re.fullmatch(r"database: cannot connect \((.*)\); check .*", line)
    return inner[1] if inner else line


class Link:
    """One connection (``dsn``) that reconnects: :attr:`conn` for a call made once,
    :meth:`call` for one retried across an outage.

    ``stop`` (a threading.Event) ends the wait for the database: :meth:`call` then
    raises :class:`Stopped`. ``give_up`` (seconds) bounds one call's wait, for the
    one-shot commands; the services wait as long as it takes (None).
    """

    def __init__(self, dsn: str, *, autocommit: bool = False, log: logging.Logger | None = None,
                 stop: threading.Event | None = None, max_delay: float = MAX_DELAY,
                 give_up: float | None = None,
                 conn: psycopg2.extensions.connection | None = None) -> None:
        self.dsn = dsn
        self.autocommit = autocommit
        self.log = log or logging.getLogger("piwheels.db")
        self.stop = stop or threading.Event()
        self.max_delay = max_delay
        self.give_up = give_up
        self.outages = 0
        self._conn = conn
        self._down_since: float | None = None
        self._starting = False

    @property
    def conn(self) -> psycopg2.extensions.connection:
        """The open connection, connecting first if there is none (not retried)."""
        if self._conn is None or self._conn.closed:
            from . import connect

            self._conn = connect(self.dsn, autocommit=self.autocommit)
        return self._conn

    def open(self) -> psycopg2.extensions.connection:
        """The connection, for a service that starts: while the server is unreachable or
        starting up (:func:`unreachable`), wait for it as :meth:`call` does, with one line
        when the wait starts and one when it ends.

        Raises ``DatabaseError`` (one line) at once for a failure waiting cannot fix (a
        wrong password, user or database, pg_hba.conf), and :class:`Stopped` when
        ``stop`` is set during the wait."""
        self._starting = True
        try:
            return self.call(lambda conn: conn)
        finally:
            self._starting = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, fn: Callable[[psycopg2.extensions.connection], T]) -> T:
        """``fn(conn)``, run again on a new connection for as long as the database is away."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_disconnect),
            wait=(tenacity.wait_exponential(multiplier=0.5, max=self.max_delay)
                  + tenacity.wait_random(0, 0.5)),
            stop=self._stopping,
            sleep=self.stop.wait,
            before_sleep=self._lost,
            reraise=True,
        )
        try:
            result = retrying(self._once, fn)
        except Exception as e:
            if self.stop.is_set() and is_disconnect(e):
                raise Stopped(f"database: stopped while waiting for it ({_first_line(e)})") \
                    from None
            raise
        if self._down_since is not None:
            self.log.info("database: %s after %.1fs",
                          "reachable" if self._starting else "reconnected",
                          time.monotonic() - self._down_since)
            self._down_since = None
        return result

    def _stopping(self, state: Any) -> bool:
        return self.stop.is_set() or (self.give_up is not None
                                      and (state.seconds_since_start or 0) >= self.give_up)

    def _once(self, fn: Callable[[psycopg2.extensions.connection], T]) -> T:
        try:
            conn = self.conn
        except DatabaseError as e:
            if self._starting and (not unreachable(str(e)) or _no_socket_directory(self.dsn)):
                raise  # a wrong setting: waiting will not fix it
            raise _Unreachable(str(e)) from None
        try:
            return fn(conn)
        except Exception as e:
            if is_disconnect(e):
                self._drop()
            raise

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except psycopg2.Error:
            pass
        self._conn = None

    def _lost(self, state: Any) -> None:
        if self._down_since is not None:
            return  # one warning per outage
        self._down_since = time.monotonic()
        why = _first_line(state.outcome.exception())
        if self._starting:
            self.log.warning("database: not reachable at start (%s); waiting for it, trying "
                             "at most %gs apart", why, self.max_delay)
            return
        self.outages += 1
        self.log.warning("database: connection lost (%s); reconnecting, at most %gs apart",
                         why, self.max_delay)
