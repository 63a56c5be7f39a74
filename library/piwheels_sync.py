#!/usr/bin/python
# BSD-3-Clause (see the project's licence)
"""Ansible module: bring packages and versions in from the upstream index."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: piwheels_sync
short_description: Sync the piwheels database with the upstream index
description:
  - Runs what C(piwheels sync) runs, on the master, and returns its summary.
    With O(names), only those projects are synced; otherwise the project
    list and every project flagged as changed.
  - The upstream is the configuration's C(upstream), else the index pip is
    configured with on the master.
  - C(changed) when packages or versions were added, yanked, unyanked,
    deleted or found binary-only; a sync that found nothing new is not
    C(changed).
  - A thin wrapper over C(python -m piwheels_build.admin).
version_added: "0.1.0"
author: piwheels-build
options:
  config:
    description: The piwheels TOML configuration (database and upstream).
    type: path
    default: /etc/piwheels/piwheels.toml
  names:
    description: Only these projects (any spelling).
    type: list
    elements: str
    default: []
  full_list:
    description:
      - Read the whole project list even when the XML-RPC changelog would do
        (C(piwheels sync --full-list)); it is how deletions the changelog
        missed are noticed. Without it the list is read every
        C(full_list_interval) seconds of the configuration.
    type: bool
    default: false
  fail_on_errors:
    description: Fail when some project pages could not be synced (they stay flagged).
    type: bool
    default: true
  python:
    description: Interpreter that can import C(piwheels_build).
    type: path
    default: /opt/piwheels/venv/bin/python
notes:
  - Supports check mode, in which the upstream is not read; RV(pending) says
    how many projects are flagged for the next sync, and C(changed) is false.
"""

EXAMPLES = r"""
- name: Sync everything that changed upstream
  piwheels_sync:
  register: sync

- name: Sync two projects now
  piwheels_sync:
    names: [numpy, Pillow]
"""

RETURN = r"""
summary:
  description: What the sync did.
  returned: unless in check mode
  type: dict
  sample:
    projects_seen: 8
    projects_synced: 8
    new_packages: 8
    new_versions: 11
    yanked: 0
    unyanked: 0
    deleted_versions: 0
    deleted_packages: 0
    binary_only: 1
    errors: []
    elapsed: 0.4
pending:
  description: Projects flagged for sync (check mode only).
  returned: in check mode
  type: int
msg:
  description: The one-line summary C(piwheels sync) prints.
  returned: always
  type: str
"""

from ansible.module_utils.piwheels_admin import admin_module, call_admin  # noqa: E402


def main():
    module = admin_module(dict(
        config=dict(type="path", default="/etc/piwheels/piwheels.toml"),
        names=dict(type="list", elements="str", default=[]),
        full_list=dict(type="bool", default=False),
        fail_on_errors=dict(type="bool", default=True),
    ))
    p = module.params
    # Not run_admin: a sync with some projects failed still has a summary to report.
    rc, err, answer = call_admin(module, "sync", {"config": p["config"], "names": p["names"],
                                                  "full_list": p["full_list"]})
    summary = answer.get("summary")
    if "summary" not in answer or (answer.get("failed") and not summary):
        answer.pop("failed", None)
        module.fail_json(rc=rc, stderr=err, **answer)
    result = dict(changed=answer["changed"], msg=answer.get("msg", ""))
    if summary is not None:
        result["summary"] = summary
    if "pending" in answer:
        result["pending"] = answer["pending"]
    if summary and summary["errors"] and p["fail_on_errors"]:
        result["msg"] = f"{result['msg']}; {len(summary['errors'])} projects failed"
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
