"""A built wheel is stored only if it is the one asked for."""

import base64
import hashlib
import zipfile

import pytest

from piwheels_build.build import buildlog, wheels
from piwheels_build.errors import WheelRejected


def make_wheel(tmp_path, filename, *, name=None, version=None, extra=None, bad_hash=False,
               unlisted=False):
    dist, ver = filename.split("-")[:2]
    name = name or dist
    version = version or ver
    info = f"{dist}-{ver}.dist-info"
    files = {
        f"{dist}/__init__.py": b"x = 1\n",
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                             "Requires-Python: >=3.8\nRequires-Dist: six\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\n",
        **(extra or {}),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if bad_hash and path.endswith("__init__.py"):
            digest = "A" * 43
        if not (unlisted and path.endswith("__init__.py")):
            record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    path = tmp_path / filename
    with zipfile.ZipFile(path, "w") as zf:
        for p, data in files.items():
            zf.writestr(p, data)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


KW = {"abi": "cp311", "platform": "linux_armv7l", "pyver": (3, 11)}


def test_good_wheel_verifies(tmp_path):
    p = make_wheel(tmp_path, "foo-1.0-cp311-cp311-linux_armv7l.whl")
    info = wheels.verify(p, "Foo", "1.0", **KW)
    assert (info.python_tag, info.abi_tag, info.platform_tag) == ("cp311", "cp311", "linux_armv7l")
    assert info.requires_python == ">=3.8" and info.requires_dist == ["six"]
    assert info.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


def test_version_compared_normalized(tmp_path):
    p = make_wheel(tmp_path, "foo-1.0-py3-none-any.whl")
    wheels.verify(p, "foo", "1.0.0", **KW)


@pytest.mark.parametrize("filename, kwargs, words", [
    ("numpy-99.0-py3-none-any.whl", {}, "is for numpy, not foo"),
    ("foo-2.0-py3-none-any.whl", {}, "is version 2.0, not 1.0"),
    ("foo-1.0-py3-none-any.whl", {"name": "numpy"}, "METADATA says numpy"),
    ("foo-1.0-py3-none-any.whl", {"bad_hash": True}, "RECORD hash"),
    ("foo-1.0-py3-none-any.whl", {"unlisted": True}, "is not in RECORD"),
    ("foo-1.0-cp311-cp311-linux_x86_64.whl", {}, "platform linux_x86_64"),
    ("foo-1.0-cp39-cp39-linux_armv7l.whl", {}, "ABI cp39"),
    ("foo-1.0-cp312-abi3-linux_armv7l.whl", {}, "abi3 tag cp312"),
])
def test_wrong_wheels_are_rejected(tmp_path, filename, kwargs, words):
    p = make_wheel(tmp_path, filename, **kwargs)
    with pytest.raises(WheelRejected, match=words):
        wheels.verify(p, "foo", "1.0", **KW)


def test_not_a_zip_is_rejected(tmp_path):
    p = tmp_path / "foo-1.0-py3-none-any.whl"
    p.write_bytes(b"not a zip")
    with pytest.raises(WheelRejected, match="not a zip"):
        wheels.verify(p, "foo", "1.0", **KW)


def test_log_keeps_head_and_tail():
    text, size, truncated = buildlog.capped_bytes(b"HEAD" + b"x" * 10_000 + b"TAIL", 1000)
    assert truncated and size == 10_008 and len(text) < 1100
    assert text.startswith(b"HEAD") and text.endswith(b"TAIL") and b"cut by piwheels" in text
    assert buildlog.capped_bytes(b"ok", 1000) == (b"ok", 2, False)


def test_pipe_collector_keeps_head_and_tail():
    import os
    import threading

    from piwheels_build.build.sandbox import LogCollector

    read_fd, write_fd = os.pipe()
    collector = LogCollector(read_fd, 1000)
    collector.start()
    writer = threading.Thread(target=lambda: (os.write(write_fd, b"HEAD" + b"x" * 200_000
                                                       + b"TAIL"), os.close(write_fd)))
    writer.start()
    writer.join()
    collector.join()
    text, printed, truncated = collector.text()
    assert truncated and printed == 200_008 and len(text) < 1100
    assert text.startswith(b"HEAD") and text.endswith(b"TAIL") and b"cut by piwheels" in text
