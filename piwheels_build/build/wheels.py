"""Inspect and verify a built wheel before it may enter the store.

A setup.py can build anything; we only store a wheel that is a valid zip,
is named for the package and version we asked for, whose RECORD hashes match,
and whose tags this builder can really produce.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from ..errors import WheelRejected
from ..fsutil import sha256_file


@dataclass
class WheelInfo:
    """What the database and the index need to know about one wheel."""

    filename: str
    name: str
    version: str
    python_tag: str
    abi_tag: str
    platform_tag: str
    size: int
    sha256: str
    metadata: bytes
    metadata_name: str
    metadata_version: str
    requires_python: str | None
    requires_dist: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """The JSON object finish_build() takes for this file."""
        return {
            "filename": self.filename, "python_tag": self.python_tag, "abi_tag": self.abi_tag,
            "platform_tag": self.platform_tag, "size": self.size, "sha256": self.sha256,
            "requires_python": self.requires_python,
            "metadata_sha256": hashlib.sha256(self.metadata).hexdigest(),
            "dependencies": [{"tool": "pip", "dependency": d} for d in self.requires_dist],
        }


# What a damaged or hostile zip raises while it is read: a bad CRC or header, a cut-off
# member, an encrypted or unknown compression, a RECORD that is not UTF-8.
_BROKEN = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError,
           UnicodeDecodeError, ValueError, OSError)


@contextlib.contextmanager
def _reading(filename: str) -> Iterator[None]:
    """A damaged zip is one WheelRejected line, never a traceback."""
    try:
        yield
    except WheelRejected:
        raise
    except _BROKEN as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise WheelRejected(f"wheel {filename} is a damaged zip file ({why})") from None


def _dist_info(zf: zipfile.ZipFile, filename: str) -> str:
    tops = {n.split("/", 1)[0] for n in zf.namelist() if "/" in n}
    found = [t for t in tops if t.endswith(".dist-info")]
    if len(found) != 1:
        raise WheelRejected(f"wheel {filename} has {len(found)} .dist-info directories, not 1")
    return found[0]


def inspect(path: Path) -> WheelInfo:
    """Read a wheel's name, tags, hashes and core metadata."""
    filename = path.name
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as e:
        raise WheelRejected(f"not a valid wheel file name: {e}") from None
    parts = filename[:-4].split("-")
    py, abi, plat = parts[-3], parts[-2], parts[-1]
    if not zipfile.is_zipfile(path):
        raise WheelRejected(f"wheel {filename} is not a zip file")
    with _reading(filename), zipfile.ZipFile(path) as zf:
        info_dir = _dist_info(zf, filename)
        try:
            metadata = zf.read(f"{info_dir}/METADATA")
        except KeyError:
            raise WheelRejected(f"wheel {filename} has no METADATA") from None
    msg = BytesParser().parsebytes(metadata, headersonly=True)
    return WheelInfo(
        filename=filename, name=str(name), version=str(version), python_tag=py,
        abi_tag=abi, platform_tag=plat, size=path.stat().st_size, sha256=sha256_file(path),
        metadata=metadata, metadata_name=msg.get("Name", ""),
        metadata_version=msg.get("Version", ""), requires_python=msg.get("Requires-Python"),
        requires_dist=msg.get_all("Requires-Dist") or [],
    )


def _check_record(zf: zipfile.ZipFile, info_dir: str, filename: str) -> None:
    try:
        record = zf.read(f"{info_dir}/RECORD").decode("utf-8")
    except KeyError:
        raise WheelRejected(f"wheel {filename} has no RECORD") from None
    listed = {}
    for line in record.splitlines():
        if not line.strip():
            continue
        path, _, rest = line.partition(",")
        digest = rest.rsplit(",", 1)[0]
        listed[path] = digest
    names = {n for n in zf.namelist() if not n.endswith("/")}
    unsigned = {f"{info_dir}/RECORD", f"{info_dir}/RECORD.jws", f"{info_dir}/RECORD.p7s"}
    missing = sorted(names - set(listed) - unsigned)
    if missing:
        raise WheelRejected(f"wheel {filename}: {missing[0]} is not in RECORD")
    for path, digest in listed.items():
        if path in unsigned:
            continue
        if path not in names:
            raise WheelRejected(f"wheel {filename}: RECORD lists {path}, which is missing")
        algo, _, want = digest.partition("=")
        if algo != "sha256":
            raise WheelRejected(f"wheel {filename}: RECORD entry {path} has no sha256 hash")
        h = hashlib.sha256()
        with zf.open(path) as member:   # streamed: a huge member is not held in memory
            while chunk := member.read(1 << 20):
                h.update(chunk)
        got = base64.urlsafe_b64encode(h.digest()).rstrip(b"=")
        if got.decode() != want:
            raise WheelRejected(f"wheel {filename}: RECORD hash of {path} does not match")


def _check_tags(info: WheelInfo, abi: str, platform: str, pyver: tuple[int, int]) -> None:
    own = f"cp{pyver[0]}{pyver[1]}"
    for p in info.platform_tag.split("."):
        if p not in ("any", platform):
            raise WheelRejected(f"wheel {info.filename}: platform {p} is not this builder's "
                                f"({platform})")
    for a in info.abi_tag.split("."):
        if a not in ("none", "abi3", abi):
            raise WheelRejected(f"wheel {info.filename}: ABI {a} is not this builder's ({abi})")
    if info.abi_tag == abi and own not in info.python_tag.split("."):
        raise WheelRejected(f"wheel {info.filename}: python tag {info.python_tag} does not "
                            f"match ABI {abi}")
    if info.abi_tag == "abi3":
        for py in info.python_tag.split("."):
            if not py.startswith("cp") or not py[2:].isdigit() or int(py[3:] or 0) > pyver[1]:
                raise WheelRejected(f"wheel {info.filename}: abi3 tag {py} is not producible "
                                    f"by Python {pyver[0]}.{pyver[1]}")


def verify(path: Path, package: str, version: str, *, abi: str, platform: str,
           pyver: tuple[int, int]) -> WheelInfo:
    """Inspect ``path`` and reject it unless it is the wheel we asked for."""
    info = inspect(path)
    if canonicalize_name(info.name) != canonicalize_name(package):
        raise WheelRejected(f"wheel {info.filename} is for {info.name}, not {package}")
    if canonicalize_version(info.version) != canonicalize_version(version):
        raise WheelRejected(f"wheel {info.filename} is version {info.version}, not {version}")
    if canonicalize_name(info.metadata_name) != canonicalize_name(package) or \
            canonicalize_version(info.metadata_version or "") != canonicalize_version(version):
        raise WheelRejected(f"wheel {info.filename}: METADATA says {info.metadata_name} "
                            f"{info.metadata_version}, not {package} {version}")
    with _reading(info.filename), zipfile.ZipFile(path) as zf:
        _check_record(zf, _dist_info(zf, info.filename), info.filename)
    _check_tags(info, abi, platform, pyver)
    return info
