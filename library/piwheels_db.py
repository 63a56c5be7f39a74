#!/usr/bin/python
# BSD-3-Clause (see the project's licence)
"""Ansible module: the piwheels database, its roles and its schema."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: piwheels_db
short_description: Create the piwheels database, its roles and schema, and login roles
description:
  - Makes sure the owner login role and the database it owns exist, that the
    group roles C(piwheels_master), C(piwheels_builder) and C(piwheels_web)
    exist, that every schema migration shipped with the installed
    C(piwheels_build) is applied (as the owner, so the owner owns every
    object), that the given settings are stored, and that each login role in
    O(logins) exists, is a member of its group and has its password.
  - A thin wrapper over C(python -m piwheels_build.admin) run with O(python),
    the interpreter of the venv C(piwheels_build) is installed in. The request,
    passwords included, goes to it on standard input, never on a command line.
  - Reports C(changed) only when something was created, altered or applied.
    Passwords are compared with the stored SCRAM-SHA-256 (or md5) verifier, so
    an unchanged password is not C(changed).
version_added: "0.1.0"
author: piwheels-build
options:
  name:
    description: Name of the database.
    type: str
    default: piwheels
  owner:
    description:
      - Login role that owns the database and every object in it; the master's
        services connect as this role (by peer authentication on the master).
    type: str
    default: piwheels
  owner_password:
    description: Password of the owner role; left alone when not given.
    type: str
  admin_dsn:
    description:
      - libpq DSN of a superuser connection (the module normally runs with
        C(become_user=postgres) and peer authentication). Its C(dbname) is
        replaced with O(name) for the schema work.
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
  logins:
    description: Login roles, each a member of one group role.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Role name, e.g. C(builder_pi01).
        type: str
        required: true
      group:
        description: The group role it joins (C(piwheels_<group>)).
        type: str
        choices: [master, builder, web]
        default: builder
      password:
        description: Its password (SCRAM-SHA-256 is stored).
        type: str
      state:
        description: C(absent) drops the role.
        type: str
        choices: [present, absent]
        default: present
  python:
    description: Interpreter that can import C(piwheels_build).
    type: path
    default: /opt/piwheels/venv/bin/python
notes:
  - Supports check mode; the answer says what would be created or applied.
requirements:
  - piwheels_build installed for O(python), PostgreSQL reachable through O(admin_dsn).
"""

EXAMPLES = r"""
- name: Database, schema and a builder's login
  become: true
  become_user: postgres
  piwheels_db:
    name: piwheels
    owner: piwheels
    settings:
      retry_limit: 5
      retry_delay: 60
    logins:
      - name: builder_pi01
        group: builder
        password: "{{ vault_builder_pi01_password }}"
      - name: www
        group: web
        password: "{{ vault_www_password }}"

- name: Retire a builder's login
  become: true
  become_user: postgres
  piwheels_db:
    schema: false
    logins:
      - name: builder_pi07
        state: absent
"""

RETURN = r"""
changes:
  description: What was (or in check mode would be) done, one line each.
  returned: always
  type: list
  elements: str
  sample: ["create database piwheels", "apply 0001_tables.sql"]
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
        owner_password=dict(type="str", no_log=True),
        admin_dsn=dict(type="str", default="host=/var/run/postgresql dbname=postgres"),
        schema=dict(type="bool", default=True),
        settings=dict(type="dict", default={}),
        logins=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            group=dict(type="str", choices=["master", "builder", "web"], default="builder"),
            password=dict(type="str", no_log=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        )),
    ))
    p = module.params
    answer = run_admin(module, "database", {
        "name": p["name"], "owner": p["owner"], "owner_password": p["owner_password"],
        "admin_dsn": p["admin_dsn"], "schema": p["schema"], "settings": p["settings"],
        "logins": p["logins"],
    })
    module.exit_json(changed=answer["changed"], changes=answer["changes"],
                     applied=answer.get("applied", []),
                     **({"schema_version": answer["schema_version"]}
                        if "schema_version" in answer else {}))


if __name__ == "__main__":
    main()
