"""PostgreSQL restarted during a wave: the builders (``build --forever``) and the
index writer (``index --watch``) wait it out, reconnect and finish the wave; the
build that finished while the database was away is recorded once, by its own
builder, because its lease still held."""

from __future__ import annotations

import pytest
from helpers.faults import slow_pure, wait_for
from helpers.fixture_packages import pure
from helpers.invariants import assert_farm_consistent

pytestmark = pytest.mark.slow

PACKAGES = ["pa", "pb", "pc"]


def test_database_restart_during_a_wave(make_farm):
    farm = make_farm(lease_seconds=60)
    farm.add("slowpkg", "1.0", slow_pure("slowpkg", 8))
    for name in PACKAGES:
        farm.add(name, "1.0", pure(name, name))
    farm.run("sync")
    index = farm.start("index", "--watch", "--interval", "0.2")
    builders = [farm.start("build", "--forever", builder=b) for b in ("b1", "b2")]
    target = farm.python.target
    expected = {(name, "1.0", target) for name in ["slowpkg", *PACKAGES]}

    wait_for("slowpkg to be building", lambda: farm.query(
        "SELECT 1 FROM builds WHERE package = 'slowpkg' AND status = 'building'"))
    farm.cluster.stop()
    farm.cluster.start()

    def finished():
        done = farm.query("SELECT count(*) FROM builds WHERE status = 'success'")[0][0]
        left = farm.query("SELECT (SELECT count(*) FROM queue) + (SELECT count(*)"
                          " FROM index_dirty)")[0][0]
        return done == len(expected) and left == 0
    wait_for("the wave to finish and be indexed", finished)

    for proc in [*builders, index]:
        assert farm.stop(proc) == 0, farm.output(proc)
    for proc in [*builders, index]:
        out = farm.output(proc)
        assert "Traceback" not in out, out
        # One warning when the outage starts and one line when it ends, per service.
        assert out.count("database: connection lost") == 1, out
        assert out.count("database: reconnected after") == 1, out

    # The build in flight across the restart was recorded by its own claim, once.
    assert farm.query("SELECT status FROM builds WHERE package = 'slowpkg'") == [("success",)]
    assert_farm_consistent(farm.dsn, farm.www, expected)
