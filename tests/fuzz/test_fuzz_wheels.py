"""Wheels given to the verifier and the store, fuzzed: WheelRejected with one line, or a
wheel that the store then writes inside www/simple only."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from piwheels_build.build import wheels
from piwheels_build.errors import StoreError, WheelRejected
from piwheels_build.store import Store

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
KW = {"abi": "cp311", "platform": "linux_armv7l", "pyver": (3, 11)}
GOOD = "foo-1.0-py3-none-any.whl"


def _good_wheel() -> bytes:
    import base64
    import hashlib

    files = {"foo/__init__.py": b"x = 1\n",
             "foo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n",
             "foo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"  # noqa: E501
              for p, d in files.items()] + ["foo-1.0.dist-info/RECORD,,"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, d in files.items():
            zf.writestr(p, d)
        zf.writestr("foo-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return buf.getvalue()


GOOD_BYTES = _good_wheel()
member_names = st.sampled_from(["../evil.py", "/abs.py", "foo-1.0.dist-info/METADATA",
                                "foo-1.0.dist-info/RECORD", "foo-1.0.dist-info/../../x",
                                "a\\..\\b", "foo/\0x", "foo/__init__.py"]) | st.text(max_size=20)


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            try:
                zf.writestr(name or "x", data)
            except (ValueError, UnicodeEncodeError):
                pass
    return buf.getvalue()


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in flips:
        b[pos % len(b)] = val
    return bytes(b[:cut] if cut else b)


wheel_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.tuples(member_names, st.binary(max_size=40)), max_size=6).map(_zip),
    st.tuples(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
              st.none() | st.integers(1, len(GOOD_BYTES))).map(
        lambda t: _mutate(GOOD_BYTES, *t)),
)
filenames = st.sampled_from([GOOD, "foo-1.0-cp311-cp311-linux_armv7l.whl",
                             "foo-1.0-cp311-abi3-linux_armv7l.whl", "foo-2.0-py3-none-any.whl",
                             "foo-1.0-py3-none-win_amd64.whl", "..-1.0-py3-none-any.whl",
                             "foo.whl", "foo-1.0-py3-none-any.zip"])


def _outside_files(root: Path, before: set[str]) -> set[str]:
    return {p for p in os.listdir(root) if p not in before}


# Generated zips may repeat a member name on purpose; zipfile warns about it.
@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@FUZZ
@given(data=wheel_bytes, filename=filenames)
@example(data=GOOD_BYTES, filename=GOOD)
@example(data=_mutate(GOOD_BYTES, [(60, 0xFF), (61, 0xFF)], None), filename=GOOD)  # bad CRC
@example(data=GOOD_BYTES[:-30], filename=GOOD)
@example(data=_zip([("foo-1.0.dist-info/METADATA", b"Name: foo\nVersion: 1.0\n"),
                    ("foo-1.0.dist-info/RECORD", b"\xff\xfe")]), filename=GOOD)
def test_verify_rejects_in_one_line_and_the_store_stays_inside(tmp_path_factory, data,
                                                                filename):
    base = tmp_path_factory.mktemp("w")
    (base / "in").mkdir()
    path = base / "in" / filename
    path.write_bytes(data)
    before = set(os.listdir(base))
    try:
        info = wheels.verify(path, "foo", "1.0", **KW)
    except WheelRejected as e:
        assert str(e) and "\n" not in str(e), repr(e)
        return
    finally:
        assert _outside_files(base, before) == set()    # verify writes nothing
    store = Store(base / "www")
    try:
        final = store.put("foo", info.filename, path)
    except StoreError as e:
        assert "\n" not in str(e)
        return
    assert final.resolve().is_relative_to((base / "www" / "simple").resolve())
    assert _outside_files(base, before) == {"www"}
