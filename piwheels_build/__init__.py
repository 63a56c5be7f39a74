"""piwheels-build: a wheel build farm for platforms the upstream index lacks."""

__version__ = "0.1.0"
