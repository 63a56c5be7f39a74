"""The static index, written from the database only.

``www/simple/`` is a PEP 503 / PEP 691 index (HTML and JSON side by side, for
nginx or ``piwheels serve`` to pick by ``Accept``), ``www/project/`` has a page
per package for people, ``www/logs/`` the build logs and ``www/stats.*`` the
farm's numbers. Every file is written under a temporary name and renamed into
place (``fsutil.atomic_write``). File URLs are relative, so the tree can be
served from anywhere.

Incremental runs write the packages in ``index_dirty``; ``full`` rewrites every
package with files. Work goes in batches of packages, each batch one
transaction with one query per table, so memory stays bounded at PyPI's size.

Modules: ``data`` (the queries, and a page's data as plain dicts), ``pages``
(each page's HTML, rendered from the Jinja2 templates in ``templates/``, and
its JSON), ``writer`` (batches, files, what is due); ``static/`` has the
stylesheet the writer copies to ``www/static/``.
"""

from .data import collect_stats, version_key
from .writer import ROOT_STALE, IndexSummary, write_index

__all__ = ["ROOT_STALE", "IndexSummary", "collect_stats", "version_key", "write_index"]
