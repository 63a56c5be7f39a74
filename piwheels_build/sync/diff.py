"""The pure part of sync: what a project page changes in the rows we hold.

No database, no network: given the old rows and a fetched page, which
version and file rows to write and what to count."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from packaging.version import InvalidVersion, Version

from .. import requirespython
from .simpleapi import ProjectPage, classify
from .summary import SyncSummary

SYNC_SKIPS = (None, "binary-only", "yanked", "deleted")  # skip reasons sync owns


class VersionRow(NamedTuple):
    released: datetime
    yanked: bool
    yanked_reason: str | None
    prerelease: bool
    deleted: bool
    skip_reason: str | None
    requires_python: str | None = None   # the sdist's, as the upstream gave it
    python_excluded: int | None = None   # requirespython.excluded_mask of it (None: not yet)


def group_files(package: str, page: ProjectPage) -> tuple[dict[str, tuple], dict[str, list[tuple]]]:
    """File rows by filename, and (kind, file) by version; unknown files are ignored."""
    files: dict[str, tuple] = {}
    groups: dict[str, list[tuple]] = {}
    for f in page.files:
        found = classify(f.filename, package)
        if found is None or f.filename in files:
            continue
        kind, version = found
        files[f.filename] = (
            f.filename, package, version, kind, f.url, f.sha256, f.size, f.requires_python,
            f.upload_time, f.yanked, f.yanked_reason if f.yanked else None,
        )
        groups.setdefault(version, []).append((kind, f))
    return files, groups


def _is_prerelease(version: str) -> bool:
    try:
        return Version(version).is_prerelease
    except InvalidVersion:
        return False


def _skip_reason(old: str | None, has_sdist: bool, yanked: bool, skip_yanked: bool) -> str | None:
    """Sync owns binary-only, yanked and deleted; an operator's reason is kept."""
    if old not in SYNC_SKIPS:
        return old
    if not has_sdist:
        return "binary-only"
    if yanked and skip_yanked:
        return "yanked"
    return None


def sdist_requires_python(files: list[tuple]) -> str | None:
    """The Requires-Python of the sdist a builder downloads (claim_build's choice: a
    .tar.gz first, then by file name), stripped; None when it gives none."""
    sdists = sorted((not f.filename.endswith(".tar.gz"), f.filename, f)
                    for kind, f in files if kind == "sdist")
    spec = sdists[0][2].requires_python if sdists else None
    return spec.strip() or None if spec else None


def _plan_version(version: str, files: list[tuple], old: VersionRow | None,
                  skip_yanked: bool) -> VersionRow:
    """The row a version should have: released is its earliest upload, yanked if all files
    are; the sdist's Requires-Python and the Python minors it excludes."""
    times = [f.upload_time for _, f in files if f.upload_time is not None]
    if times:
        released = min(times)
    else:
        released = old.released if old else datetime.now(UTC)
    yanked = all(f.yanked for _, f in files)
    reason = next((f.yanked_reason for _, f in files if f.yanked_reason), None) if yanked else None
    has_sdist = any(kind == "sdist" for kind, _ in files)
    skip = _skip_reason(old.skip_reason if old else None, has_sdist, yanked, skip_yanked)
    spec = sdist_requires_python(files)
    return VersionRow(released, yanked, reason, _is_prerelease(version), False, skip,
                      spec, requirespython.excluded_mask(spec))


def _count(old: VersionRow | None, new: VersionRow, summary: SyncSummary) -> None:
    if old is None:
        summary.new_versions += 1
    if new.yanked and not (old and old.yanked):
        summary.yanked += 1
    if old and old.yanked and not new.yanked:
        summary.unyanked += 1
    if new.skip_reason == "binary-only" and (old is None or old.skip_reason != "binary-only"):
        summary.binary_only += 1
    if new.deleted and not (old and old.deleted):
        summary.deleted_versions += 1
    if new.requires_python != (old.requires_python if old else None) and \
            not requirespython.is_valid(new.requires_python):
        summary.invalid_requires_python += 1


def plan_versions(package: str, groups: dict[str, list[tuple]], old: dict[str, VersionRow],
                   skip_yanked: bool, summary: SyncSummary, *, partial: bool = False
                   ) -> list[tuple]:
    """The version rows that change: new or different ones, and the ones no longer listed
    (unless the page was ``partial``: a malformed page never deletes a version)."""
    rows = []
    for version, files in groups.items():
        new = _plan_version(version, files, old.get(version), skip_yanked)
        if new != old.get(version):
            _count(old.get(version), new, summary)
            rows.append((package, version, *new))
    for version, was in old.items():
        if version not in groups and not was.deleted and not partial:
            skip = "deleted" if was.skip_reason in SYNC_SKIPS else was.skip_reason
            new = was._replace(deleted=True, skip_reason=skip)
            _count(was, new, summary)
            rows.append((package, version, *new))
    return rows


def plan_files(files: dict[str, tuple], old: dict[str, tuple], *, partial: bool = False
               ) -> tuple[list[tuple], list[str]]:
    """Rows of new or changed upstream files, and names of the ones no longer listed
    (none from a ``partial`` page)."""
    stale = [] if partial else [name for name in old if name not in files]
    rows = [row for name, row in files.items() if old.get(name) != row]
    return rows, stale

