"""Find the Python interpreters a builder can build for, and what they produce.

Each interpreter is one builder: its ABI tag (``cp311``) decides what it
claims, its platform tag (``linux_armv7l``) what its wheels are called.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

MIN_VERSION = (3, 8)

_PROBE = r"""
import json, sys, sysconfig
try:
    import pip
    pipv = pip.__version__
except Exception:
    pipv = None
soabi = sysconfig.get_config_var("SOABI") or ""
print(json.dumps({
    "impl": sys.implementation.name,
    "version": list(sys.version_info[:3]),
    "soabi": soabi,
    "platform": sysconfig.get_platform(),
    "pip": pipv,
    "executable": sys.executable,
    "prefix": sys.base_prefix,
}))
"""


@dataclass(frozen=True)
class Interpreter:
    """One interpreter a builder builds with."""

    path: str
    version: tuple[int, int, int]
    abi_tag: str
    platform_tag: str
    pip_version: str
    prefix: str = "/usr"

    @property
    def pyver(self) -> tuple[int, int]:
        return self.version[0], self.version[1]

    @property
    def target(self) -> str:
        """The build target this interpreter builds for: "ABI-PLATFORM" (migration 0010)."""
        return f"{self.abi_tag}-{self.platform_tag}"

    def __str__(self) -> str:
        v = ".".join(map(str, self.version))
        return f"{self.abi_tag} (Python {v}, {self.platform_tag}, {self.path})"


def probe(path: str) -> Interpreter | None:
    """Ask an interpreter what it is; None if it cannot build wheels (no pip, not CPython)."""
    try:
        out = subprocess.run([path, "-I", "-c", _PROBE], capture_output=True, text=True,
                             timeout=30, check=True, stdin=subprocess.DEVNULL,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}).stdout
        data = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if data["impl"] != "cpython" or not data["pip"] or not data["soabi"].startswith("cpython-"):
        return None
    abi = "cp" + data["soabi"].split("-")[1]
    platform = data["platform"].replace("-", "_").replace(".", "_")
    return Interpreter(path=data["executable"], version=tuple(data["version"]), abi_tag=abi,
                       platform_tag=platform, pip_version=data["pip"], prefix=data["prefix"])


def _candidates() -> list[str]:
    seen: list[str] = []
    names = ["python3"] + [f"python3.{n}" for n in range(MIN_VERSION[1], 30)]
    for name in names:
        found = shutil.which(name)
        if found and "/shims/" not in found:
            seen.append(found)
    for d in ("/usr/bin", "/usr/local/bin"):
        seen += sorted(glob.glob(f"{d}/python3.[0-9]*"))
    pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    seen += sorted(glob.glob(f"{pyenv}/versions/*/bin/python3"))
    return [p for p in seen if not p.endswith("-config")]


def discover(min_version: tuple[int, int] = MIN_VERSION) -> list[Interpreter]:
    """Every usable CPython >= min_version on this machine, one per ABI."""
    by_abi: dict[str, Interpreter] = {}
    real_seen: set[str] = set()
    for path in _candidates():
        real = os.path.realpath(path)
        if real in real_seen:
            continue
        real_seen.add(real)
        interp = probe(path)
        if interp and interp.pyver >= min_version and interp.abi_tag not in by_abi:
            by_abi[interp.abi_tag] = interp
    return sorted(by_abi.values(), key=lambda i: i.version)


def resolve(pythons: list[str]) -> list[Interpreter]:
    """The configured interpreters (paths or names), or discovered ones if none are."""
    if not pythons:
        found = discover()
        if not found:
            raise ConfigError("config: no usable Python interpreter (CPython with pip) found; "
                              "install python3-pip or set 'pythons'")
        return found
    result: dict[str, Interpreter] = {}
    for name in pythons:
        path = name if os.sep in name else shutil.which(name)
        interp = probe(path) if path else None
        if interp is None:
            raise ConfigError(f"config: pythons: {name!r} is not a CPython with pip on this "
                              "machine; fix the path or install pip for it")
        result.setdefault(interp.abi_tag, interp)
    return sorted(result.values(), key=lambda i: i.version)
