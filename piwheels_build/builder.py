"""Claim a build, build it with pip in a fresh HOME/TMPDIR, verify, store, record.

The builder talks to the database only through the functions a builder role
may call (register_builder, claim_build, heartbeat_build, finish_build,
file_is_recorded), so it runs the same with the master's DSN or a builder's.
"""

from __future__ import annotations

import hashlib
import os
import platform as pyplatform
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.extras
import requests

from . import buildlog, db, wheels
from .config import Config
from .errors import PiwheelsError, StoreError, WheelRejected
from .interpreters import Interpreter
from .store import Store

_MISSING_DEP = (b"ModuleNotFoundError: No module named", b"ImportError: No module named")


@dataclass
class Claim:
    build_id: int
    package: str
    version: str
    abi_tag: str
    sdist_filename: str
    sdist_url: str
    sdist_sha256: str | None


@dataclass
class Outcome:
    """What one build produced, ready for finish_build()."""

    status: str
    duration: float
    log: bytes = b""
    files: list[dict] = field(default_factory=list)
    printed: int = 0          # bytes the build printed, before the cap
    truncated: bool = False


@dataclass
class BuildSummary:
    builds: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def add(self, claim: Claim, outcome: Outcome) -> None:
        self.builds += 1
        self.by_status[outcome.status] = self.by_status.get(outcome.status, 0) + 1
        self.built += [f["filename"] for f in outcome.files if not f.get("alias_of")]

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.by_status.items())) or "nothing"
        return f"build: {self.builds} builds in {self.elapsed:.1f}s ({counts})"


def _os_release() -> str:
    try:
        info = pyplatform.freedesktop_os_release()
        return info.get("VERSION_CODENAME") or info.get("ID", "")
    except OSError:
        return ""


class Builder:
    """One machine's builder: one registered builder per interpreter."""

    def __init__(self, cfg: Config, interpreters: list[Interpreter],
                 progress: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.interpreters = interpreters
        self.progress = progress or (lambda _msg: None)
        self.store = Store(cfg.www)
        self.upstream = cfg.upstream_url()
        self.http = requests.Session()
        self.conn = db.connect(cfg.database, autocommit=True)
        self.ids: dict[str, int] = {}
        release = _os_release()
        with self.conn.cursor() as cur:
            for interp in interpreters:
                cur.execute("SELECT register_builder(%s, %s, %s, %s, %s)",
                            (cfg.builder_name, interp.abi_tag, interp.platform_tag,
                             ".".join(map(str, interp.version)), release))
                self.ids[interp.abi_tag] = cur.fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    # -- the loop -------------------------------------------------------------

    def run(self, batch: int | None = None, forever: bool = False,
            stop: threading.Event | None = None) -> BuildSummary:
        """Build until the queue is empty (or ``batch`` builds, or forever)."""
        summary = BuildSummary()
        start = time.monotonic()
        stop = stop or threading.Event()
        idle_sleep = 1.0
        while not stop.is_set() and (batch is None or summary.builds < batch):
            worked = False
            for interp in self.interpreters:
                if batch is not None and summary.builds >= batch or stop.is_set():
                    break
                claim = self.claim(interp)
                if claim is None:
                    continue
                worked = True
                outcome = self.build(interp, claim)
                kept = self.finish(claim, outcome)
                summary.add(claim, outcome)
                self.progress(f"build: {claim.package} {claim.version} {claim.abi_tag}: "
                              f"{outcome.status} in {outcome.duration:.1f}s"
                              + ("" if kept else " (lease lost, not recorded)"))
            if not worked:
                if not forever:
                    break
                stop.wait(idle_sleep)
                idle_sleep = min(idle_sleep * 2, 30.0)
            else:
                idle_sleep = 1.0
        summary.elapsed = time.monotonic() - start
        return summary

    def claim(self, interp: Interpreter) -> Claim | None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT * FROM claim_build(%s, %s)",
                        (self.ids[interp.abi_tag], self.cfg.lease_seconds))
            row = cur.fetchone()
        return Claim(*row) if row else None

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        text, size, truncated = buildlog.capped_bytes(outcome.log, self.cfg.log_limit)
        size = max(size, outcome.printed)
        truncated = truncated or outcome.truncated
        with self.conn.cursor() as cur:
            cur.execute("SELECT finish_build(%s, %s, %s, %s, %s, %s, %s)",
                        (claim.build_id, outcome.status, outcome.duration,
                         psycopg2.Binary(buildlog.compress(text)), size, truncated,
                         psycopg2.extras.Json(outcome.files)))
            return cur.fetchone()[0]

    # -- one build ------------------------------------------------------------

    def build(self, interp: Interpreter, claim: Claim) -> Outcome:
        """Download, build, verify and store one claim; never raises for the package's faults."""
        start = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="piwheels-build-"))
        lost = threading.Event()
        beat = _Heartbeat(self.cfg, claim.build_id, lost)
        beat.start()
        try:
            try:
                sdist = self._download(claim, work)
            except PiwheelsError as e:
                return Outcome("infrastructure", time.monotonic() - start, str(e).encode())
            status, log, printed, truncated = self._pip_wheel(interp, claim, sdist, work, lost)
            files: list[dict] = []
            if status == "success":
                try:
                    files = self._verify_and_store(interp, claim, work / "out")
                except WheelRejected as e:
                    status, log = "failed", log + f"\n[piwheels] wheel rejected: {e}\n".encode()
                except (StoreError, OSError) as e:
                    status = "infrastructure"
                    log += f"\n[piwheels] store failed: {e}\n".encode()
            return Outcome(status, time.monotonic() - start, log, files, printed, truncated)
        finally:
            beat.stop()
            shutil.rmtree(work, ignore_errors=True)

    def _download(self, claim: Claim, work: Path) -> Path:
        dest = work / Path(claim.sdist_filename).name
        h = hashlib.sha256()
        try:
            with self.http.get(claim.sdist_url, stream=True, timeout=self.cfg.http_timeout) as r:
                r.raise_for_status()
                with dest.open("wb") as fh:
                    for chunk in r.iter_content(1 << 16):
                        fh.write(chunk)
                        h.update(chunk)
        except (requests.RequestException, OSError) as e:
            raise PiwheelsError(f"download of {claim.sdist_url} failed: {e}") from None
        if claim.sdist_sha256 and h.hexdigest() != claim.sdist_sha256:
            raise PiwheelsError(f"download of {claim.sdist_url}: sha256 mismatch")
        return dest

    def _env(self, interp: Interpreter, work: Path) -> dict[str, str]:
        """Only the farm's configuration: no ambient PIP_* variables or pip.conf files."""
        home, tmp = work / "home", work / "tmp"
        home.mkdir()
        tmp.mkdir()
        path = os.pathsep.join([str(Path(interp.path).parent), "/usr/local/bin", "/usr/bin",
                                "/bin"])
        return {
            "PATH": path, "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1",
        }

    def _pip_wheel(self, interp: Interpreter, claim: Claim, sdist: Path, work: Path,
                   lost: threading.Event) -> tuple[str, bytes, int, bool]:
        out = work / "out"
        out.mkdir()
        cmd = [interp.path, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-v",
               "--index-url", self.upstream, "--wheel-dir", str(out), str(sdist)]
        log_path = work / "build.log"
        limit = self.cfg.build_memory
        with log_path.open("wb") as log:
            # No preexec_fn: forking with the heartbeat thread running is unsafe.
            proc = subprocess.Popen(cmd, cwd=work, env=self._env(interp, work), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, limit))
            except (ProcessLookupError, PermissionError):
                pass
            status = self._wait(proc, lost)
        text, size, truncated = buildlog.capped(log_path, self.cfg.log_limit)
        if status == "success" and proc.returncode != 0:
            status = "failed"
            if any(m in text for m in _MISSING_DEP):
                status = "missing-build-dependency"
            elif b"MemoryError" in text:
                status = "out-of-memory"
        if status == "timeout":
            text += f"\n[piwheels] killed after {self.cfg.build_timeout}s timeout\n".encode()
        return status, text, size, truncated

    def _wait(self, proc: subprocess.Popen, lost: threading.Event) -> str:
        """Wait for the build; kill its whole process group on timeout or lost lease."""
        deadline = time.monotonic() + self.cfg.build_timeout
        while True:
            try:
                proc.wait(timeout=0.5)
                _killpg(proc.pid)  # anything it left running dies with it
                return "success"
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline or lost.is_set():
                _killpg(proc.pid)
                proc.wait()
                return "timeout" if not lost.is_set() else "infrastructure"

    def _verify_and_store(self, interp: Interpreter, claim: Claim, out: Path) -> list[dict]:
        built = sorted(out.glob("*.whl"))
        if not built:
            raise WheelRejected("pip reported success but produced no wheel")
        records = []
        for path in built:
            info = wheels.verify(path, claim.package, claim.version, abi=interp.abi_tag,
                                 platform=interp.platform_tag, pyver=interp.pyver)
            self.store.put(claim.package, info.filename, path, may_replace=self._unrecorded)
            meta_sha = self.store.put_metadata(claim.package, info.filename, info.metadata)
            rec = info.record()
            rec["metadata_sha256"] = meta_sha
            records.append(rec)
            for alias in self.store.alias_names(info.filename, self.cfg.platform_aliases):
                if self.store.alias(claim.package, info.filename, alias):
                    records.append(dict(rec, filename=alias, alias_of=info.filename,
                                        platform_tag=alias[:-4].split("-")[-1]))
        return records

    def _unrecorded(self, filename: str) -> bool:
        with self.conn.cursor() as cur:
            cur.execute("SELECT file_is_recorded(%s)", (filename,))
            return not cur.fetchone()[0]


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Heartbeat(threading.Thread):
    """Renew the lease while a build runs; flag ``lost`` if the lease is gone."""

    def __init__(self, cfg: Config, build_id: int, lost: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cfg, self.build_id, self.lost = cfg, build_id, lost
        self._halt = threading.Event()

    def run(self) -> None:
        interval = max(1.0, self.cfg.lease_seconds / 3)
        conn = None
        while not self._halt.wait(interval):
            try:
                conn = conn or db.connect(self.cfg.database, autocommit=True)
                with conn.cursor() as cur:
                    cur.execute("SELECT heartbeat_build(%s, %s)",
                                (self.build_id, self.cfg.lease_seconds))
                    if not cur.fetchone()[0]:
                        self.lost.set()
                        return
            except (PiwheelsError, psycopg2.Error):
                conn = None  # the database is away; the lease may still hold, keep trying
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
