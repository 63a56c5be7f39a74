"""Expected failures: the CLI prints these as one line and exits non-zero."""


class PiwheelsError(Exception):
    """An expected failure with a message that says what is wrong and what to do."""

    exit_code = 2


class ConfigError(PiwheelsError):
    """The configuration file is missing, malformed or has a wrong key."""


class DatabaseError(PiwheelsError):
    """The database is unreachable or not initialised."""


class UpstreamError(PiwheelsError):
    """The upstream index is unreachable or answered something malformed."""


class StoreError(PiwheelsError):
    """The wheel store refused a write (would overwrite different bytes, disk full, ...)."""


class WheelRejected(PiwheelsError):
    """A built wheel failed verification (wrong name, version, tags or RECORD)."""


class AdminError(PiwheelsError):
    """An operator request that cannot be carried out (bad name, unknown package...)."""
