#!/usr/bin/python
# BSD-3-Clause (see the project's licence)
"""Ansible module: queue facts, refresh, skip and requeue."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: piwheels_queue
short_description: Read the piwheels build queue, refresh it, skip or requeue builds
description:
  - C(op=facts) returns what the farm is doing (the same data as
    C(piwheels status --json)) and never changes anything.
  - C(op=refresh) brings the queue in line with the rules
    (C(piwheels queue)); C(changed) when rows were added or dropped.
  - C(op=skip) records an operator's decision not to build a package, a
    version, or a version on some build targets (reason C(admin)); C(op=unskip) lifts it.
  - C(op=requeue) is an operator rebuild of a version, on some build targets or all;
    its failed attempts are forgotten, an C(admin) or C(too-many-failures)
    skip is lifted, waiting retries are made due now, and it is queued
    again, optionally with a O(priority). A version that already has a wheel
    for a target is not rebuilt there.
  - A thin wrapper over C(python -m piwheels_build.admin); runs on the master.
version_added: "0.1.0"
author: piwheels-build
options:
  op:
    description: What to do.
    type: str
    choices: [facts, refresh, skip, unskip, requeue]
    default: facts
  config:
    description: The piwheels TOML configuration whose C(database) is used.
    type: path
    default: /etc/piwheels/piwheels.toml
  dsn:
    description: libpq DSN to use instead of the configuration's C(database).
    type: str
  package:
    description: Package name (any spelling; it is normalized). Required for skip, unskip, requeue.
    type: str
  version:
    description: Version. Required for requeue; for skip, a whole package is skipped without it.
    type: str
  target:
    description:
      - Only this build target (C(cp311-linux_armv7l)), every target of an ABI
        (C(cp311)) or every target on a platform (C(linux_armv7l)).
    type: str
    aliases: [abi]
  note:
    description: Why it is skipped (kept with the skip).
    type: str
  priority:
    description: Queue priority of the requeued rows (higher first).
    type: int
    default: 0
  python:
    description: Interpreter that can import C(piwheels_build).
    type: path
    default: /opt/piwheels/venv/bin/python
notes:
  - Supports check mode; skip, unskip, requeue and refresh are computed in a
    transaction that is rolled back.
"""

EXAMPLES = r"""
- name: Queue facts
  piwheels_queue:
  register: q

- name: Show what is ready per ABI
  ansible.builtin.debug:
    msg: "{{ q.queue }}"

- name: Never build this version (it hangs the builders)
  piwheels_queue:
    op: skip
    package: bad-pkg
    version: "1.2.3"
    note: "setup.py never returns"

- name: Rebuild numpy 2.1.0 for cp313 first
  piwheels_queue:
    op: requeue
    package: numpy
    version: "2.1.0"
    target: cp313-linux_aarch64
    priority: 10
"""

RETURN = r"""
queue:
  description: Per active build target, builds ready, building and waiting to retry.
  returned: always
  type: dict
  sample: {"cp311-linux_armv7l": {"ready": 12, "building": 1, "waiting_retry": 0}}
status:
  description: The whole farm status (packages, versions, builds, files, builders, index).
  returned: always
  type: dict
added:
  description: Queue rows added.
  returned: when op is refresh or requeue
  type: int
dropped:
  description: Queue rows dropped (no longer wanted).
  returned: when op is refresh
  type: int
forgotten:
  description: Failed attempts, skips and waiting retries removed by a requeue.
  returned: when op is requeue
  type: int
queued:
  description: Build targets the version is now queued for.
  returned: when op is requeue
  type: list
  elements: str
"""

from ansible.module_utils.piwheels_admin import admin_module, run_admin  # noqa: E402


def main():
    module = admin_module(
        dict(
            op=dict(type="str", default="facts",
                    choices=["facts", "refresh", "skip", "unskip", "requeue"]),
            config=dict(type="path", default="/etc/piwheels/piwheels.toml"),
            dsn=dict(type="str", no_log=True),
            package=dict(type="str"),
            version=dict(type="str"),
            target=dict(type="str", aliases=["abi"]),
            note=dict(type="str"),
            priority=dict(type="int", default=0),
        ),
        required_if=[
            ("op", "skip", ["package"]),
            ("op", "unskip", ["package"]),
            ("op", "requeue", ["package", "version"]),
        ],
    )
    p = module.params
    params = {"op": "skip" if p["op"] == "unskip" else p["op"],
              "state": "absent" if p["op"] == "unskip" else "present"}
    for key in ("config", "dsn", "package", "version", "target", "note", "priority"):
        if p[key] is not None:
            params[key] = p[key]
    answer = run_admin(module, "queue", params)
    facts = answer.pop("facts", {})
    changed = answer.pop("changed", False)
    module.exit_json(changed=changed, queue=facts.get("queue", {}), status=facts, **answer)


if __name__ == "__main__":
    main()
