"""The build requirements cache: what it keeps, what it hands out, what it refuses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from piwheels_build.build.reqcache import RequirementsCache

KEY = ("/usr/bin/python3", "http://127.0.0.1:1/simple/", "setuptools>=40.8.0", "wheel")


@pytest.fixture
def cache(tmp_path):
    c = RequirementsCache(tmp_path)
    yield c
    c.close()


def wheelhouse(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    d = tmp_path / name
    d.mkdir()
    for fn, data in files.items():
        (d / fn).write_bytes(data)
    return d


WHEELS = {"setuptools-84.2.1-py3-none-any.whl": b"setuptools " * 1000,
          "wheel-0.45.1-py3-none-any.whl": b"wheel " * 100}


def test_kept_wheels_are_handed_out_as_copies(cache, tmp_path):
    assert cache.get(KEY, tmp_path, lambda p: None) is None
    assert cache.put(KEY, wheelhouse(tmp_path, "fetched", WHEELS))
    given = []
    dest = wheelhouse(tmp_path, "next", {})
    assert cache.get(KEY, dest, given.append) == sorted(WHEELS)
    for fn, data in WHEELS.items():
        assert (dest / fn).read_bytes() == data
        assert (dest / fn).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in given) == sorted(WHEELS)
    # another interpreter, upstream or requirement list is another key
    assert cache.get(("/usr/bin/python3.13", *KEY[1:]), tmp_path / "x", lambda p: None) is None
    # the cache is the builder's own: nobody else may look in
    assert cache.root.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("extra", [
    {"evil-1.0.tar.gz": b"an sdist: the offline step would run it"},
    {"notes.txt": b"not a wheel"},
])
def test_a_fetch_that_left_more_than_wheels_is_not_kept(cache, tmp_path, extra):
    assert not cache.put(KEY, wheelhouse(tmp_path, "fetched", {**WHEELS, **extra}))
    assert cache.get(KEY, wheelhouse(tmp_path, "next", {}), lambda p: None) is None


def test_symlinks_and_empty_wheelhouses_are_not_kept(cache, tmp_path):
    assert not cache.put(KEY, wheelhouse(tmp_path, "empty", {}))
    d = wheelhouse(tmp_path, "linked", WHEELS)
    os.symlink("/etc/passwd", d / "passwd-1.0-py3-none-any.whl")
    assert not cache.put(KEY, d)


def test_a_tampered_copy_is_dropped(cache, tmp_path):
    assert cache.put(KEY, wheelhouse(tmp_path, "fetched", WHEELS))
    (entry,) = [p for p in cache.root.iterdir()]
    victim = entry / "wheel-0.45.1-py3-none-any.whl"
    victim.write_bytes(b"something else")
    dest = wheelhouse(tmp_path, "next", {})
    assert cache.get(KEY, dest, lambda p: None) is None
    assert list(dest.iterdir()) == []                # nothing half-copied is left
    assert cache.get(KEY, dest, lambda p: None) is None and not entry.exists()


def test_old_entries_are_fetched_again(tmp_path):
    cache = RequirementsCache(tmp_path, max_age=0.0)
    try:
        assert cache.put(KEY, wheelhouse(tmp_path, "fetched", WHEELS))
        assert cache.get(KEY, wheelhouse(tmp_path, "next", {}), lambda p: None) is None
        assert list(cache.root.iterdir()) == []
    finally:
        cache.close()
    assert not cache.root.exists()


def test_hashes_are_of_the_fetched_bytes(cache, tmp_path):
    assert cache.put(KEY, wheelhouse(tmp_path, "fetched", WHEELS))
    (entry,) = cache._entries.values()
    assert entry[2] == {fn: hashlib.sha256(data).hexdigest() for fn, data in WHEELS.items()}


def test_an_existing_file_in_the_wheelhouse_is_never_overwritten_or_removed(cache, tmp_path):
    assert cache.put(KEY, wheelhouse(tmp_path, "fetched", WHEELS))
    dest = wheelhouse(tmp_path, "next", {"wheel-0.45.1-py3-none-any.whl": b"already here"})
    assert cache.get(KEY, dest, lambda p: None) is None
    assert [p.name for p in dest.iterdir()] == ["wheel-0.45.1-py3-none-any.whl"]
    assert (dest / "wheel-0.45.1-py3-none-any.whl").read_bytes() == b"already here"
