"""Access-log lines fuzzed (mutated combined lines, raw bytes, made-up User-Agents) through
the downloads reader into a real database: every line counted once, as a download, a
non-download or a line skipped; never an exception; a rerun reads nothing."""

from __future__ import annotations

import itertools

import pytest
from helpers.pgdb import fresh_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from piwheels_build import db
from piwheels_build.downloads import Reader
from piwheels_build.downloads.logformat import parse_line
from piwheels_build.downloads.reader import download_of

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
BASE = ('192.0.2.1 - - [01/Dec/2026:00:00:00 +0000] "GET /simple/a/a-1-py3-none-any.whl '
        'HTTP/1.1" 200 5 "-" "pip/24.0 {\\x22python\\x22:\\x223.11.2\\x22,\\x22cpu\\x22:'
        '\\x22armv7l\\x22}"')
ALPHABET = st.sampled_from(list('\\"[]/:+-% ' "\x00\x1c\u2028é\ufffdx9") + ["\\x", "%00",
                                                                         "%ff", "\r"])
_n = itertools.count()


@st.composite
def lines(draw) -> str:
    """A combined line with a few edits, or any text."""
    if draw(st.booleans()):
        return draw(st.text(max_size=200)).replace("\n", "")
    s = BASE
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(s)))
        cut = draw(st.integers(0, 3))
        s = s[:at] + draw(ALPHABET) + s[at + cut:]
    return s.replace("\n", "")


@pytest.fixture(scope="module")
def dsn_once(pg_cluster):
    yield from fresh_database(pg_cluster, "fuzz_logs")


@FUZZ
@given(st.lists(lines(), min_size=1, max_size=40))
def test_fuzzed_lines_are_each_counted_once(dsn_once, tmp_path_factory, batch):
    log = tmp_path_factory.mktemp("log") / "access.log"
    first = f'192.0.2.1 - - [01/Dec/2026:00:00:00 +0000] "GET /{next(_n)} HTTP/1.1" 404 0\n'
    raw = (first + "\n".join(batch) + "\n").encode("utf-8", "surrogatepass")
    log.write_bytes(raw)
    texts = raw.decode("utf-8", "replace").split("\n")[:-1]
    expected_bad = sum(parse_line(t.removesuffix("\r")) is None for t in texts)
    expected = sum(1 for t in texts if (r := parse_line(t.removesuffix("\r"))) is not None
                   and download_of(r.method, r.path, r.status))
    conn = db.connect(dsn_once)
    try:
        s = Reader(conn).read([log])
        assert (s.lines, s.bad_lines, s.downloads) == (len(texts), expected_bad, expected)
        assert Reader(conn).read([log]).lines == 0
    finally:
        conn.close()
