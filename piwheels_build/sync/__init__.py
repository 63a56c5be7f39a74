"""Mirror the upstream's projects, versions and files into the database.

Two phases. The list phase (``projectlist``) decides what to fetch. It reads
the root page and, set-based, adds new packages, marks removed ones deleted
and flags what changed (``needs_sync``); or, when an XML-RPC changelog is
configured and the full list was read less than ``full_list_interval`` seconds
ago, it flags only the projects the changelog names since the last run
(reading 930,000 names every few minutes is most of an incremental run; the
full list stays as the safety net that notices what the changelog missed).
The project phase (``projects``) fetches the flagged pages in a thread pool
and writes them from the main thread in groups (GROUP_SIZE), one transaction
and a fixed handful of statements per group, so an interrupted run resumes
where it stopped: ``needs_sync`` is cleared only in the transaction that
writes the project's data. What a page changes is worked out by ``diff``,
which touches neither the network nor the database.

Modules: ``upstream`` (the PEP 691/503 and XML-RPC client), ``projectlist``,
``projects``, ``diff``, ``summary``, ``run`` (one whole run).
"""

from .run import sync
from .summary import SyncInterrupted, SyncProgress, SyncSummary

__all__ = ["SyncInterrupted", "SyncProgress", "SyncSummary", "sync"]
