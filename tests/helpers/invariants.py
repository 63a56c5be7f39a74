"""What must hold after any fault (tests/faults/): one helper, every fault test.

- no build lost or recorded twice: nothing queued or ``building``; each expected
  (package, version, target) has exactly one recorded build (``abandoned`` ones, a lease
  that expired, do not count), and it is a success;
- no half-written file: no ``.tmp-`` name anywhere under ``www/``;
- the index links only verified files: every file a ``simple/`` page links is a
  recorded file with the recorded sha256, and the bytes on disk have that sha256;
  every recorded file is linked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers.farm import query
from piwheels_build.fsutil import TEMP_MARK


def assert_farm_consistent(dsn: str, www: Path, expected: set[tuple[str, str, str]]) -> None:
    """``expected``: the (package, version, target) builds the wave had to do."""
    building = query(dsn, "SELECT build_id, package, version FROM builds"
                          " WHERE status = 'building'")
    assert building == [], f"builds left building: {building}"
    queued = query(dsn, "SELECT package, version, target FROM queue")
    assert queued == [], f"builds still queued: {queued}"
    recorded: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    for build_id, package, version, target, status in query(
            dsn, "SELECT build_id, package, version, target, status FROM builds"
                 " WHERE status <> 'abandoned' ORDER BY build_id"):
        recorded.setdefault((package, version, target), []).append((build_id, status))
    assert set(recorded) == expected, f"recorded {sorted(recorded)}, expected {sorted(expected)}"
    twice = {k: v for k, v in recorded.items() if len(v) != 1}
    assert not twice, f"recorded more than once: {twice}"
    failed = {k: v for k, v in recorded.items() if v[0][1] != "success"}
    assert not failed, f"not a success: {failed}"

    leftovers = [str(p.relative_to(www)) for p in www.rglob("*") if TEMP_MARK in p.name]
    assert leftovers == [], f"half-written files under www/: {leftovers}"

    files = {name: (package, sha) for name, package, sha in
             query(dsn, "SELECT filename, package, sha256 FROM files")}
    by_build = query(dsn, "SELECT count(*) FROM files f JOIN builds b USING (build_id)"
                          " WHERE b.status <> 'success'")
    assert by_build == [(0,)], "a file recorded for a build that did not succeed"
    linked: set[str] = set()
    for page in sorted((www / "simple").glob("*/index.json")):
        for f in json.loads(page.read_text())["files"]:
            name, sha = f["filename"], f["hashes"]["sha256"]
            assert name in files, f"{page.parent.name}: links {name}, which is not recorded"
            assert files[name][1] == sha, f"{name}: linked with {sha}, recorded {files[name][1]}"
            on_disk = page.parent / f["url"]
            assert on_disk.is_file(), f"{name}: linked but missing from the store"
            assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == sha, \
                f"{name}: the bytes on disk do not have the linked sha256"
            linked.add(name)
    assert linked == set(files), f"recorded but not linked: {sorted(set(files) - linked)}"
