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

A failure to connect when the service starts is not retried: that is most
often a wrong ``database`` setting, and the CLI says so in one line.

The retry policy is tenacity's (docs/dependencies.md).
"""

from __future__ import annotations

import logging
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


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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

    @property
    def conn(self) -> psycopg2.extensions.connection:
        """The open connection, connecting first if there is none (not retried)."""
        if self._conn is None or self._conn.closed:
            from . import connect

            self._conn = connect(self.dsn, autocommit=self.autocommit)
        return self._conn

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
            self.log.info("database: reconnected after %.1fs", time.monotonic() - self._down_since)
            self._down_since = None
        return result

    def _stopping(self, state: Any) -> bool:
        return self.stop.is_set() or (self.give_up is not None
                                      and (state.seconds_since_start or 0) >= self.give_up)

    def _once(self, fn: Callable[[psycopg2.extensions.connection], T]) -> T:
        try:
            conn = self.conn
        except DatabaseError as e:
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
        self.outages += 1
        self.log.warning("database: connection lost (%s); reconnecting, at most %gs apart",
                         _first_line(state.outcome.exception()), self.max_delay)
