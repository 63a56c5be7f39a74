"""Which access logs to read, and whether they can be, checked at start."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def configured(cfg) -> list[Path]:
    """``access_logs`` of the configuration, relative to its file."""
    return [cfg.path(p) for p in cfg.access_logs]


def check(paths: list[Path], *, named: bool, service: bool = False) -> list[str]:
    """ConfigError (one line) for a log that cannot be read: one that exists but is not
    a readable file, or (``named`` on the command line) one that does not exist; a
    configured one may be missing (``access.log.1`` before the first rotation) if its
    directory exists. For the index service (``service``) a missing directory (nginx
    not installed yet when the master is provisioned first) is a warning line,
    returned, not a refusal: the log is read once it appears."""
    warnings = []
    for path in paths:
        where = "" if named else " (access_logs in the config)"
        if path.exists():
            if not path.is_file():
                raise ConfigError(f"downloads: {path}{where} is not a file; name an access log")
            if not os.access(path, os.R_OK):
                raise ConfigError(
                    f"downloads: {path}{where} is not readable by this user; let it read the "
                    "log (nginx's logs are group adm: add the user to adm)")
        elif named:
            raise ConfigError(f"downloads: {path} does not exist; name an access log")
        elif not path.parent.is_dir():
            line = (f"downloads: {path}{where}: its directory does not exist; fix "
                    "access_logs in the config")
            if not service:
                raise ConfigError(line)
            warnings.append(line + " (read once it appears)")
    return warnings
