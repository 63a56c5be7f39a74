"""Operator actions, shared by the Ansible modules (library/), Fabric tasks and the CLI.

Every action is idempotent, reports whether it changed anything, and can run
in check mode (say what it would change, change nothing). The modules call
``python -m piwheels_build.admin`` (``request``) with one JSON request on stdin.

Modules: ``provisioning`` (database, migrations, settings, logins),
``queueops`` (refresh, skip, requeue, facts), ``waves`` (sync and build runs),
``request`` (the JSON entry point).
"""

from ..errors import AdminError

__all__ = ["AdminError"]
