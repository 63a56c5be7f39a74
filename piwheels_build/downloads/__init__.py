"""Downloads, from the web server's access logs (``piwheels downloads``, migration 0009).

``logformat`` reads (and, for ``piwheels serve``, writes) the combined format;
``useragent`` turns pip's and uv's User-Agent into the dimensions counted; ``reader``
reads logs incrementally into the database; ``stats`` the figures pages show.
"""

from .reader import Reader, Summary

__all__ = ["Reader", "Summary"]
