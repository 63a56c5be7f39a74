"""Claim a build, build it in the sandbox (build/buildenv.py), verify, store, record.

The builder talks to the database only through the functions a builder role
may call (register_builder, claim_build, heartbeat_build, finish_build,
file_is_recorded), so it runs the same with the master's DSN or a builder's.
"""

from __future__ import annotations

import hashlib
import logging
import platform as pyplatform
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.extras
import requests

from .. import db, queue, requirespython
from .. import http as retrying
from ..config import Config
from ..db.reconnect import Link, Stopped
from ..errors import PiwheelsError, StoreError, WheelRejected
from ..queue import Claim
from ..store import Store
from . import armv6, buildlog, elfdeps, pkginfo, preflight, wheels
from .buildenv import BuildEnv, Sources
from .envcache import EnvTemplates
from .interpreters import Interpreter
from .reqcache import RequirementsCache
from .sandbox import Limits, RunResult, Sandbox
from .sdists import SdistError, build_system
from .storegate import wait_for_store


@dataclass
class Outcome:
    """What one build produced, ready for finish_build()."""

    status: str
    duration: float
    log: bytes = b""
    files: list[dict] = field(default_factory=list)
    printed: int = 0          # bytes the build printed, before the cap
    truncated: bool = False


@dataclass(frozen=True)
class BuildResult:
    """One finished build, as the CLI prints it and the Ansible module returns it.

    ``duration`` is in seconds; ``files`` are the wheels built and stored,
    ``aliases`` the extra names they were published under (``linux_armv6l``);
    ``recorded`` is False when the lease was lost and the database kept
    nothing of it.
    """

    build_id: int
    package: str
    version: str
    target: str              # "cp311-linux_armv7l"
    status: str
    duration: float
    files: tuple[str, ...]
    aliases: tuple[str, ...]
    recorded: bool

    def __str__(self) -> str:
        return (f"build: {self.package} {self.version} {self.target}: "
                f"{self.status} in {self.duration:.1f}s"
                + ("" if self.recorded else " (lease lost, not recorded)"))


@dataclass
class BuildSummary:
    """What ``Builder.run`` did: every build's result, counts by status, elapsed seconds."""

    results: list[BuildResult] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def builds(self) -> int:
        return len(self.results)

    @property
    def by_status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def built(self) -> list[str]:
        """Wheels built (not their aliases)."""
        return [f for r in self.results for f in r.files]

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.by_status.items())) or "nothing"
        return f"build: {self.builds} builds in {self.elapsed:.1f}s ({counts})"


#: How long a one-shot ``piwheels build`` waits for the database to come back, in seconds.
ONE_SHOT_WAIT = 300.0


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
        self.box = Sandbox.from_config(cfg)
        # What killed builders left (build directories, requirements cache, cgroups) goes;
        # this process's own directory holds its builds and its cache from now on.
        for path in self.box.take_workroot():
            self.progress(f"build: removed {path}, left by a builder that was killed")
        self.reqs = RequirementsCache(Path(self.box.owned or self.box.workroot))
        self.envs = EnvTemplates(Path(self.box.owned or self.box.workroot))
        self.upstream = cfg.upstream_url()
        # Retries a dropped connection, a timeout, 429 or 5xx (honouring Retry-After), so a
        # network blip does not become an infrastructure failure waiting retry_delay.
        self.http = retrying.session(cfg.http_retries)
        # Reconnects with backoff when PostgreSQL restarts (db/reconnect.py).
        self.db = Link(cfg.database, autocommit=True, log=logging.getLogger("piwheels.build"))
        # Checked once, before anything is registered or claimed (build/preflight.py):
        # one line for an interpreter, sandbox, store or grant that would fail every build.
        try:
            self.warnings = preflight.check(cfg, interpreters, self.box, self.conn, self._run)
        except BaseException:
            self.close()
            raise
        self.ids: dict[str, int] = {}
        release = _os_release()
        for interp in interpreters:
            self.ids[interp.abi_tag] = queue.register_builder(
                self.conn, cfg.builder_name, interp.abi_tag, interp.platform_tag,
                ".".join(map(str, interp.version)), release)

    @property
    def conn(self) -> psycopg2.extensions.connection:
        """The builder's connection now (a new one after the database restarted)."""
        return self.db.conn

    def close(self) -> None:
        self.reqs.close()
        self.envs.close()
        self.box.release_workroot()
        self.db.close()

    # -- the loop -------------------------------------------------------------

    def run(self, batch: int | None = None, forever: bool = False,
            stop: threading.Event | None = None) -> BuildSummary:
        """Build until the queue is empty (or ``batch`` builds, or forever)."""
        summary = BuildSummary()
        start = time.monotonic()
        stop = stop or threading.Event()
        self.db.stop = stop  # a stop ends a wait for the database too
        # A service waits for the database as long as it takes; a one-shot run (an
        # Ansible wave) gives up after a few minutes with the CLI's one line.
        self.db.give_up = None if forever else ONE_SHOT_WAIT
        try:
            self._loop(summary, batch, forever, stop)
        except Stopped as e:
            self.progress(f"build: {e}")
        summary.elapsed = time.monotonic() - start
        return summary

    def _loop(self, summary: BuildSummary, batch: int | None, forever: bool,
              stop: threading.Event) -> None:
        idle_sleep = 1.0
        while not stop.is_set() and (batch is None or summary.builds < batch):
            worked = False
            for interp in self.interpreters:
                if batch is not None and summary.builds >= batch or stop.is_set():
                    break
                # A store gone or full fails every upload: wait, spending no build's retries.
                wait_for_store(self.cfg.www, self.cfg.store_free_floor, stop, forever)
                if stop.is_set():
                    break
                builder_id = self.ids[interp.abi_tag]
                claim = self.db.call(lambda c, b=builder_id: queue.claim_build(
                    c, b, self.cfg.lease_seconds))
                if claim is None:
                    continue
                worked = True
                outcome = self.build(interp, claim)
                result = self.finish(claim, outcome)
                summary.results.append(result)
                self.progress(str(result))
            if not worked:
                if not forever:
                    break
                stop.wait(idle_sleep)
                idle_sleep = min(idle_sleep * 2, 5.0)  # a new release waits at most 5 s
            else:
                idle_sleep = 1.0

    def finish(self, claim: Claim, outcome: Outcome) -> BuildResult:
        """Record the outcome (capped, gzipped log); the build's result."""
        text, size, truncated = buildlog.capped_bytes(outcome.log, self.cfg.log_limit)
        size = max(size, outcome.printed)
        truncated = truncated or outcome.truncated
        log = buildlog.compress(text)
        # Sent again after a reconnection: finish_build records a build only while it is
        # 'building', so a second call after a lost answer records nothing (never twice),
        # and one whose lease expired meanwhile is not recorded at all.
        try:
            kept = self.db.call(lambda c: queue.finish_build(
                c, claim.build_id, outcome.status, outcome.duration, log, size, truncated,
                outcome.files))
        except Stopped:
            self.progress(f"build: {claim.package} {claim.version} {claim.target}: "
                          "stopped before the database came back; not recorded, its lease "
                          "expires and it is built again")
            raise
        return BuildResult(
            claim.build_id, claim.package, claim.version, claim.target, outcome.status,
            outcome.duration,
            tuple(f["filename"] for f in outcome.files if not f.get("alias_of")),
            tuple(f["filename"] for f in outcome.files if f.get("alias_of")), kept)

    # -- one build ------------------------------------------------------------

    def build(self, interp: Interpreter, claim: Claim) -> Outcome:
        """Download, build in the sandbox, verify and store one claim.

        Never raises for the package's faults: they become a status and a log."""
        start = time.monotonic()
        work = self.box.new_workdir()
        lost = threading.Event()
        beat = _Heartbeat(self.cfg, claim.build_id, lost)
        beat.start()
        try:
            return self._build_in(interp, claim, work, lost, start)
        finally:
            beat.stop()
            shutil.rmtree(work, ignore_errors=True)

    def _build_in(self, interp: Interpreter, claim: Claim, work: Path,
                  lost: threading.Event, start: float) -> Outcome:
        log = _Log()
        try:
            sdist = self._download(claim, work / "build" / "src")
        except PiwheelsError as e:
            return Outcome("infrastructure", time.monotonic() - start, str(e).encode())
        self.box.give(sdist)
        if (why := _not_for_python(interp, sdist)) is not None:
            return Outcome("not-for-python", time.monotonic() - start, why.encode())
        try:
            system = build_system(sdist)
        except SdistError as e:
            return Outcome("failed", time.monotonic() - start, f"[piwheels] {e}\n".encode())

        def run(argv: list[str], *, network: bool, cwd: str | None = None,
                env: dict[str, str] | None = None) -> RunResult:
            return self._run(interp, work, lost, start, network=network, argv=argv, cwd=cwd,
                             env=env)

        env = BuildEnv(interp, self.box, work, run, log, self.reqs,
                       Sources(self.upstream, self._trusted()),
                       online=self.cfg.build_network == "online", templates=self.envs)
        log.note(f"build {claim.package} {claim.version} for {claim.target} with "
                 f"{system.backend}")
        status = env.build(sdist, system)
        files: list[dict] = []
        if status == "success":
            try:
                files = self._verify_and_store(interp, claim, work / "build" / "out", log.note)
            except WheelRejected as e:
                status = "failed"
                log.note(f"wheel rejected: {e}")
            except (StoreError, OSError) as e:
                status = "infrastructure"
                log.note(f"store failed: {e}")
        return log.outcome(status, start, files)

    def _trusted(self) -> list[str]:
        """pip ignores a plain-HTTP index that is not loopback unless told to trust it;
        an operator who configured one (a LAN mirror) means it."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.upstream)
        return ["--trusted-host", parts.hostname] if parts.scheme == "http" and parts.hostname \
            else []

    def _run(self, interp: Interpreter, work: Path, lost: threading.Event, start: float, *,
             network: bool, argv: list[str], cwd: str | None = None,
             env: dict[str, str] | None = None) -> RunResult:
        remaining = max(self.cfg.build_timeout - (time.monotonic() - start), 1.0)
        limits = Limits(timeout=remaining, memory=self.cfg.build_memory,
                        disk=self.cfg.build_disk, log=self.cfg.log_limit,
                        pids=self.cfg.build_pids)
        readonly = sorted({interp.prefix, _interpreter_home(interp.path)})
        return self.box.run(argv, work, env=env or self.box.env(work), network=network,
                            readonly=readonly, limits=limits, lost=lost, cwd=cwd)

    def _download(self, claim: Claim, dest_dir: Path) -> Path:
        name = Path(claim.sdist_filename).name
        if not name or name.startswith("."):
            raise PiwheelsError(f"refusing sdist file name {claim.sdist_filename!r}")
        dest = dest_dir / name
        h = hashlib.sha256()
        try:
            with retrying.get(self.http, claim.sdist_url, timeout=self.cfg.http_timeout,
                              retries=self.cfg.http_retries, stream=True) as r:
                r.raise_for_status()
                with dest.open("wb") as fh:
                    for chunk in r.iter_content(1 << 16):
                        fh.write(chunk)
                        h.update(chunk)
        except retrying.GaveUp as e:
            raise PiwheelsError(f"download of {claim.sdist_url} failed ({e.reason}, "
                                f"{e.attempts} attempt{'s' * (e.attempts > 1)})") from None
        except (requests.RequestException, OSError) as e:
            raise PiwheelsError(f"download of {claim.sdist_url} failed: {e}") from None
        if claim.sdist_sha256 and h.hexdigest() != claim.sdist_sha256:
            raise PiwheelsError(f"download of {claim.sdist_url}: sha256 mismatch")
        return dest

    def _verify_and_store(self, interp: Interpreter, claim: Claim, out: Path,
                          note: Callable[[str], None]) -> list[dict]:
        built = sorted(p for p in out.iterdir() if p.suffix == ".whl" and p.is_file()
                       and not p.is_symlink())
        if not built:
            raise WheelRejected("pip reported success but produced no wheel")
        records = []
        for path in built:
            info = wheels.verify(path, claim.package, claim.version, abi=interp.abi_tag,
                                 platform=interp.platform_tag, pyver=interp.pyver)
            self.store.put(claim.package, info.filename, path, may_replace=self._unrecorded,
                           floor=self.cfg.store_free_floor)
            meta_sha = self.store.put_metadata(claim.package, info.filename, info.metadata)
            rec = info.record()
            rec["metadata_sha256"] = meta_sha
            rec["dependencies"] += elfdeps.dependencies(path)
            records.append(rec)
            for alias in self.store.alias_names(info.filename, self.cfg.platform_aliases):
                why = _alias_refusal(path, alias)
                if why:
                    note(f"not published as {alias}: {why}")
                    # on the project page beside the wheel (files.alias_note, 0010)
                    rec["alias_note"] = f"not published as {alias}: {why}"
                    continue
                if self.store.alias(claim.package, info.filename, alias):
                    records.append(dict(rec, filename=alias, alias_of=info.filename,
                                        alias_note=None,
                                        platform_tag=alias[:-4].split("-")[-1]))
        return records

    def _unrecorded(self, filename: str) -> bool:
        return not self.db.call(lambda c: queue.file_is_recorded(c, filename))


def _not_for_python(interp: Interpreter, sdist: Path) -> str | None:
    """The log line when the sdist's PKG-INFO Requires-Python rules this interpreter out
    (checked with its exact version, as pip does); None to build. Sync queues by the
    upstream's Requires-Python; this catches an sdist whose upstream entry gave none."""
    spec = pkginfo.requires_python(sdist)
    if spec is None or requirespython.admits(spec, interp.version):
        return None
    python = ".".join(map(str, interp.version))
    return (f"[piwheels] not for Python {python}: the sdist's PKG-INFO says Requires-Python "
            f"{spec}; not built for {interp.abi_tag} (not a failure, not retried)\n")


def _alias_refusal(wheel: Path, alias: str) -> str | None:
    """Why a wheel must not be published under an alias name, or None.

    An ``armv6l`` alias needs ARMv6 code in every ELF file (build/armv6.py)."""
    if not alias[:-4].split("-")[-1].endswith("_armv6l"):
        return None
    try:
        why = armv6.armv6_refusal(wheel)
    except (OSError, zipfile.BadZipFile) as e:
        return f"its ELF files cannot be read ({e})"
    return f"{why}, which an ARMv6 Raspberry Pi (Pi 1, Zero) cannot run" if why else None


def _interpreter_home(path: str) -> str:
    """The directory a build must see for this interpreter: a venv's root (with its
    pyvenv.cfg) or the directory of the executable."""
    bindir = Path(path).parent
    return str(bindir.parent if (bindir.parent / "pyvenv.cfg").exists() else bindir)


class _Log:
    """The log of one build: each sandboxed step's output under a header."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.printed = 0
        self.truncated = False

    def add(self, title: str, result: RunResult) -> None:
        self.parts.append(f"[piwheels] == {title} ==\n".encode())
        self.parts.append(result.log)
        self.printed += result.printed
        self.truncated |= result.truncated
        end = {"exit": f"exit status {result.returncode}",
               "timeout": "killed at the build timeout",
               "memory": "killed at the memory cap",
               "disk": "killed at the disk cap of the build directory",
               "lost": "stopped: the build's lease was lost"}[result.reason]
        self.parts.append(f"\n[piwheels] {end} after {result.elapsed:.1f}s\n".encode())

    def note(self, text: str) -> None:
        self.parts.append(f"[piwheels] {text}\n".encode())

    def outcome(self, status: str, start: float, files: list[dict] | None = None) -> Outcome:
        return Outcome(status, time.monotonic() - start, b"".join(self.parts), files or [],
                       self.printed, self.truncated)


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
                if not queue.heartbeat_build(conn, self.build_id, self.cfg.lease_seconds):
                    self.lost.set()
                    return
            except (PiwheelsError, psycopg2.Error):
                conn = None  # the database is away; the lease may still hold, keep trying
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
