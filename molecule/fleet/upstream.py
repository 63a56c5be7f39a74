"""The test upstream index for the fleet scenario, served to the lab hosts
from the controller side of the bridge (run inside the controller's network
namespace): a pure package, a C extension, an abi3 extension, and the build
requirements (setuptools, wheel) as wheels from .cache/fixture-wheels.

    python molecule/fleet/upstream.py --host 10.77.0.1 --port 8765 [--pidfile F]
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import tarfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "helpers"), str(ROOT / "tests"), str(ROOT)]

from fixture_packages import abi3_extension, c_extension, pure  # noqa: E402
from upstream_server import FakeUpstream, _Handler  # noqa: E402

# What the scenario builds, and what verify expects: name -> (version, files).
PACKAGES = {
    "fleetpure": ("1.0", pure("fleetpure", "fleetpure")),
    "fleetcext": ("1.0", c_extension("fleetcext")),
    "fleetabi3": ("1.0", abi3_extension("fleetabi3")),
}


def sdist(name: str, version: str, files: dict[str, str]) -> tuple[str, bytes]:
    """A real sdist with no run-time dependencies (the client installs it offline)."""
    root = f"{name}-{version}"
    members = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\nrequires-python = ">=3.8"\n'
        ),
        **files,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return f"{root}.tar.gz", buf.getvalue()


class BoundUpstream(FakeUpstream):
    """FakeUpstream on a given address (the bridge), not 127.0.0.1."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host, self.port = host, port

    def start(self) -> BoundUpstream:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--wheels", default=str(ROOT / ".cache" / "fixture-wheels"))
    ap.add_argument("--pidfile")
    args = ap.parse_args()
    up = BoundUpstream(args.host, args.port)
    wheels = sorted(Path(args.wheels).glob("*.whl"))
    if not any(w.name.startswith("setuptools-") for w in wheels):
        print(f"upstream: no setuptools wheel in {args.wheels}", file=sys.stderr)
        return 2
    for whl in wheels:
        up.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
    for name, (version, files) in PACKAGES.items():
        up.add_file(name, *sdist(name, version, files))
    up.start()
    if args.pidfile:
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    print(f"upstream: {up.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
