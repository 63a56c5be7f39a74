#!/usr/bin/python
# BSD-3-Clause (see the project's licence)
"""Ansible module: the piwheels schema (migrations) and settings."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: piwheels_db
short_description: Apply the piwheels schema migrations and store the farm's settings
description:
  - Applies every schema migration shipped with the installed
    C(piwheels_build) that the database O(name) lacks (as O(owner), so the
    owner owns every object, under the migration lock), and stores the given
    O(settings) the SQL functions read.
  - The database, its owner and the group roles C(piwheels_master),
    C(piwheels_builder) and C(piwheels_web) (the migrations grant to them) are
    made first with the C(community.postgresql) modules
    (C(community.postgresql.postgresql_db), C(community.postgresql.postgresql_user)),
    as are login roles and their memberships (C(community.postgresql.postgresql_membership));
    see the master role's C(tasks/database.yml).
  - A thin wrapper over C(python -m piwheels_build.admin) run with O(python),
    the interpreter of the venv C(piwheels_build) is installed in; the request
    goes to it on standard input.
  - Reports C(changed) only when a migration was applied or a setting changed.
version_added: "0.1.0"
author: piwheels-build
options:
  name:
    description: Name of the database.
    type: str
    default: piwheels
  owner:
    description:
      - Login role that owns the database and every object in it; the
        migrations run as this role. The master's services connect as it (by
        peer authentication on the master).
    type: str
    default: piwheels
  admin_dsn:
    description:
      - libpq DSN of a superuser connection (the module normally runs with
        C(become_user=postgres) and peer authentication). Its C(dbname) is
        replaced with O(name).
    type: str
    default: host=/var/run/postgresql dbname=postgres
  schema:
    description: Apply pending migrations.
    type: bool
    default: true
  settings:
    description:
      - Settings the SQL functions read, such as C(retry_limit) and C(retry_delay).
    type: dict
    default: {}
  python:
    description: Interpreter that can import C(piwheels_build).
    type: path
    default: /opt/piwheels/venv/bin/python
notes:
  - Supports check mode; the answer says which migrations would be applied and
    which settings would change.
requirements:
  - piwheels_build installed for O(python), PostgreSQL reachable through O(admin_dsn).
seealso:
  - module: community.postgresql.postgresql_db
  - module: community.postgresql.postgresql_user
  - module: community.postgresql.postgresql_membership
"""

EXAMPLES = r"""
- name: The database and its owner
  become: true
  become_user: postgres
  community.postgresql.postgresql_db:
    name: piwheels
    owner: piwheels

- name: Schema and settings
  become: true
  become_user: postgres
  piwheels_db:
    name: piwheels
    owner: piwheels
    settings:
      retry_limit: 5
      retry_delay: 60

- name: Only the settings
  become: true
  become_user: postgres
  piwheels_db:
    schema: false
    settings:
      retry_delay: 120
"""

RETURN = r"""
changes:
  description: What was (or in check mode would be) done, one line each.
  returned: always
  type: list
  elements: str
  sample: ["apply 0004_faster_finish_and_refresh.sql", "set retry_limit = 5"]
applied:
  description: Migrations applied (or pending, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["0001_tables.sql", "0002_queue.sql", "0003_roles.sql"]
schema_version:
  description: Schema version after the run.
  returned: when O(schema) is true
  type: int
  sample: 3
"""

from ansible.module_utils.piwheels_admin import admin_module, run_admin  # noqa: E402


def main():
    module = admin_module(dict(
        name=dict(type="str", default="piwheels"),
        owner=dict(type="str", default="piwheels"),
        admin_dsn=dict(type="str", default="host=/var/run/postgresql dbname=postgres"),
        schema=dict(type="bool", default=True),
        settings=dict(type="dict", default={}),
    ))
    p = module.params
    answer = run_admin(module, "database", {
        "name": p["name"], "owner": p["owner"], "admin_dsn": p["admin_dsn"],
        "schema": p["schema"], "settings": p["settings"],
    })
    module.exit_json(changed=answer["changed"], changes=answer["changes"],
                     applied=answer.get("applied", []),
                     **({"schema_version": answer["schema_version"]}
                        if "schema_version" in answer else {}))


if __name__ == "__main__":
    main()
