"""A builder claims nothing while its store cannot take a wheel.

An upload into a store that is gone (the sshfs mount cannot reach the master) or
full fails, and the build is recorded as an ``infrastructure`` failure: retried,
but only ``retry_limit`` times. Claiming build after build during a long outage
would spend every queued build's retries and leave them skipped as
``too-many-failures`` after it. So before each claim the builder asks the store
(one ``statvfs``; over sshfs a round trip to the master): a service waits with
backoff until it answers and has more than ``store_free_floor`` free, logging one
warning when the wait starts and one line when it ends; a one-shot run stops
with one line.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..diskspace import human, space
from ..errors import StoreError

log = logging.getLogger("piwheels.build")

FIRST_WAIT = 1.0   # seconds before the store is asked again, doubled each time
MAX_WAIT = 30.0


def problem(www: Path, floor: int) -> str | None:
    """Why the store under ``www`` cannot take a wheel now (one line), or None."""
    simple = Path(www) / "simple"
    try:
        s = space(simple)
    except OSError as e:
        return f"store: {simple} does not answer ({e.strerror or e})"
    if floor > 0 and s.free < floor:
        return (f"store: {human(s.free)} free on {s.path}, below store_free_floor "
                f"({human(floor)})")
    return None


def wait_for_store(www: Path, floor: int, stop: threading.Event, forever: bool) -> None:
    """Return once the store can take a wheel, or once ``stop`` is set.

    ``forever`` False (a one-shot run): raises StoreError at once instead of waiting.
    """
    why = problem(www, floor)
    if why is None:
        return
    if not forever:
        raise StoreError(f"{why}; stopped before claiming another build")
    log.warning("%s; claiming no build until it does", why)
    started, delay = time.monotonic(), FIRST_WAIT
    while not stop.wait(delay):
        if problem(www, floor) is None:
            log.info("store: usable again after %.0f s", time.monotonic() - started)
            return
        delay = min(delay * 2, MAX_WAIT)
