"""What a sync run did, and the progress lines it prints while it runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

PROGRESS_EVERY = 2.0          # seconds between progress messages


@dataclass
class SyncSummary:
    """What a run did; ``errors`` holds one line per project that failed."""

    projects_seen: int = 0
    projects_synced: int = 0
    new_packages: int = 0
    new_versions: int = 0
    yanked: int = 0
    unyanked: int = 0
    deleted_versions: int = 0
    deleted_packages: int = 0
    binary_only: int = 0
    invalid_requires_python: int = 0   # versions whose sdist's specifier is ignored
    requires_python_filled: int = 0    # versions evaluated by the one-shot fill (0008)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def __str__(self) -> str:
        return (
            f"sync: {self.projects_seen:,} projects seen, {self.projects_synced:,} synced, "
            f"{self.new_packages:,} new packages, {self.new_versions:,} new versions, "
            f"{self.yanked:,} yanked, {self.unyanked:,} unyanked, "
            f"{self.deleted_versions:,} versions deleted, "
            f"{self.deleted_packages:,} packages deleted, {self.binary_only:,} binary-only, "
            + (f"{self.invalid_requires_python:,} with an invalid Requires-Python (ignored), "
               if self.invalid_requires_python else "")
            + (f"{self.requires_python_filled:,} versions' Requires-Python evaluated, "
               if self.requires_python_filled else "")
            + f"{len(self.errors):,} errors in {self.elapsed:.1f}s"
        )

    def add(self, other: SyncSummary) -> None:
        """Count a committed group's figures.

        A group counts into its own summary until it commits, so a rolled-back
        group leaves the totals right.
        """
        for f in fields(self):
            if f.name == "errors":
                self.errors.extend(other.errors)
            elif f.name != "elapsed":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class SyncInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sync; carries the summary of what was committed.

    Every group written before it stays; the group being written is rolled
    back and pages fetched but not yet written stay flagged for the next run.
    """

    def __init__(self, summary: SyncSummary) -> None:
        super().__init__("sync interrupted")
        self.summary = summary


@dataclass(frozen=True)
class SyncProgress:
    """One progress report of a run; ``str()`` is the line the CLI prints.

    ``stage`` is one of STAGES: ``list`` (reading or loading the project
    list), ``listed`` (the list phase is done: ``done`` projects listed,
    ``total`` flagged to sync), ``changelog`` (reading it), ``changelog-read``
    (the changelog-only list phase is done, same counts as ``listed``),
    ``projects`` (``done`` of ``total`` flagged projects written or failed),
    ``requires-python`` (``done`` of ``total`` versions synced before migration 0008
    whose Requires-Python was evaluated: sync/backfill.py).
    """

    text: str
    stage: str
    done: int | None = None
    total: int | None = None

    def __str__(self) -> str:
        return self.text


STAGES = ("list", "listed", "changelog", "changelog-read", "projects", "requires-python")


class Progress:
    """Passes SyncProgress reports to ``fn``; ``due()`` says when PROGRESS_EVERY seconds passed."""

    def __init__(self, fn: Callable[[SyncProgress], None] | None) -> None:
        self.fn = fn
        self.last = time.monotonic()

    def say(self, text: str, stage: str, done: int | None = None,
            total: int | None = None) -> None:
        if self.fn:
            self.fn(SyncProgress(text, stage, done, total))
        self.last = time.monotonic()

    def due(self) -> bool:
        return self.fn is not None and time.monotonic() - self.last >= PROGRESS_EVERY
