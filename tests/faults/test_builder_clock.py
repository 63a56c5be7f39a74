"""A builder whose clock is off by many minutes: the database's clock is the one
that counts. A real ``piwheels build --forever`` runs under libfaketime (its wall
clock shifted, as on a machine whose clock is simply wrong); its build is claimed,
renewed, finished and recorded once, with the database's times, a duration
measured on the builder's monotonic clock, and a lease that neither expires early
nor reaches into the future."""

from __future__ import annotations

import glob
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from helpers.farm import clean_env
from helpers.faults import DEADLINE, slow_pure, wait_for

pytestmark = pytest.mark.slow

LEASE = 6        # seconds: the heartbeat renews it every 2 s, so a build of 8 s needs it
BUILD_SLEEP = 8  # seconds the package's setup.py sleeps in all


# The real CLI, with one stand-in: libfaketime 0.9.10's clock_nanosleep answers EINVAL
# for the monotonic deadline time.sleep gives it, so time.sleep waits on an Event
# instead (the same wait; threading's timed waits are not intercepted).
_CLI = ("import runpy, threading, time\n"
        "time.sleep = lambda s: threading.Event().wait(s) if s > 0 else None\n"
        "runpy.run_module('piwheels_build.cli', run_name='__main__', alter_sys=True)\n")


def _libfaketime() -> str:
    """Debian's libfaketime (package faketime), preloaded into the builder itself: the
    ``faketime`` wrapper would stand between the test's SIGTERM and the builder."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed: scripts/setup.sh installs it (apt faketime)")
    return found[0]


@pytest.mark.parametrize("offset_minutes", [-45, 45])
def test_builder_clock_off(make_farm, offset_minutes):
    farm = make_farm(lease_seconds=LEASE)
    farm.add("clockpkg", "1.0", slow_pure("clockpkg", BUILD_SLEEP))
    farm.run("sync")
    before = farm.query("SELECT now()")[0][0]

    out = farm.tmp / f"clock{offset_minutes}.log"
    argv = [sys.executable, "-c", _CLI, "--config", str(farm.config("b1")), "build",
            "--forever"]
    # Only the wall clock is off, as on a machine whose clock is wrong (libfaketime would
    # shift the monotonic clock too, and then hang every timed lock wait).
    env = clean_env(LD_PRELOAD=_libfaketime(), FAKETIME=f"{offset_minutes:+d}m", TZ="UTC",
                    FAKETIME_DONT_FAKE_MONOTONIC="1")
    with out.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    farm.procs.append((proc, out))

    # While it builds: the lease as the database sees it is live and no longer than
    # lease_seconds, and expire_leases (what another builder's claim runs) keeps it.
    wait_for("the build to be claimed", lambda: farm.query(
        "SELECT 1 FROM builds WHERE status = 'building'") or proc.poll() is not None)
    leases = set()
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        row = farm.query("SELECT q.lease_expires, extract(epoch FROM q.lease_expires - now()),"
                         " (SELECT count(*) FROM expire_leases())"
                         " FROM queue q WHERE q.build_id IS NOT NULL")
        if not row:
            break
        expires, remaining, expired = row[0]
        assert expired == 0, "expire_leases took back a live build"
        assert 0 < remaining <= LEASE, f"lease ends {remaining:.0f} s from the database's now"
        leases.add(expires)
        assert proc.poll() is None, farm.output(proc)
        time.sleep(0.5)
    wait_for("the build to be recorded", lambda: farm.query(
        "SELECT 1 FROM builds WHERE status <> 'building'") or proc.poll() is not None)
    after = farm.query("SELECT now()")[0][0]
    assert farm.stop(proc) == 0, farm.output(proc)
    log = farm.output(proc)
    assert "Traceback" not in log, log

    # The builder's clock really was off: its log's time stamps are its own clock's.
    stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ", log)
    assert stamp, log
    seen = datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    skew = seen.timestamp() - before.timestamp()
    assert abs(skew - offset_minutes * 60) < 300, f"builder clock off by {skew:.0f} s"

    # Renewed by the heartbeat against the database's clock (a lease of 6 s, a build
    # of at least 8 s): more than one lease end seen, each in the database's present.
    assert len(leases) > 1, leases
    rows = farm.query("SELECT b.status, b.started_at, b.finished_at, b.duration,"
                      " extract(epoch FROM b.finished_at - b.started_at), r.last_seen"
                      " FROM builds b JOIN builders r USING (builder_id)")
    assert len(rows) == 1, rows  # recorded once, not abandoned and built again
    status, started, finished, duration, span, last_seen = rows[0]
    assert status == "success", log
    assert before <= started <= finished <= after
    assert before <= last_seen <= after
    # The duration is the builder's monotonic measure: at least the build's sleeps,
    # at most the time between the database's claim and finish.
    assert BUILD_SLEEP <= duration <= span, (duration, span)
    assert farm.query("SELECT count(*) FROM files")[0][0] == 1

