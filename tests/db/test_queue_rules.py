"""Every rule of DESIGN.md's queue, checked against the real SQL functions."""

import psycopg2
import psycopg2.errors
import pytest
from helpers.queue_helpers import add_version, claim, finish, queued, register, wheel


def test_first_build_goes_to_lowest_abi_only(conn):
    register(conn, "cp313", "trixie")
    register(conn, "cp311", "bookworm")
    register(conn, "cp39", "bullseye")
    add_version(conn, "foo", "1.0")
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l")}


def test_abis_compare_as_numbers_not_text(conn):
    register(conn, "cp311", "a")
    register(conn, "cp39", "b")   # "cp311" < "cp39" as text, 3.9 < 3.11 as numbers
    add_version(conn, "foo", "1.0")
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l")}


def test_pure_wheel_covers_every_abi(conn):
    b9 = register(conn, "cp39", "b")
    register(conn, "cp311", "a")
    register(conn, "cp313", "c")
    add_version(conn, "foo", "1.0")
    build = claim(conn, b9)
    assert finish(conn, build[0], "success", [wheel("foo", "1.0", "py3", "none", "any")])
    assert queued(conn) == set()


def test_compiled_wheel_queues_every_other_abi(conn):
    b9 = register(conn, "cp39", "b")
    register(conn, "cp311", "a")
    register(conn, "cp313", "c")
    add_version(conn, "foo", "1.0")
    build = claim(conn, b9)
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp39", "cp39", "linux_armv7l")])
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l"),
                            ("foo", "1.0", "cp313-linux_armv7l")}


def test_abi3_covers_newer_abis_only(conn):
    b9 = register(conn, "cp39", "b")
    register(conn, "cp311", "a")
    register(conn, "cp313", "c")
    add_version(conn, "foo", "1.0")
    build = claim(conn, b9)
    # An abi3 wheel for cp311 (built on cp39 is unusual, but the rule is about the tag).
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp311", "abi3", "linux_armv7l")])
    assert queued(conn) == set()  # cp39 attempted, cp311 and cp313 covered

    add_version(conn, "bar", "1.0")
    build = claim(conn, b9)
    finish(conn, build[0], "success", [wheel("bar", "1.0", "cp312", "abi3", "linux_armv7l")])
    # cp313 >= 3.12 covered, cp311 not
    assert queued(conn) == {("bar", "1.0", "cp311-linux_armv7l")}


def test_failure_does_not_block_other_abis(conn):
    b9 = register(conn, "cp39", "b")
    b11 = register(conn, "cp311", "a")
    add_version(conn, "foo", "1.0")
    build = claim(conn, b9)
    finish(conn, build[0], "failed")
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}
    build = claim(conn, b11)
    assert build[1:3] == ("foo", "1.0")
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp311", "cp311", "linux_armv7l")])
    assert queued(conn) == set()  # the failure is not retried by itself


def test_new_releases_come_before_backfill(conn):
    b = register(conn, "cp311")
    add_version(conn, "old", "1.0", released="2015-01-01")
    add_version(conn, "new", "2.0", released="2026-11-01")
    add_version(conn, "mid", "1.5", released="2020-01-01")
    order = [claim(conn, b)[1] for _ in range(3)]
    assert order == ["new", "mid", "old"]
    assert claim(conn, b) is None


def test_binary_only_and_skipped_versions_are_not_queued(conn):
    register(conn, "cp311")
    add_version(conn, "wheelonly", "1.0", sdist=False)
    add_version(conn, "foo", "1.0")
    with conn.cursor() as cur:
        cur.execute("UPDATE versions SET skip_reason = 'admin' WHERE package = 'foo'")
        cur.execute("SELECT refresh_queue()")
    conn.commit()
    assert queued(conn) == set()


def test_expired_lease_goes_back_to_the_queue(conn):
    b1 = register(conn, "cp311", "one")
    b2 = register(conn, "cp311", "two")
    add_version(conn, "foo", "1.0")
    first = claim(conn, b1, lease=0)
    assert claim(conn, b2)[0] != first[0]  # lease 0 has already run out
    with conn.cursor() as cur:
        cur.execute("SELECT status FROM builds WHERE build_id = %s", (first[0],))
        assert cur.fetchone()[0] == "abandoned"
    conn.commit()
    assert finish(conn, first[0], "success") is False  # too late: recorded nothing


def test_heartbeat_renews_lease(conn):
    b = register(conn, "cp311")
    add_version(conn, "foo", "1.0")
    build = claim(conn, b, lease=1)
    with conn.cursor() as cur:
        cur.execute("SELECT heartbeat_build(%s, 300)", (build[0],))
        assert cur.fetchone()[0] is True
        cur.execute("SELECT lease_expires > now() + interval '200 seconds' FROM queue")
        assert cur.fetchone()[0] is True
    conn.commit()


def test_infrastructure_failures_retry_with_backoff_then_skip(conn):
    b = register(conn, "cp311")
    add_version(conn, "foo", "1.0")
    with conn.cursor() as cur:
        cur.execute("UPDATE settings SET value = '3' WHERE key = 'retry_limit'")
    conn.commit()
    delays = []
    for _ in range(3):
        with conn.cursor() as cur:
            cur.execute("UPDATE queue SET not_before = NULL")
        conn.commit()
        build = claim(conn, b)
        assert build is not None
        finish(conn, build[0], "infrastructure")
        with conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM not_before - now())::float FROM queue")
            row = cur.fetchone()
        delays.append(row[0] if row else None)
    assert delays[0] > 0 and delays[1] > delays[0] * 1.5 and delays[2] is None
    with conn.cursor() as cur:
        cur.execute("SELECT reason FROM target_skips")
        assert cur.fetchone()[0] == "too-many-failures"
    conn.commit()


def test_retry_waits_for_backoff(conn):
    b = register(conn, "cp311")
    add_version(conn, "foo", "1.0")
    finish(conn, claim(conn, b)[0], "infrastructure")
    assert claim(conn, b) is None  # not before the backoff ends


def test_new_abi_gets_queue_for_existing_versions(conn):
    b9 = register(conn, "cp39")
    add_version(conn, "foo", "1.0")
    add_version(conn, "pure", "1.0")
    for _ in range(2):
        build = claim(conn, b9)
        tags = ("py3", "none", "any") if build[1] == "pure" else ("cp39", "cp39", "linux_armv7l")
        finish(conn, build[0], "success", [wheel(build[1], "1.0", *tags)])
    assert queued(conn) == set()
    register(conn, "cp313", "trixie")  # a new OS release joins the farm
    assert queued(conn) == {("foo", "1.0", "cp313-linux_armv7l")}


def test_concurrent_claims_never_share_a_build(conn, dsn):
    ids = [register(conn, "cp311", f"b{i}") for i in range(8)]
    for i in range(40):
        add_version(conn, f"p{i}", "1.0")
    conns = [psycopg2.connect(dsn) for _ in ids]
    claimed = []
    # Interleave open transactions so SKIP LOCKED is exercised.
    curs = [c.cursor() for c in conns]
    for _ in range(5):
        for cur, bid in zip(curs, ids, strict=True):
            cur.execute("SELECT package FROM claim_build(%s)", (bid,))
            claimed.append(cur.fetchone()[0])
        for c in conns:
            c.commit()
    for c in conns:
        c.close()
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_finish_marks_package_dirty_and_records_everything(conn):
    b = register(conn, "cp311")
    add_version(conn, "foo", "1.0")
    build = claim(conn, b)
    w = wheel("foo", "1.0", "cp311", "cp311", "linux_armv7l")
    finish(conn, build[0], "success", [w])
    with conn.cursor() as cur:
        cur.execute("SELECT package FROM index_dirty")
        assert cur.fetchall() == [("foo",)]
        cur.execute("SELECT status, duration, builder_id FROM builds")
        assert cur.fetchone() == ("success", 1.5, b)
        cur.execute("SELECT dependency FROM dependencies")
        assert cur.fetchall() == [("six",)]
        cur.execute("SELECT log FROM build_logs")
        assert bytes(cur.fetchone()[0]) == b"log"
    conn.commit()


def _compiled_then_two_abis(conn):
    """A version built on cp39, now queued for cp311 and cp313, both claimed."""
    b9, b11, b13 = (register(conn, abi, f"b-{abi}") for abi in ("cp39", "cp311", "cp313"))
    add_version(conn, "foo", "1.0")
    build = claim(conn, b9)
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp39", "cp39", "linux_armv7l")])
    return claim(conn, b11)[0], claim(conn, b13)[0]


def test_finishes_of_one_version_take_turns(conn, dsn):
    """finish_build locks the version row first, so two ABIs finishing at once queue up."""
    b11, b13 = _compiled_then_two_abis(conn)
    other = psycopg2.connect(dsn)
    try:
        with other.cursor() as cur:  # as a concurrent finish of foo 1.0 holds it
            cur.execute("SELECT 1 FROM versions WHERE package = 'foo' FOR NO KEY UPDATE")
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg2.errors.LockNotAvailable):
                cur.execute("SELECT finish_build(%s, 'failed', 1, NULL, NULL, NULL)", (b11,))
        conn.rollback()
        other.rollback()
    finally:
        other.close()
    assert finish(conn, b11, "failed")


def test_claims_and_sync_do_not_wait_for_a_finish(conn, dsn):
    """The version lock is FOR NO KEY UPDATE: foreign-key checks (claims) pass it."""
    register(conn, "cp311", "b-cp311")
    b9 = register(conn, "cp39", "b-cp39")
    add_version(conn, "foo", "1.0")
    other = psycopg2.connect(dsn)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT 1 FROM versions WHERE package = 'foo' FOR NO KEY UPDATE")
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")
            cur.execute("SELECT build_id FROM claim_build(%s)", (b9,))  # inserts into builds
            assert cur.fetchone()
        conn.commit()
    finally:
        other.close()


def test_concurrent_finishes_of_one_version_never_deadlock(conn, dsn):
    """Many versions, each finishing on three ABIs at the same moment, from three threads."""
    import threading

    bids = {abi: register(conn, abi, f"b-{abi}") for abi in ("cp39", "cp311", "cp312", "cp313")}
    n = 30
    for i in range(n):
        add_version(conn, f"p{i}", "1.0")
    for _ in range(n):
        build = claim(conn, bids["cp39"])
        finish(conn, build[0], "success", [wheel(build[1], "1.0", "cp39", "cp39", "linux_armv7l")])
    claimed = {abi: [claim(conn, bids[abi]) for _ in range(n)]
               for abi in ("cp311", "cp312", "cp313")}
    barrier = threading.Barrier(3)
    errors: list[Exception] = []

    def run(abi: str) -> None:
        c = psycopg2.connect(dsn)
        try:
            for build_id, pkg, *_ in sorted(claimed[abi], key=lambda r: r[1]):
                barrier.wait(timeout=30)  # the three ABIs of one version finish together
                try:
                    finish(c, build_id, "success", [wheel(pkg, "1.0", abi, abi, "linux_armv7l")])
                except psycopg2.Error as e:
                    errors.append(e)
                    c.rollback()
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(abi,)) for abi in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert queued(conn) == set()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM builds WHERE status = 'success'")
        assert cur.fetchone()[0] == 4 * n
    conn.commit()
