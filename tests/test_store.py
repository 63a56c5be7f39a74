"""The wheel store: atomic, immutable, aliases never over real wheels."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from piwheels_build.errors import StoreError
from piwheels_build.store import Store

ARMV7 = "demo-1.0-cp311-cp311-linux_armv7l.whl"
ARMV6 = "demo-1.0-cp311-cp311-linux_armv6l.whl"


def make_wheel(path: Path, payload: str = "x = 1\n") -> Path:
    """A small but real wheel (a zip with a module and dist-info)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("demo/__init__.py", payload)
        z.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\n"
                                                   "Version: 1.0\n")
        z.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n")
    return path


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".tmp-" in p.name]


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "www")


def test_path_is_normalized_and_safe(store, tmp_path):
    assert store.path("Demo_Pkg.x", "a.whl") == tmp_path / "www/simple/demo-pkg-x/a.whl"
    for bad in ("../evil.whl", ".hidden.whl", "a/b.whl", ""):
        with pytest.raises(StoreError):
            store.path("demo", bad)


def test_put_copies_atomically(store, tmp_path):
    src = make_wheel(tmp_path / ARMV7)
    final = store.put("Demo", ARMV7, src)
    assert final == store.path("demo", ARMV7)
    assert final.read_bytes() == src.read_bytes()
    assert final.stat().st_mode & 0o777 == 0o644
    assert leftovers(final.parent) == []


def test_put_identical_bytes_is_a_no_op(store, tmp_path):
    src = make_wheel(tmp_path / ARMV7)
    final = store.put("demo", ARMV7, src)
    before = final.stat()
    calls = []
    store.put("demo", ARMV7, src, may_replace=lambda name: calls.append(name) or False)
    after = final.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert calls == []  # nothing to decide when the bytes are the same


def test_put_refuses_different_bytes(store, tmp_path):
    first = store.put("demo", ARMV7, make_wheel(tmp_path / "a.whl", "a = 1\n"))
    original = first.read_bytes()
    other = make_wheel(tmp_path / "b.whl", "b = 2\n")
    with pytest.raises(StoreError, match="already exists with different contents") as e:
        store.put("demo", ARMV7, other)
    assert "\n" not in str(e.value)
    asked = []
    with pytest.raises(StoreError):
        store.put("demo", ARMV7, other, may_replace=lambda name: asked.append(name) or False)
    assert asked == [ARMV7]
    assert first.read_bytes() == original
    assert leftovers(first.parent) == []


def test_put_replaces_unrecorded_file_when_allowed(store, tmp_path):
    store.put("demo", ARMV7, make_wheel(tmp_path / "a.whl", "a = 1\n"))
    other = make_wheel(tmp_path / "b.whl", "b = 2\n")
    final = store.put("demo", ARMV7, other, may_replace=lambda name: True)
    assert final.read_bytes() == other.read_bytes()
    assert leftovers(final.parent) == []


def test_put_error_leaves_no_temp_file(store, tmp_path):
    store.path("demo", ARMV7).parent.mkdir(parents=True)
    with pytest.raises(StoreError, match="cannot write"):
        store.put("demo", ARMV7, tmp_path / "missing.whl")
    assert os.listdir(store.path("demo", ARMV7).parent) == []


def test_put_metadata(store, tmp_path):
    store.put("demo", ARMV7, make_wheel(tmp_path / ARMV7))
    meta = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
    digest = store.put_metadata("demo", ARMV7, meta)
    assert digest == hashlib.sha256(meta).hexdigest()
    path = store.path("demo", ARMV7 + ".metadata")
    assert path.read_bytes() == meta
    assert store.put_metadata("demo", ARMV7, meta) == digest
    assert leftovers(path.parent) == []


def test_alias_names():
    aliases = {"linux_armv7l": ["linux_armv6l"]}
    assert Store.alias_names(ARMV7, aliases) == [ARMV6]
    assert Store.alias_names("demo-1.0-1-cp311-cp311-linux_armv7l.whl", aliases) == [
        "demo-1.0-1-cp311-cp311-linux_armv6l.whl"]
    assert Store.alias_names("demo-1.0-py3-none-any.whl", aliases) == []
    assert Store.alias_names("demo-1.0.tar.gz", aliases) == []
    # a compressed tag set: the aliases of its tags, minus tags it already has
    assert Store.alias_names("demo-1.0-cp311-cp311-linux_armv7l.linux_aarch64.whl",
                             aliases) == [ARMV6]
    assert Store.alias_names("demo-1.0-cp311-cp311-linux_armv7l.linux_armv6l.whl",
                             aliases) == []
    two = {"linux_armv7l": ["linux_armv6l", "linux_armv6hf"]}
    assert Store.alias_names(ARMV7, two) == [ARMV6, "demo-1.0-cp311-cp311-linux_armv6hf.whl"]


def test_alias_is_a_relative_symlink(store, tmp_path):
    src = make_wheel(tmp_path / ARMV7)
    store.put("demo", ARMV7, src)
    store.put_metadata("demo", ARMV7, b"Name: demo\n")
    assert store.alias("demo", ARMV7, ARMV6) is True
    link = store.path("demo", ARMV6)
    assert link.is_symlink() and os.readlink(link) == ARMV7
    assert link.read_bytes() == src.read_bytes()
    meta = store.path("demo", ARMV6 + ".metadata")
    assert meta.is_symlink() and os.readlink(meta) == ARMV7 + ".metadata"
    assert store.alias("demo", ARMV7, ARMV6) is True  # idempotent
    assert leftovers(link.parent) == []


def test_alias_never_replaces_a_real_wheel(store, tmp_path):
    store.put("demo", ARMV7, make_wheel(tmp_path / "a.whl", "a = 1\n"))
    real = store.put("demo", ARMV6, make_wheel(tmp_path / "b.whl", "b = 2\n"))
    content = real.read_bytes()
    assert store.alias("demo", ARMV7, ARMV6) is False
    assert not real.is_symlink() and real.read_bytes() == content


def test_real_wheel_replaces_alias_when_allowed(store, tmp_path):
    store.put("demo", ARMV7, make_wheel(tmp_path / "a.whl", "a = 1\n"))
    store.alias("demo", ARMV7, ARMV6)
    real = make_wheel(tmp_path / "b.whl", "b = 2\n")
    with pytest.raises(StoreError):
        store.put("demo", ARMV6, real)
    final = store.put("demo", ARMV6, real, may_replace=lambda name: True)
    assert not final.is_symlink() and final.read_bytes() == real.read_bytes()
    assert store.path("demo", ARMV7).read_bytes() != real.read_bytes()


def test_remove_takes_metadata_and_aliases(store, tmp_path):
    store.put("demo", ARMV7, make_wheel(tmp_path / ARMV7))
    store.put_metadata("demo", ARMV7, b"Name: demo\n")
    store.alias("demo", ARMV7, ARMV6)
    other = store.put("demo", "demo-0.9-py3-none-any.whl", make_wheel(tmp_path / "o.whl"))
    removed = store.remove("demo", ARMV7)
    assert removed == sorted([ARMV7, ARMV7 + ".metadata", ARMV6, ARMV6 + ".metadata"])
    assert sorted(os.listdir(other.parent)) == [other.name]
    assert store.remove("nothing-here", ARMV7) == []


def test_disk_usage_counts_real_wheels_only(store, tmp_path):
    assert store.disk_usage() == 0
    a = store.put("demo", ARMV7, make_wheel(tmp_path / ARMV7))
    store.put_metadata("demo", ARMV7, b"Name: demo\n")
    store.alias("demo", ARMV7, ARMV6)
    b = store.put("other", "other-1.0-py3-none-any.whl", make_wheel(tmp_path / "o.whl"))
    assert store.disk_usage() == a.stat().st_size + b.stat().st_size
