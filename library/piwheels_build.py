#!/usr/bin/python
# BSD-3-Clause (see the project's licence)
"""Ansible module: a batched build wave on one builder."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: piwheels_build
short_description: Run a batch of piwheels builds on a builder and report them
description:
  - Claims and builds up to O(batch) wheels with this machine's interpreters
    (the configuration's C(pythons), else every CPython found), exactly as
    C(piwheels build --batch N) does, and returns what was built, what failed
    and how long it took.
  - When the queue for this builder's targets is empty, it keeps looking every
    O(poll) seconds for up to O(idle_timeout) seconds, so a builder of a
    second target picks up the versions the first target's builds queue for it
    during the same wave.
  - C(changed) when at least one build ran (success or failure).
  - A thin wrapper over C(python -m piwheels_build.admin).
version_added: "0.1.0"
author: piwheels-build
options:
  config:
    description: The builder's piwheels TOML configuration.
    type: path
    default: /etc/piwheels/piwheels.toml
  batch:
    description: At most this many builds.
    type: int
    default: 10
  idle_timeout:
    description: Seconds to keep waiting for work once the queue is empty.
    type: float
    default: 0
  poll:
    description: Seconds between looks at an empty queue.
    type: float
    default: 2
  fail_on_build_failure:
    description: Fail the task when a build did not succeed (the package's or the farm's fault).
    type: bool
    default: false
  python:
    description: Interpreter that can import C(piwheels_build).
    type: path
    default: /opt/piwheels/venv/bin/python
notes:
  - Supports check mode, in which nothing is claimed or built; the
    interpreters that would build are returned.
  - Run it as the unprivileged build user (C(become_user)), the one the
    builder service runs as.
"""

EXAMPLES = r"""
- name: A wave of ten builds on every builder
  hosts: builders
  tasks:
    - name: Build
      become: true
      become_user: piwheels
      piwheels_build:
        batch: 10
        idle_timeout: 30
      register: wave
"""

RETURN = r"""
builds:
  description: Builds run.
  returned: always
  type: int
  sample: 3
built:
  description: Wheel files stored.
  returned: always
  type: list
  elements: str
  sample: ["cext-1.0-cp311-cp311-linux_armv7l.whl"]
by_status:
  description: Builds per status.
  returned: always
  type: dict
  sample: {"success": 2, "failed": 1}
results:
  description: One entry per build with package, version, target (ABI-platform) and status.
  returned: always
  type: list
  elements: dict
failed_builds:
  description: The entries of RV(results) whose status is neither success nor
    not-for-python (the sdist's Requires-Python rules the interpreter out).
  returned: always
  type: list
  elements: dict
elapsed:
  description: Seconds the wave took.
  returned: always
  type: float
interpreters:
  description: The interpreters (ABI, platform, path) this builder builds with.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.piwheels_admin import admin_module, run_admin  # noqa: E402


def main():
    module = admin_module(dict(
        config=dict(type="path", default="/etc/piwheels/piwheels.toml"),
        batch=dict(type="int", default=10),
        idle_timeout=dict(type="float", default=0),
        poll=dict(type="float", default=2),
        fail_on_build_failure=dict(type="bool", default=False),
    ))
    p = module.params
    if p["batch"] < 1:
        module.fail_json(msg="batch must be at least 1")
    answer = run_admin(module, "build", {"config": p["config"], "batch": p["batch"],
                                         "idle_timeout": p["idle_timeout"], "poll": p["poll"]})
    if p["fail_on_build_failure"] and answer.get("failed_builds"):
        answer["msg"] = f"{answer['msg']}; {len(answer['failed_builds'])} did not succeed"
        module.fail_json(**answer)
    module.exit_json(**answer)


if __name__ == "__main__":
    main()
